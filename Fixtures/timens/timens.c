/* timens: a time namespace the container made comes back with its offsets, and the clocks of
 * the processes in it keep going from where they were.
 *
 * pid 1 unshares a time namespace (CLONE_NEWTIME), sets its offsets (CLOCK_MONOTONIC +10 days,
 * CLOCK_BOOTTIME +1 day) and forks a child, which enters it; pid 1 itself stays where it was.
 * After SIGTERM: the child's offsets read back the same, its monotonic clock is still 10 days
 * ahead of pid 1's and has not gone backwards since before the checkpoint; pid 1's children
 * still get the namespace (a new child lands in the same one as the first).
 *
 * `timens init MONOTONIC BOOTTIME`: pid 1 itself runs in a time namespace its launcher made
 * before pid 1 entered it, with those offsets in seconds (`unshare -T --monotonic M
 * --boottime B --fork`, as runc and crun make one for OCI timens). After SIGTERM: its own
 * offsets (/proc/1/timens_offsets inside) read back the same, both clocks went on from where
 * they were and are still ahead by the offsets, its children still get its namespace, and a
 * child forked after the restore is in it.
 */
#include "fix.h"
#include <fcntl.h>
#include <sched.h>
#include <sys/wait.h>
#include <time.h>

#define DAY 86400LL

static long long now(clockid_t clock) {
  struct timespec t;
  clock_gettime(clock, &t);
  return t.tv_sec * 1000000000LL + t.tv_nsec;
}

static void link_of(const char *path, char *out, size_t size) {
  ssize_t n = readlink(path, out, size - 1);
  out[n > 0 ? n : 0] = 0;
}

/* The offsets in whole seconds of the namespace the caller's children get (its own, when
 * they are the same); false unless both are there with no nanoseconds. */
static int read_offsets(long long *monotonic, long long *boottime) {
  char text[256] = "";
  int fd = open("/proc/self/timens_offsets", O_RDONLY);
  if (fd < 0) return 0;
  ssize_t got = read(fd, text, sizeof text - 1);
  close(fd);
  text[got > 0 ? got : 0] = 0;
  long long nanoseconds[2] = {1, 1};
  char *boot = strstr(text, "boottime");
  return boot && sscanf(text, "monotonic %lld %lld", monotonic, &nanoseconds[0]) == 2 &&
         sscanf(boot, "boottime %lld %lld", boottime, &nanoseconds[1]) == 2 && nanoseconds[0] == 0 && nanoseconds[1] == 0;
}

