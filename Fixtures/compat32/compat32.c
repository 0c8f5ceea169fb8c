/* compat32: an i386 program (gcc -m32) on the x86_64 kernel must come back as one: 32-bit code
 * segment, its TLS in GDT entry 12 (%gs), handlers installed through the compat rt_sigaction
 * (the kernel builds ia32 signal frames for them), its compat robust list, the 32-bit vDSO
 * where it was (signal return goes through it: i386 glibc installs no SA_RESTORER).
 * Verifies:
 *   - %gs and the TLS base (get_thread_area of entry 12) are the same, __thread and errno work;
 *   - heap and stack contents, x87 and SSE registers held across the dump;
 *   - a SA_SIGINFO|SA_ONSTACK handler gets a correct frame on its alternate stack;
 *   - the robust list head (compat get_robust_list) and the vDSO's clock_gettime;
 *   - a new mmap works (below 4 GiB, as every 32-bit pointer is);
 *   - a signal blocked and pending at the dump is delivered once unblocked after it;
 *   - a 64 MiB heap by checksum, a private file mapping with a modified page, AVX ymm7.
 * Modes:
 *   basic   the above in one thread
 *   threads two more threads, each with its own TLS value and %gs base, checked after
 *   sleep    a thread sleeping in nanosleep(1.5 s) across the dump returns 0, not early
 *   fork     a forked 32-bit child checks the same in itself, then says so through the
 *            pipe they share
 *   sleep-exact  after "ready", glibc's nanosleep(1 s) in the main thread, then "slept BEFORE
 *            AFTER" (CLOCK_MONOTONIC ns): the test subtracts the time the container stood
 *            still (as for `regs sleep-exact`): 1 s, not 1 s again, not EINTR
 *   ldt      a data segment of its own in the LDT, in %fs (the dump refuses it; checked
 *            to still work when SIGTERM arrives)
 * usage: compat32 [basic|threads|sleep|fork|sleep-exact|ldt] */
#include "fix.h"
#include <fcntl.h>
#include <pthread.h>
#include <time.h>
#include <asm/ldt.h>
#include <sys/mman.h>
#include <sys/syscall.h>

/* LDT entry 0, table indicator set, privilege 3. */
#define LDT_SELECTOR 0x7

#if !defined(__i386__)
#error "compat32 is built with -m32"
#endif

static __thread uint32_t tls_value = 0x1234;
static volatile sig_atomic_t handled, on_altstack, handler_signo;
static char *altstack;
#define ALTSTACK_SIZE 65536

static volatile sig_atomic_t pending_handled;
static void on_pending(int sig) { (void)sig; pending_handled++; }

static void handler(int sig, siginfo_t *info, void *context) {
  (void)context;
  char here;
  handler_signo = info->si_signo == sig ? sig : -1;
  on_altstack = &here >= altstack && &here < altstack + ALTSTACK_SIZE;
  handled++;
}

static uint32_t gs_selector(void) { uint32_t gs; asm volatile("mov %%gs, %0" : "=r"(gs)); return gs; }

static uint32_t tls_base(void) {
  struct user_desc desc; memset(&desc, 0, sizeof desc);
  desc.entry_number = gs_selector() >> 3;
  if (syscall(SYS_get_thread_area, &desc) != 0) return 0;
  return desc.base_addr;
}

static uintptr_t robust_head(void) {
  void *head = NULL; size_t len = 0;
  if (syscall(SYS_get_robust_list, 0, &head, &len) != 0) return 0;
  return (uintptr_t)head;
}

