/* fix.h: helpers shared by the ckcont fixture programs (Scripts/build-fixtures puts
 * Fixtures/common on every fixture's include path).
 *
 * Protocol (DESIGN.md section 5): set up the state, print the line "ready", wait for SIGTERM
 * (the process is frozen, dumped, killed and restored in between), verify, then print
 * "PASS <name>" and exit 0, or "FAIL <name>: <what differs>" and exit 1.
 * Exit 2 means setup failed. That is an environment problem, not a checkpoint problem.
 *
 * Self-test hook: with CKCONT_FIXTURE_SELFTEST_CORRUPT=<k> (k >= 1) set, the k-th corruption
 * point (numbered in the order the fixture verifies things) flips a value just before it is
 * checked, and the fixture must print FAIL and exit 1. If the run never reaches point k, the
 * fixture prints "SELFTEST <name>: no corruption point <k> (has <n>)" and exits 3. So a
 * suite can try k = 1, 2, ... until it gets exit 3, which proves that every check can fail.
 * Points are either FX_EQ/FX_TRUE checks, where the observed value is flipped, or explicit
 * `if (fx_flip()) <damage the real data>` before a loop verifies that data.
 *
 * All output goes through write(2) on fd 1, one write per line, so no output waits in a stdio
 * buffer while the process is dumped (after a restore, stdout is a regular file the harness opened). */
#ifndef CKCONT_FIX_H
#define CKCONT_FIX_H
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>
#include <sys/wait.h>

static const char *fx_name = "?";
static long fx_corrupt_k;   /* 0 = self-test off */
static long fx_points;      /* corruption points passed so far */
static int fx_nbad;
static char fx_msg[2048];   /* the first failures, joined with "; " */
static volatile sig_atomic_t fx_term;

static __attribute__((unused)) void fx_write(int fd, const char *s, size_t n) {
  while (n > 0) {
    ssize_t w = write(fd, s, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return;
    s += w; n -= (size_t)w;
  }
}

__attribute__((format(printf, 1, 2), unused)) static void fx_print(const char *fmt, ...) {
  char b[4096];
  va_list ap; va_start(ap, fmt);
  int n = vsnprintf(b, sizeof b - 1, fmt, ap);
  va_end(ap);
  if (n < 0) return;
  if (n > (int)sizeof b - 2) n = (int)sizeof b - 2;
  b[n++] = '\n';
  fx_write(1, b, (size_t)n);
}

/* Setup error: not the checkpoint's fault. Exit 2 with the errno text. */
__attribute__((format(printf, 1, 2), noreturn, unused)) static void fx_setup_fail(const char *fmt, ...) {
  int e = errno; char b[1024];
  va_list ap; va_start(ap, fmt); vsnprintf(b, sizeof b, fmt, ap); va_end(ap);
  fx_print("ERROR %s: setup: %s (errno %d: %s)", fx_name, b, e, strerror(e));
  struct stat o, r;                     /* repeat it on stderr unless that is the same file */
  if (fstat(1, &o) || fstat(2, &r) || o.st_dev != r.st_dev || o.st_ino != r.st_ino) {
    char l[1200]; int n = snprintf(l, sizeof l, "ERROR %s: setup: %s (errno %d: %s)\n", fx_name, b, e, strerror(e));
    fx_write(2, l, (size_t)n);
  }
  exit(2);
}
#define FX_SYS(x) ({ long _r = (long)(x); if (_r < 0) fx_setup_fail("%s", #x); _r; })

static __attribute__((unused)) void fx_init(const char *name) {
  fx_name = name;
  const char *c = getenv("CKCONT_FIXTURE_SELFTEST_CORRUPT");
  if (c && *c) {
    char *end; fx_corrupt_k = strtol(c, &end, 10);
    if (*end || fx_corrupt_k < 0) { errno = EINVAL; fx_setup_fail("bad CKCONT_FIXTURE_SELFTEST_CORRUPT=%s", c); }
  }
}

/* The directory for files a fixture creates: argument, then $CKCONT_FIXTURE_DIR, then /tmp. */
static __attribute__((unused)) const char *fx_dir(const char *arg) {
  if (arg && *arg) return arg;
  const char *e = getenv("CKCONT_FIXTURE_DIR");
  return e && *e ? e : "/tmp";
}

/* dir/name, in one of four buffers: a call may take up to four such paths. */
static __attribute__((unused)) const char *fx_join(const char *dir, const char *name) {
  static char paths[4][4096];
  static int next;
  char *path = paths[next++ % 4];
  snprintf(path, 4096, "%s/%s", dir, name);
  return path;
}

static __attribute__((unused)) void fx_ready(void) { fx_write(1, "ready\n", 6); }

/* Record a failure without stopping, so that one run reports everything that differs. */
__attribute__((format(printf, 1, 2), unused)) static void fx_bad(const char *fmt, ...) {
  size_t used = strlen(fx_msg);
  if (fx_nbad++ < 12 && used < sizeof fx_msg - 64) {
    if (used) { strcpy(fx_msg + used, "; "); used += 2; }
    va_list ap; va_start(ap, fmt); vsnprintf(fx_msg + used, sizeof fx_msg - used, fmt, ap); va_end(ap);
  }
}

/* Passes a corruption point; true when the self-test wants this one damaged. */
static __attribute__((unused)) int fx_flip(void) { return ++fx_points == fx_corrupt_k; }

/* Compare expected and observed integer values (the observed value is flipped at a corruption point). */
#define FX_EQ(what, expected, got) do { \
    unsigned long long _e = (unsigned long long)(expected), _g = (unsigned long long)(got); \
    if (fx_flip()) _g ^= 1; \
    if (_e != _g) fx_bad("%s: expected %#llx got %#llx", (what), _e, _g); \
  } while (0)