/* Whether a child forked now is in the caller's time namespace. */
static int child_shares_namespace(void) {
  char mine[64], theirs[64];
  link_of("/proc/self/ns/time", mine, sizeof mine);
  pid_t child = FX_SYS(fork());
  if (child == 0) {
    link_of("/proc/self/ns/time", theirs, sizeof theirs);
    _exit(strcmp(mine, theirs) == 0 ? 0 : 1);
  }
  int status;
  waitpid(child, &status, 0);
  return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

static int init_in_namespace(long long monotonic, long long boottime) {
  long long shown_monotonic, shown_boottime;
  if (getpid() != 1 || !read_offsets(&shown_monotonic, &shown_boottime) || shown_monotonic != monotonic ||
      shown_boottime != boottime || !child_shares_namespace())
    fx_setup_fail("not pid 1 of a time namespace with offsets monotonic %lld, boottime %lld", monotonic, boottime);
  long long monotonic_before = now(CLOCK_MONOTONIC), boottime_before = now(CLOCK_BOOTTIME);
  fx_ready();
  fx_wait_term();
  long long monotonic_after = now(CLOCK_MONOTONIC), boottime_after = now(CLOCK_BOOTTIME);
  shown_monotonic = shown_boottime = -1;
  FX_TRUE(read_offsets(&shown_monotonic, &shown_boottime), "/proc/self/timens_offsets is unreadable");
  FX_EQ("monotonic offset", monotonic, shown_monotonic);
  FX_EQ("boottime offset", boottime, shown_boottime);
  FX_TRUE(monotonic_after >= monotonic_before && monotonic_after - monotonic_before < 120 * 1000000000LL,
          "CLOCK_MONOTONIC went from %lld to %lld", monotonic_before, monotonic_after);
  FX_TRUE(boottime_after >= boottime_before && boottime_after - boottime_before < 120 * 1000000000LL,
          "CLOCK_BOOTTIME went from %lld to %lld", boottime_before, boottime_after);
  FX_TRUE(monotonic_after > monotonic * 1000000000LL, "CLOCK_MONOTONIC %lld is not %lld s ahead", monotonic_after, monotonic);
  FX_TRUE(boottime_after > boottime * 1000000000LL, "CLOCK_BOOTTIME %lld is not %lld s ahead", boottime_after, boottime);
  FX_TRUE(child_shares_namespace(), "a child forked after the restore is not in pid 1's time namespace");
  fx_finish();
}

int main(int argc, char **argv) {
  fx_init("timens");
  fx_term_setup();
  if (argc == 4 && !strcmp(argv[1], "init")) return init_in_namespace(atoll(argv[2]), atoll(argv[3]));
  FX_SYS(unshare(CLONE_NEWTIME));
  int offsets = FX_SYS(open("/proc/self/timens_offsets", O_WRONLY));
  char text[128];
  int n = snprintf(text, sizeof text, "monotonic %lld 0\nboottime %lld 0\n", 10 * DAY, DAY);
  if (write(offsets, text, n) != n) fx_setup_fail("write timens_offsets");
  close(offsets);
  int report[2];
  FX_SYS(pipe(report));
  pid_t child = FX_SYS(fork());
  if (child == 0) {
    long long before = now(CLOCK_MONOTONIC);
    fx_wait_term();
    long long after = now(CLOCK_MONOTONIC);
    char shown[256] = "";
    int fd = open("/proc/self/timens_offsets", O_RDONLY);
    ssize_t got = read(fd, shown, sizeof shown - 1);
    shown[got > 0 ? got : 0] = 0;
    int ok = strstr(shown, "monotonic      864000         0") && strstr(shown, "boottime        86400         0");
    ok = ok && after >= before && after - before < 120 * 1000000000LL;
    ok = ok && after > 10 * DAY * 1000000000LL;
    if (!ok) {
      char line[512];
      int len = snprintf(line, sizeof line, "offsets \"%s\", monotonic %lld -> %lld", shown, before, after);
      if (write(report[1], line, len) < 0) {}
    }
    _exit(ok ? 0 : 1);
  }
  close(report[1]);
  fx_ready();
  fx_wait_term();
  kill(child, SIGTERM);
  int status;
  waitpid(child, &status, 0);
  char why[512] = "";
  ssize_t got = read(report[0], why, sizeof why - 1);
  why[got > 0 ? got : 0] = 0;
  FX_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0, "the child's clocks: %s (status %#x)", why, status);
  char mine[64], children[64];
  link_of("/proc/self/ns/time", mine, sizeof mine);
  link_of("/proc/self/ns/time_for_children", children, sizeof children);
  FX_TRUE(strcmp(mine, children) != 0, "pid 1's children no longer get a time namespace of their own (%s)", children);
  pid_t second = FX_SYS(fork());
  if (second == 0) {
    long long monotonic = now(CLOCK_MONOTONIC);
    _exit(monotonic > 10 * DAY * 1000000000LL ? 0 : 1);
  }
  waitpid(second, &status, 0);
  FX_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0, "a child forked after the restore is not 10 days ahead");
  FX_TRUE(now(CLOCK_MONOTONIC) < 10 * DAY * 1000000000LL, "pid 1 itself moved into the time namespace");
  fx_finish();
}
