/* anon-fds: an eventfd, a signalfd and a timerfd come back with their state.
 *
 *   anon-fds
 *   anon-fds stale-epoll
 *
 * Before "ready": an eventfd in semaphore mode holding 42 (O_NONBLOCK); a signalfd for
 * SIGUSR1 and SIGUSR2 (both blocked) with a SIGUSR2 already queued; a timerfd on
 * CLOCK_MONOTONIC firing every 10 ms, with expirations left unread, and a second one armed
 * for an hour. After SIGTERM: the eventfd gives 1 per read (semaphore) and still holds 41
 * after one; the signalfd hands over the queued SIGUSR2, then a SIGUSR1 raised now; the
 * periodic timerfd has expirations to read and keeps firing; the hour timer has between 0
 * and an hour left; the descriptors kept O_NONBLOCK. An epoll instance watches the eventfd
 * (EPOLLIN, data 0x1122334455667788) and the hour timer (EPOLLIN): after the restore it
 * reports the eventfd, with its data, and not the timer. A pidfd of itself (pid 1) must still
 * name pid 1 and take a signal 0.
 *
 * `stale-epoll`: instead, an epoll instance with watches whose descriptors were closed while
 * the file lives on (the watch stays): an eventfd holding 1, watched (data 0xAAAA), dup'ed,
 * then closed, its number taken by /dev/null since; and the read end of a pipe, watched
 * (data 0xBBBB), closed here after a forked child inherited it (the child holds it). After
 * SIGTERM the epoll reports the eventfd's watch; after a write into the pipe, the pipe's
 * too; the number the eventfd had is /dev/null still.
 */
#include "fix.h"
#include <fcntl.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <sys/timerfd.h>
#include <sys/wait.h>
#include <sys/syscall.h>

/* The data of the events epoll `epoll` reports now, or-ed: 0 when none. */
static uint64_t reported(int epoll) {
  struct epoll_event events[8];
  int n = epoll_wait(epoll, events, 8, 100);
  uint64_t all = 0;
  for (int i = 0; i < n; i++) all |= events[i].data.u64;
  return all;
}

static int stale_epoll_mode(void) {
  int epoll = FX_SYS(epoll_create1(EPOLL_CLOEXEC));
  int counter = FX_SYS(eventfd(1, EFD_NONBLOCK));
  struct epoll_event event = {.events = EPOLLIN, .data.u64 = 0xAAAA};
  FX_SYS(epoll_ctl(epoll, EPOLL_CTL_ADD, counter, &event));
  int kept = FX_SYS(dup(counter));
  FX_SYS(close(counter));
  int null = FX_SYS(open("/dev/null", O_RDONLY));
  if (null != counter) fx_setup_fail("/dev/null got fd %d, not the eventfd's %d", null, counter);
  int ends[2];
  FX_SYS(pipe(ends));
  event.data.u64 = 0xBBBB;
  FX_SYS(epoll_ctl(epoll, EPOLL_CTL_ADD, ends[0], &event));
  pid_t child = FX_SYS(fork());
  if (child == 0) {
    for (;;) pause();  /* holds the read end; killed by its parent */
  }
  FX_SYS(close(ends[0]));
  if (reported(epoll) != 0xAAAA) fx_setup_fail("the epoll reports %#llx before the dump", (unsigned long long)reported(epoll));
  fx_ready();
  fx_wait_term();

  FX_EQ("what the epoll reports", 0xAAAA, reported(epoll));
  FX_EQ("a write into the pipe", 1, write(ends[1], "x", 1));
  FX_EQ("what the epoll reports after a write into the pipe", 0xAAAA | 0xBBBB, reported(epoll));
  char link[64] = "", path[64];
  snprintf(path, sizeof path, "/proc/self/fd/%d", null);
  ssize_t n = readlink(path, link, sizeof link - 1);
  link[n < 0 ? 0 : n] = 0;
  FX_TRUE(!strcmp(link, "/dev/null"), "fd %d is now %s", null, link);
  uint64_t value = 0;
  FX_EQ("the eventfd kept through its dup", 8, read(kept, &value, 8));
  kill(child, SIGKILL);
  waitpid(child, NULL, 0);
  fx_finish();
}