static double monotonic(void) {
  struct timespec ts; clock_gettime(CLOCK_MONOTONIC, &ts);   /* the vDSO */
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* What every checked thread or process holds: its TLS and registers' view. */
struct seen { uint32_t gs, base, tls; uintptr_t robust; };
static struct seen look(void) { struct seen s = {gs_selector(), tls_base(), tls_value, robust_head()}; return s; }

static void check_same(const char *who, struct seen before, uint32_t expected_tls) {
  struct seen now = look();
  FX_EQ("%gs selector", before.gs, now.gs);
  FX_TRUE(before.base != 0 && before.base == now.base, "%s: TLS base %#x, was %#x", who, now.base, before.base);
  FX_EQ("__thread value", expected_tls, now.tls);
  FX_TRUE(before.robust != 0 && before.robust == now.robust, "%s: robust list %#lx, was %#lx", who,
          (unsigned long)now.robust, (unsigned long)before.robust);
}

/* Heap, x87/SSE, a signal on the alternate stack, errno, a new mapping, the vDSO. */
static void check_process(void) {
  errno = 0; close(-1);
  FX_EQ("errno after close(-1)", EBADF, errno);
  handled = 0;
  raise(SIGUSR1);
  FX_TRUE(handled == 1 && handler_signo == SIGUSR1, "the SIGUSR1 handler ran %d times, si_signo %d",
          (int)handled, (int)handler_signo);
  FX_TRUE(on_altstack, "the handler did not run on its alternate stack");
  char *page = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  FX_TRUE(page != MAP_FAILED, "mmap after the restore failed: %s", strerror(errno));
  if (page != MAP_FAILED) { page[8191] = 7; FX_EQ("a new page", 7, page[8191]); munmap(page, 8192); }
  double t0 = monotonic(); struct timespec ts; syscall(SYS_clock_gettime, CLOCK_MONOTONIC, &ts);
  double t1 = ts.tv_sec + ts.tv_nsec / 1e9;
  FX_TRUE(t1 - t0 > -0.001 && t1 - t0 < 1, "vDSO clock %.6f, syscall %.6f", t0, t1);
}

struct worker { pthread_t thread; uint32_t value; struct seen before; volatile int state; };
/* Workers wait in read(2) on this pipe: blocked without the kernel writing their memory. */
static int release[2];

static void *worker_main(void *arg) {
  struct worker *w = arg;
  tls_value = w->value;
  w->before = look();
  w->state = 1;
  char go;
  while (read(release[0], &go, 1) < 0 && errno == EINTR) {}
  check_same("thread", w->before, w->value);
  return NULL;
}

static volatile int sleep_result = -2, sleep_errno;
static volatile double sleep_took;
static void *sleeper_main(void *arg) {
  (void)arg;
  sigset_t all; sigfillset(&all); pthread_sigmask(SIG_BLOCK, &all, NULL);
  struct timespec ts = {1, 500000000};
  double t0 = monotonic();
  sleep_result = nanosleep(&ts, NULL);
  sleep_errno = errno;
  sleep_took = monotonic() - t0;
  return NULL;
}

int main(int argc, char **argv) {
  const char *mode = argc > 1 ? argv[1] : "basic";
  fx_init("compat32");
  fx_term_setup();
  altstack = malloc(ALTSTACK_SIZE);
  stack_t ss = {.ss_sp = altstack, .ss_size = ALTSTACK_SIZE, .ss_flags = 0};
  FX_SYS(sigaltstack(&ss, NULL));
  struct sigaction sa; memset(&sa, 0, sizeof sa);
  sa.sa_sigaction = handler; sa.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_RESTART;
  FX_SYS(sigaction(SIGUSR1, &sa, NULL));
  tls_value = 0x32323232;
  uint32_t *heap = malloc(1 << 16);
  for (int i = 0; i < (1 << 14); i++) heap[i] = (uint32_t)fx_seed(i);
  volatile double x87 = 1.0 / 3.0;
  float sse_in[4] = {1.5f, -2.25f, 3.125f, 1e-7f}, sse_out[4];
  asm volatile("movups %0, %%xmm5" : : "m"(sse_in) : "xmm5");
  struct seen before = look();
  if (before.base == 0 || before.robust == 0) fx_setup_fail("no TLS base or robust list");
  /* SIGUSR2 blocked and pending across the dump. */
  signal(SIGUSR2, on_pending);
  sigset_t usr2; sigemptyset(&usr2); sigaddset(&usr2, SIGUSR2);
  FX_SYS(sigprocmask(SIG_BLOCK, &usr2, NULL));
  raise(SIGUSR2);
  /* 64 MiB of heap, summed. */
  size_t big_words = (64u << 20) / 4;
  uint32_t *big = malloc(big_words * 4);
  if (!big) fx_setup_fail("malloc 64 MiB");
  uint64_t seed = 32, big_sum = 0;
  for (size_t i = 0; i < big_words; i++) { big[i] = (uint32_t)fx_rng(&seed); big_sum += big[i]; }
  /* A private mapping of this program's own file, its first page written. */
  int self = FX_SYS(open("/proc/self/exe", O_RDONLY));
  unsigned char *image = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_PRIVATE, self, 0);
  if (image == MAP_FAILED) fx_setup_fail("mmap /proc/self/exe");
  close(self);
  image[100] = 0x5a;
  /* ymm7 where the CPU has AVX (the kernel enables it for i386 tasks too). */
  int avx = __builtin_cpu_supports("avx");
  uint32_t ymm_in[8] = {1, 2, 3, 4, 0xdead, 0xbeef, 7, 8}, ymm_out[8] = {0};
  if (avx) asm volatile("vmovdqu %0, %%ymm7" : : "m"(ymm_in) : "xmm7");

  struct worker workers[2] = {{.value = 0x1111}, {.value = 0x2222}};
  pthread_t sleeper;
  pid_t child = 0;
  int set[2] = {-1, -1};
  if (!strcmp(mode, "threads")) {
    FX_SYS(pipe(release));
    for (int i = 0; i < 2; i++) FX_SYS(-pthread_create(&workers[i].thread, NULL, worker_main, &workers[i]));
    for (int i = 0; i < 2; i++) while (workers[i].state != 1) usleep(1000);
  } else if (!strcmp(mode, "sleep")) {
    /* A small stack, which the state snapshot compares word by word: the kernel writes the
     * time left into the sleep's rem (glibc's, on this stack) when the dump stops it. */
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, 256 << 10);
    FX_SYS(-pthread_create(&sleeper, &attr, sleeper_main, NULL));
    usleep(100000);
  } else if (!strcmp(mode, "fork")) {
    FX_SYS(pipe(set));
    child = FX_SYS(fork());
    if (child == 0) {
      tls_value = 0x4444;
      struct seen mine = look();
      FX_SYS(write(set[1], "", 1));
      fx_wait_term();
      check_same("child", mine, 0x4444);
      check_process();
      if (!fx_nbad) FX_SYS(write(set[1], "k", 1));
      fx_finish();
    }
    char done;
    if (read(set[0], &done, 1) != 1) fx_setup_fail("the child did not start");
  } else if (!strcmp(mode, "ldt")) {
    /* A data segment of its own in the LDT, loaded into %fs, as Wine does: the dump must
     * refuse it (ckcont does not save the LDT), and the program runs on with it. */
    struct user_desc ldt = {.entry_number = 0, .base_addr = (uintptr_t)heap, .limit = 0xf, .seg_32bit = 1,
                            .limit_in_pages = 1, .useable = 1};
    FX_SYS(syscall(SYS_modify_ldt, 1, &ldt, sizeof ldt));
    asm volatile("movw %w0, %%fs" : : "r"(LDT_SELECTOR));
  } else if (strcmp(mode, "basic") && strcmp(mode, "sleep-exact")) {
    fx_setup_fail("unknown mode %s", mode);
  }

  fx_ready();
  if (!strcmp(mode, "sleep-exact")) {
    struct timespec from, until, req = {1, 0}, rem;
    clock_gettime(CLOCK_MONOTONIC, &from);
    int slept = nanosleep(&req, &rem);
    clock_gettime(CLOCK_MONOTONIC, &until);
    FX_TRUE(slept == 0, "nanosleep(1 s) failed: %s", strerror(errno));
    if (slept == 0)
      fx_print("slept %lld %lld", (long long)from.tv_sec * 1000000000LL + from.tv_nsec,
               (long long)until.tv_sec * 1000000000LL + until.tv_nsec);
  }
  fx_wait_term();

  asm volatile("movups %%xmm5, %0" : "=m"(sse_out));
  if (avx) {
    asm volatile("vmovdqu %%ymm7, %0" : "=m"(ymm_out));
    FX_TRUE(!memcmp(ymm_in, ymm_out, sizeof ymm_in), "ymm7 changed across the restore");
  }
  FX_EQ("the pending SIGUSR2 not delivered while blocked", 0, pending_handled);
  FX_SYS(sigprocmask(SIG_UNBLOCK, &usr2, NULL));
  FX_EQ("the pending SIGUSR2 delivered once unblocked", 1, pending_handled);
  uint64_t sum = 0;
  if (fx_flip()) big[12345] ^= 1;
  for (size_t i = 0; i < big_words; i++) sum += big[i];
  FX_EQ("64 MiB heap checksum", big_sum, sum);
  FX_EQ("the written page of the private file mapping", 0x5a, image[100]);
  FX_EQ("an unwritten byte of the private file mapping", 0x7f, image[0]);
  FX_TRUE(!memcmp(sse_in, sse_out, sizeof sse_in), "xmm5 changed across the restore");
  FX_TRUE(x87 == 1.0 / 3.0, "a double changed");
  if (fx_flip()) heap[999] ^= 1;
  for (int i = 0; i < (1 << 14); i++)
    if (heap[i] != (uint32_t)fx_seed(i)) { fx_bad("heap[%d] changed", i); break; }
  check_same("main", before, 0x32323232);
  check_process();
  if (!strcmp(mode, "ldt")) {
    uint32_t fs, word;
    asm volatile("movl %%fs, %0; movl %%fs:0, %1" : "=r"(fs), "=r"(word));
    FX_EQ("%fs", LDT_SELECTOR, fs);
    FX_EQ("the first heap word through %fs", heap[0], word);
  }
  if (!strcmp(mode, "threads")) {
    FX_SYS(write(release[1], "gg", 2));
    for (int i = 0; i < 2; i++) pthread_join(workers[i].thread, NULL);
  } else if (!strcmp(mode, "sleep")) {
    pthread_join(sleeper, NULL);
    FX_TRUE(sleep_result == 0, "nanosleep returned %d (%s)", sleep_result, strerror(sleep_errno));
    FX_TRUE(sleep_took >= 1.5, "nanosleep returned after %.3f s of 1.5", sleep_took);
  } else if (child > 0) {
    fx_stop_child(child, "the forked 32-bit child failed its checks");
    char word = 0;
    FX_TRUE(read(set[0], &word, 1) == 1 && word == 'k', "the child's word through the pipe: %d", word);
  }
  fx_finish();
}