/* A condition that must hold (inverted at a corruption point). */
#define FX_TRUE(cond, ...) do { int _c = !!(cond); if (fx_flip()) _c = !_c; if (!_c) fx_bad(__VA_ARGS__); } while (0)

/* Print the verdict and exit: FAIL 1, else self-test point not reached 3, else PASS 0. */
__attribute__((noreturn, unused)) static void fx_finish(void) {
  if (fx_nbad) {
    fx_print("FAIL %s: %s%s", fx_name, fx_msg, fx_nbad > 12 ? "; ..." : "");
    exit(1);
  }
  if (fx_corrupt_k > fx_points) {
    fx_print("SELFTEST %s: no corruption point %ld (has %ld)", fx_name, fx_corrupt_k, fx_points);
    exit(3);
  }
  fx_print("PASS %s", fx_name);
  exit(0);
}

/* Plain SIGTERM wait: the handler only sets a flag. SIGTERM stays blocked except inside
 * sigsuspend, so it cannot slip in between the flag test and the sleep. */
/* Sends SIGTERM to `child`, whose own checks run then, and checks that it exited 0; `what`
 * says what a failure means. */
static __attribute__((unused)) void fx_stop_child(pid_t child, const char *what) {
  kill(child, SIGTERM);
  int status = 0;
  if (waitpid(child, &status, 0) < 0) status = -1;
  FX_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0, "%s (status %#x)", what, status);
}

static __attribute__((unused)) void fx_on_term(int s) { (void)s; fx_term = 1; }
static __attribute__((unused)) void fx_term_setup(void) {
  sigset_t m; sigemptyset(&m); sigaddset(&m, SIGTERM);
  FX_SYS(sigprocmask(SIG_BLOCK, &m, NULL));
  struct sigaction sa; memset(&sa, 0, sizeof sa);
  sa.sa_handler = fx_on_term; sa.sa_flags = SA_RESTART;
  FX_SYS(sigaction(SIGTERM, &sa, NULL));
}
/* Blocks in rt_sigsuspend (-ERESTARTNOHAND when the dump interrupts it). */
static __attribute__((unused)) void fx_wait_term(void) {
  sigset_t m; sigprocmask(SIG_SETMASK, NULL, &m); sigdelset(&m, SIGTERM);
  while (!fx_term) sigsuspend(&m);
}

/* Waits up to a second for another process to store `value` in shared memory. */
static __attribute__((unused)) int fx_await(volatile uint64_t *word, uint64_t value) {
  for (int i = 0; i < 1000; i++) {
    if (*word == value) return 1;
    usleep(1000);
  }
  return 0;
}

/* The VmFlags of the mapping starting at `start`, from /proc/self/smaps (" rd wr mr ..."),
 * or "" when no mapping starts there. */
static __attribute__((unused)) void fx_vm_flags(const void *start, char *out, size_t size) {
  char want[32];
  snprintf(want, sizeof want, "%lx-", (unsigned long)start);
  FILE *f = fopen("/proc/self/smaps", "r");
  char line[512];
  int inside = 0;
  out[0] = 0;
  while (f && fgets(line, sizeof line, f)) {
    if (!strncmp(line, want, strlen(want))) inside = 1;
    else if (inside && !strncmp(line, "VmFlags:", 8)) {
      snprintf(out, size, "%s", line + 8);
      out[strcspn(out, "\n")] = 0;
      break;
    }
  }
  if (f) fclose(f);
}

/* Whether VmFlags text holds the two-letter flag `name`. */
static __attribute__((unused)) int fx_has_vm_flag(const char *flags, const char *name) {
  for (const char *p = flags; (p = strstr(p, name)); p += 2)
    if (p > flags && p[-1] == ' ' && (p[2] == ' ' || p[2] == 0)) return 1;
  return 0;
}

/* xorshift64*: a deterministic pattern source. */
static inline uint64_t fx_rng(uint64_t *s) {
  uint64_t x = *s; x ^= x >> 12; x ^= x << 25; x ^= x >> 27; *s = x;
  return x * 0x2545F4914F6CDD1DULL;
}
static inline uint64_t fx_seed(uint64_t i) { return (i + 1) * 0x9E3779B97F4A7C15ULL; }

#endif
