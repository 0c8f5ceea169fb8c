/* signals: signal dispositions, the blocked mask, pending signals (with their siginfo), the
 * alternate signal stack and an interval timer survive a restore.
 * State before "ready":
 *   SIGUSR1  handler, SA_SIGINFO|SA_ONSTACK|SA_RESTART, sa_mask {SIGINT, SIGQUIT, SIGWINCH}
 *   SIGHUP   handler, SA_RESETHAND|SA_NODEFER, sa_mask {SIGUSR2}   (never raised)
 *   SIGPIPE  ignored;  SIGINT left at SIG_DFL (a restore must not leave stray handlers)
 *   SIGUSR2  blocked, one pending: raise(), so thread-directed (si_code as raise() gives here)
 *   SIGRTMIN+1 blocked, two queued: sigqueue(), so process-directed, SI_QUEUE, values 0x5151 and 0x5252 in order
 *   sigaltstack of 64 KiB (mmap'd)
 *   ITIMER_REAL every 10 ms. The SIGALRM handler (SA_RESTART) counts ticks.
 * The process waits in sigsuspend (which the timer interrupts all the time). After SIGTERM it checks
 * the sigactions, the mask (SIGTERM, blocked except inside sigsuspend, must be blocked again),
 * sigpending, the altstack, and that the itimer is still armed with a 10 ms interval
 * and produces >= 5 ticks in 100 ms. Then it raises SIGUSR1 and checks that the handler ran on
 * the altstack with sa_mask applied. Finally it takes the pending signals back with sigtimedwait
 * and checks their codes and values.
 * usage: signals */
#include "fix.h"
#include <time.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/time.h>

#define ALT_SIZE (64 << 10)
#define RT (SIGRTMIN + 1)
static volatile sig_atomic_t ticks, usr1_count, usr1_signo, usr1_code;
static volatile uintptr_t usr1_local;
static sigset_t usr1_mask;
static int raise_code;             /* si_code of raise() on this kernel */         /* the mask while the SIGUSR1 handler ran */

static void on_alrm(int s) { (void)s; ticks++; }
static void on_hup(int s) { (void)s; }
static void on_usr1(int s, siginfo_t *si, void *uc) {
  (void)s; (void)uc; volatile char here = 0;
  usr1_local = (uintptr_t)&here;
  usr1_signo = si->si_signo; usr1_code = si->si_code;
  sigprocmask(SIG_BLOCK, NULL, &usr1_mask);
  usr1_count++;
}

static void set(int sig, void *fn, int flags, const int *mask) {
  struct sigaction sa; memset(&sa, 0, sizeof sa);
  sa.sa_handler = (void (*)(int))fn; sa.sa_flags = flags; sigemptyset(&sa.sa_mask);
  for (; mask && *mask; mask++) sigaddset(&sa.sa_mask, *mask);
  FX_SYS(sigaction(sig, &sa, NULL));
}
static void check_action(const char *name, int sig, void *fn, int flags, const int *mask) {
  struct sigaction sa; sigaction(sig, NULL, &sa);
  char w[64];
  snprintf(w, sizeof w, "%s handler", name); FX_EQ(w, (uintptr_t)fn, (uintptr_t)sa.sa_handler);
  const int fl = SA_SIGINFO | SA_ONSTACK | SA_RESTART | SA_NODEFER | SA_RESETHAND | SA_NOCLDSTOP;
  snprintf(w, sizeof w, "%s sa_flags", name); FX_EQ(w, flags, sa.sa_flags & fl);
  sigset_t want; sigemptyset(&want);
  for (; mask && *mask; mask++) sigaddset(&want, *mask);
  int diff = 0;
  for (int s = 1; s < NSIG; s++) if (sigismember(&want, s) != sigismember(&sa.sa_mask, s)) diff = s;
  FX_TRUE(!diff, "%s sa_mask: signal %d is %s", name, diff, sigismember(&want, diff) ? "missing" : "extra");
}
/* Raw rt_sigtimedwait with a zero timeout: glibc's sigtimedwait rewrites SI_TKILL to SI_USER. */
static int take(int sig, siginfo_t *si) {
  sigset_t w; sigemptyset(&w); sigaddset(&w, sig);
  struct timespec zero = {0, 0};
  memset(si, 0, sizeof *si);
  return (int)syscall(SYS_rt_sigtimedwait, &w, si, &zero, _NSIG / 8);
}
static long ms_since(const struct timespec *t0) {
  struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t);
  return (t.tv_sec - t0->tv_sec) * 1000 + (t.tv_nsec - t0->tv_nsec) / 1000000;
}

