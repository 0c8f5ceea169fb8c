/* timers: POSIX timers (timer_create) come back with their ids, clocks, notification and
 * time left, and keep firing.
 *
 *   timers
 *
 * Before "ready": timer A (CLOCK_MONOTONIC, SIGUSR1 with sigev_value 0x1234, every 20 ms),
 * timer B (CLOCK_REALTIME, SIGEV_NONE, one shot in an hour), timer C (made and deleted, so
 * that the ids have a gap) and timer D (CLOCK_MONOTONIC, disarmed). After SIGTERM: A still
 * fires (at least 3 times in 200 ms), its signals carry sigev_value 0x1234 and its id; B has
 * between 0 and an hour left; C stays deleted; D exists and is disarmed; the ids are the same.
 */
#include "fix.h"
#include <signal.h>
#include <time.h>

static volatile sig_atomic_t fired;
static volatile long last_value;
static volatile int last_timer;

static void on_usr1(int signal, siginfo_t *info, void *context) {
  (void)signal; (void)context;
  fired++;
  last_value = (long)info->si_value.sival_ptr;
  last_timer = info->si_timerid;
}

int main(void) {
  fx_init("timers");
  fx_term_setup();
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_sigaction = on_usr1;
  sa.sa_flags = SA_SIGINFO | SA_RESTART;
  FX_SYS(sigaction(SIGUSR1, &sa, NULL));

  timer_t a, b, c, d;
  struct sigevent ev;
  memset(&ev, 0, sizeof ev);
  ev.sigev_notify = SIGEV_SIGNAL;
  ev.sigev_signo = SIGUSR1;
  ev.sigev_value.sival_ptr = (void *)0x1234;
  FX_SYS(timer_create(CLOCK_MONOTONIC, &ev, &a));
  memset(&ev, 0, sizeof ev);
  ev.sigev_notify = SIGEV_NONE;
  FX_SYS(timer_create(CLOCK_REALTIME, &ev, &b));
  FX_SYS(timer_create(CLOCK_MONOTONIC, &ev, &c));
  FX_SYS(timer_create(CLOCK_MONOTONIC, &ev, &d));
  FX_SYS(timer_delete(c));
  struct itimerspec every20 = {{0, 20000000}, {0, 20000000}}, hour = {{0, 0}, {3600, 0}};
  FX_SYS(timer_settime(a, 0, &every20, NULL));
  FX_SYS(timer_settime(b, 0, &hour, NULL));
  long ids[4] = {(long)a, (long)b, (long)c, (long)d};

  fx_ready();
  fx_wait_term();

  int before = fired;
  struct timespec pause200 = {0, 200000000};
  while (nanosleep(&pause200, &pause200) < 0 && errno == EINTR) {}
  FX_TRUE(fired - before >= 3, "timer A fired %d times in 200 ms after the restore", fired - before);
  FX_EQ("sigev_value of A's signal", 0x1234, last_value);
  FX_EQ("si_timerid of A's signal", ids[0], last_timer);
  struct itimerspec left;
  FX_TRUE(timer_gettime(b, &left) == 0 && left.it_value.tv_sec < 3600 && (left.it_value.tv_sec > 0 || left.it_value.tv_nsec > 0)
            && left.it_interval.tv_sec == 0,
          "timer B: %lld s left", (long long)left.it_value.tv_sec);
  FX_TRUE(timer_gettime(c, &left) < 0 && errno == EINVAL, "deleted timer C exists again");
  FX_TRUE(timer_gettime(d, &left) == 0 && left.it_value.tv_sec == 0 && left.it_value.tv_nsec == 0, "timer D is not there disarmed");
  FX_EQ("ids of A, B, D", (ids[0] << 16) | (ids[1] << 8) | ids[3], (0L << 16) | (1L << 8) | 3L);
  fx_finish();
}