int main(int argc, char **argv) {
  fx_init("anon-fds");
  fx_term_setup();
  if (argc > 1 && !strcmp(argv[1], "stale-epoll")) return stale_epoll_mode();
  int efd = FX_SYS(eventfd(42, EFD_NONBLOCK | EFD_SEMAPHORE));
  sigset_t mask;
  sigemptyset(&mask);
  sigaddset(&mask, SIGUSR1);
  sigaddset(&mask, SIGUSR2);
  FX_SYS(sigprocmask(SIG_BLOCK, &mask, NULL));
  int sfd = FX_SYS(signalfd(-1, &mask, SFD_NONBLOCK));
  raise(SIGUSR2);
  int tfd = FX_SYS(timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK));
  struct itimerspec every10 = {{0, 10000000}, {0, 10000000}}, hour = {{0, 0}, {3600, 0}};
  FX_SYS(timerfd_settime(tfd, 0, &every10, NULL));
  int hfd = FX_SYS(timerfd_create(CLOCK_MONOTONIC, 0));
  FX_SYS(timerfd_settime(hfd, 0, &hour, NULL));
  int epfd = FX_SYS(epoll_create1(EPOLL_CLOEXEC));
  struct epoll_event ev = {.events = EPOLLIN, .data.u64 = 0x1122334455667788ULL};
  FX_SYS(epoll_ctl(epfd, EPOLL_CTL_ADD, efd, &ev));
  ev.data.u64 = 7;
  FX_SYS(epoll_ctl(epfd, EPOLL_CTL_ADD, hfd, &ev));
  int pidfd = FX_SYS(syscall(SYS_pidfd_open, getpid(), 0));
  usleep(50000);  /* expirations pile up unread */
  fx_ready();
  fx_wait_term();

  struct epoll_event got[4];
  int n = epoll_wait(epfd, got, 4, 0);
  FX_EQ("epoll_wait ready descriptors", 1, n);
  FX_EQ("epoll data of the eventfd", 0x1122334455667788ULL, n > 0 ? got[0].data.u64 : 0);
  FX_TRUE(fcntl(epfd, F_GETFD) & FD_CLOEXEC, "epoll fd lost FD_CLOEXEC");

  uint64_t value = 0;
  FX_EQ("eventfd read (semaphore)", 8, read(efd, &value, 8));
  FX_EQ("eventfd value", 1, value);
  char info[256];
  snprintf(info, sizeof info, "/proc/self/fdinfo/%d", efd);
  FILE *f = fopen(info, "r");
  unsigned long long count = 0;
  char line[128];
  while (f && fgets(line, sizeof line, f)) sscanf(line, "eventfd-count: %llx", &count);
  if (f) fclose(f);
  FX_EQ("eventfd count left", 41, count);
  FX_TRUE(fcntl(efd, F_GETFL) & O_NONBLOCK, "eventfd lost O_NONBLOCK");

  struct signalfd_siginfo si;
  FX_EQ("signalfd read of the queued signal", sizeof si, read(sfd, &si, sizeof si));
  FX_EQ("queued signal", SIGUSR2, si.ssi_signo);
  raise(SIGUSR1);
  FX_EQ("signalfd read after raise", sizeof si, read(sfd, &si, sizeof si));
  FX_EQ("raised signal", SIGUSR1, si.ssi_signo);

  uint64_t ticks = 0;
  FX_EQ("timerfd read", 8, read(tfd, &ticks, 8));
  FX_TRUE(ticks >= 1, "timerfd had %llu expirations", (unsigned long long)ticks);
  struct pollfd p = {tfd, POLLIN, 0};
  FX_EQ("timerfd fires again within 1 s", 1, poll(&p, 1, 1000));
  struct itimerspec left;
  FX_SYS(timerfd_gettime(hfd, &left));
  FX_TRUE(left.it_value.tv_sec < 3600 && left.it_value.tv_sec > 3000, "hour timer: %lld s left", (long long)left.it_value.tv_sec);
  FX_EQ("pidfd_send_signal(pidfd, 0)", 0, syscall(SYS_pidfd_send_signal, pidfd, 0, NULL, 0));
  snprintf(info, sizeof info, "/proc/self/fdinfo/%d", pidfd);
  f = fopen(info, "r");
  /* NSpid lists the pid in each namespace from /proc's down to the process's own: the last. */
  int named = 0;
  while (f && fgets(line, sizeof line, f)) {
    if (strncmp(line, "NSpid:", 6)) continue;
    char *last = strrchr(line, '\t') ? strrchr(line, '\t') : line;
    char *space = strrchr(line, ' ');
    if (space > last) last = space;
    named = atoi(last + 1);
  }
  if (f) fclose(f);
  FX_EQ("the process the pidfd names", 1, named);
  fx_finish();
}