static const int usr1_mask_sigs[] = {SIGINT, SIGQUIT, SIGWINCH, 0}, hup_mask_sigs[] = {SIGUSR2, 0};

int main(void) {
  fx_init("signals");
  fx_term_setup();
  stack_t ss = {.ss_size = ALT_SIZE, .ss_flags = 0};
  ss.ss_sp = mmap(NULL, ALT_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (ss.ss_sp == MAP_FAILED) fx_setup_fail("mmap");
  FX_SYS(sigaltstack(&ss, NULL));
  set(SIGUSR1, on_usr1, SA_SIGINFO | SA_ONSTACK | SA_RESTART, usr1_mask_sigs);
  set(SIGHUP, on_hup, SA_RESETHAND | SA_NODEFER, hup_mask_sigs);
  set(SIGPIPE, SIG_IGN, 0, NULL);
  set(SIGALRM, on_alrm, SA_RESTART, NULL);
  set(SIGINT, SIG_DFL, 0, NULL);           /* a background shell job inherits it ignored */
  /* The si_code of raise() differs between kernels (SI_TKILL or SI_USER): learn it here. */
  raise(SIGUSR1);
  if (usr1_count != 1 || usr1_local < (uintptr_t)ss.ss_sp || usr1_local >= (uintptr_t)ss.ss_sp + ALT_SIZE) {
    errno = 0; fx_setup_fail("SIGUSR1 did not run on the altstack before the dump");
  }
  raise_code = usr1_code;
  sigset_t b; sigemptyset(&b); sigaddset(&b, SIGUSR2); sigaddset(&b, RT);
  FX_SYS(sigprocmask(SIG_BLOCK, &b, NULL));
  FX_SYS(raise(SIGUSR2));
  FX_SYS(sigqueue(getpid(), RT, (union sigval){.sival_int = 0x5151}));
  FX_SYS(sigqueue(getpid(), RT, (union sigval){.sival_int = 0x5252}));
  struct itimerval it = {{0, 10000}, {0, 10000}};
  FX_SYS(setitimer(ITIMER_REAL, &it, NULL));

  fx_ready();
  fx_wait_term();

  /* The interval timer: still armed, still 10 ms, still ticking. */
  struct itimerval cur;
  for (int i = 0; i < 5; i++) { getitimer(ITIMER_REAL, &cur); if (cur.it_value.tv_usec || cur.it_value.tv_sec) break; }
  FX_EQ("itimer interval (us)", 10000, cur.it_interval.tv_sec * 1000000 + cur.it_interval.tv_usec);
  long left = cur.it_value.tv_sec * 1000000 + cur.it_value.tv_usec;
  FX_TRUE(left > 0 && left <= 10000, "itimer value: expected (0, 10000] us, got %ld us (disarmed?)", left);
  struct timespec t0; clock_gettime(CLOCK_MONOTONIC, &t0);
  int ticks0 = ticks;
  while (ms_since(&t0) < 100) { struct timespec d = {0, 5000000}; nanosleep(&d, NULL); }
  FX_TRUE(ticks - ticks0 >= 5, "SIGALRM ticks in 100 ms after restore: expected >= 5 (about 10), got %d", ticks - ticks0);

  check_action("SIGUSR1", SIGUSR1, on_usr1, SA_SIGINFO | SA_ONSTACK | SA_RESTART, usr1_mask_sigs);
  check_action("SIGHUP", SIGHUP, on_hup, SA_RESETHAND | SA_NODEFER, hup_mask_sigs);
  check_action("SIGALRM", SIGALRM, on_alrm, SA_RESTART, NULL);
  struct sigaction sa;
  sigaction(SIGPIPE, NULL, &sa); FX_EQ("SIGPIPE disposition (SIG_IGN)", (uintptr_t)SIG_IGN, (uintptr_t)sa.sa_handler);
  sigaction(SIGINT, NULL, &sa); FX_EQ("SIGINT disposition (SIG_DFL)", (uintptr_t)SIG_DFL, (uintptr_t)sa.sa_handler);

  sigset_t m, p;
  sigprocmask(SIG_BLOCK, NULL, &m);
  FX_TRUE(sigismember(&m, SIGUSR2), "SIGUSR2 no longer blocked");
  FX_TRUE(sigismember(&m, RT), "SIGRTMIN+1 no longer blocked");
  FX_TRUE(sigismember(&m, SIGTERM), "SIGTERM not blocked after sigsuspend returned (the mask from before sigsuspend was lost)");
  FX_TRUE(!sigismember(&m, SIGUSR1) && !sigismember(&m, SIGALRM), "SIGUSR1 or SIGALRM blocked");
  sigpending(&p);
  FX_TRUE(sigismember(&p, SIGUSR2), "SIGUSR2 no longer pending");
  FX_TRUE(sigismember(&p, RT), "SIGRTMIN+1 no longer pending");

  stack_t now; sigaltstack(NULL, &now);
  FX_EQ("sigaltstack ss_sp", (uintptr_t)ss.ss_sp, (uintptr_t)now.ss_sp);
  FX_EQ("sigaltstack ss_size", ALT_SIZE, now.ss_size);
  FX_EQ("sigaltstack ss_flags", 0, now.ss_flags);

  int n0 = usr1_count;
  raise(SIGUSR1);
  FX_EQ("SIGUSR1 handler runs", n0 + 1, usr1_count);
  FX_TRUE(usr1_local >= (uintptr_t)ss.ss_sp && usr1_local < (uintptr_t)ss.ss_sp + ALT_SIZE,
          "SIGUSR1 handler local at %#lx, not on the altstack [%p, +%#x)", (unsigned long)usr1_local, ss.ss_sp, ALT_SIZE);
  FX_EQ("SIGUSR1 si_signo", SIGUSR1, usr1_signo);
  FX_EQ("SIGUSR1 si_code (as raise() gave before the dump)", raise_code, usr1_code);
  FX_TRUE(sigismember(&usr1_mask, SIGINT) && sigismember(&usr1_mask, SIGQUIT) && sigismember(&usr1_mask, SIGWINCH) &&
          sigismember(&usr1_mask, SIGUSR1), "SIGUSR1 handler ran without its sa_mask (SIGINT, SIGQUIT, SIGWINCH, SIGUSR1)");

  siginfo_t si;
  FX_EQ("sigtimedwait(SIGUSR2)", SIGUSR2, take(SIGUSR2, &si));
  FX_EQ("SIGUSR2 si_code (as raise() gave before the dump)", raise_code, si.si_code);
  for (int i = 0; i < 2; i++) {
    FX_EQ("sigtimedwait(SIGRTMIN+1)", RT, take(RT, &si));
    FX_EQ("SIGRTMIN+1 si_code (SI_QUEUE)", SI_QUEUE, si.si_code);
    FX_EQ("SIGRTMIN+1 si_value (in queue order)", 0x5151 + i * 0x101, si.si_value.sival_int);
  }
  FX_EQ("third sigtimedwait(SIGRTMIN+1): queue holds exactly 2", -EAGAIN, take(RT, &si) < 0 ? -errno : 0);
  fx_finish();
}
