/* timens: a time namespace the container made comes back with its offsets, and the clocks of
 * the processes in it keep going from where they were.
 *
 * pid 1 unshares a time namespace (CLONE_NEWTIME), sets its offsets (CLOCK_MONOTONIC +10 days,
 * CLOCK_BOOTTIME +1 day) and forks a child, which enters it; pid 1 itself stays where it was.
 * After SIGTERM: the child's offsets read back the same, its monotonic clock is still 10 days
 * ahead of pid 1's and has not gone backwards since before the checkpoint; pid 1's children
 * still get the namespace (a new child lands in the same one as the first).
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

int main(void) {
  fx_init("timens");
  fx_term_setup();
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
