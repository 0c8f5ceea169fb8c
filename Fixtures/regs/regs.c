/* regs: callee-saved registers (rbx, rbp, r12-r15, and r8/r9 too), the stack pointer, pushed
 * stack data and the red zone must survive a checkpoint taken while the task blocks in a raw
 * syscall issued from assembly (block.S), and so must its argument registers (rdi, rsi, rdx,
 * r10: the kernel preserves them). The syscall result must also be what the kernel
 * gives without a checkpoint, after the dump interrupted the call and the restore reissued it.
 *
 * usage: regs <case>
 *   read-pipe           read(pipe, 1 byte). The SA_RESTART SIGTERM handler writes 'T' into the
 *                       pipe, so the restarted read must return 1 with 'T'.
 *   nanosleep           nanosleep(600 s, &rem) must return -EINTR (SIGTERM has a handler;
 *                       SA_RESTART doesn't apply) with 0 < rem < 600 s.
 *   clock-nanosleep-abs clock_nanosleep(CLOCK_REALTIME, TIMER_ABSTIME, now + 1 day) must return
 *                       -EINTR (ERESTARTNOHAND turns into EINTR when a handler runs). REALTIME is
 *                       used because a MONOTONIC deadline means nothing on another boot.
 *   pause               pause() must return -EINTR.
 *   futex               FUTEX_WAIT(&word, 0) with no timeout. The handler sets word = 1 and wakes
 *                       it, and the SA_RESTART restart then sees 1, so the result is -EAGAIN.
 *   poll                poll(pipe, 600 s) must return -EINTR (a poll with a timeout is never
 *                       restarted after a handler). The handler's byte must then be readable.
 *   wait4               wait4(child, &status) on a running child (in pause()). The SA_RESTART
 *                       handler forwards SIGTERM to the child, so the restarted wait4 must
 *                       return the child's pid with a status of "killed by SIGTERM".
 *   libc-nanosleep      glibc's nanosleep(600 s, &rem) (its wrapper loads the call number
 *                       into eax right before `syscall`) must fail with EINTR, with
 *                       0 < rem < 600 s; registers are not checked (the compiler owns them).
 *   sleep-exact         a timing case. SIGTERM stays blocked. It prints "ready", then nanosleep
 *                       (1 s, &rem) must return 0, then it prints "slept BEFORE AFTER" (the
 *                       CLOCK_MONOTONIC nanoseconds around the call) and waits for SIGTERM.
 *                       The test subtracts the time the task spent frozen, from the dump's
 *                       freeze to the restore's thaw (ckcont reports both on the same clock:
 *                       the test restores on the same boot). If the engine reissues the call
 *                       with the remaining time in rem, what is left is 1 s. Reissuing the
 *                       original request adds up to 1 s more. A leaked EINTR prints FAIL.
 * In every case except sleep-exact, the call must not return before SIGTERM arrives: an
 * early return means the dump or the restore leaked an error into the task. */
#include "fix.h"
#include "regs.h"
#include <fcntl.h>
#include <poll.h>
#include <time.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <linux/futex.h>

#ifdef __i386__
/* Fixtures/regs32: a raw `int $0x80` (block32.S) with the arguments in ebx, ecx, edx, esi and
 * known values in edi and ebp; every one must hold what it held (the kernel preserves all
 * but eax), as must esp and the pushed dwords. */
struct regs_snap {
  uint32_t esp_before, esp_after, a1, a2, a3, a4, ebx, ecx, edx, esi, edi, ebp, stk[NSTK];
};
#else
struct regs_snap {
  uint64_t rsp_before, rsp_after, rbx, rbp, r12, r13, r14, r15, r8, r9, stk[NSTK], rz[NRZ];
  uint64_t rdi, rsi, rdx, r10; /* the arguments as the call left them */
};
#endif
long regs_block(long nr, long a1, long a2, long a3, long a4, struct regs_snap *out);
#ifndef __i386__
static long args[4]; /* the arguments regs_block was given, for the checks */
#define regs_block(nr, a1, a2, a3, a4, out) \
  (args[0] = (long)(a1), args[1] = (long)(a2), args[2] = (long)(a3), args[3] = (long)(a4), \
   regs_block(nr, args[0], args[1], args[2], args[3], out))
#endif

static int pfd[2] = {-1, -1};
static int fut;                      /* futex word */
static volatile sig_atomic_t got_term;
static int do_write_pipe, do_wake;
static pid_t child;

/* Only async-signal-safe work, done with raw syscalls. */
static void on_term(int s) {
  (void)s; int e = errno;
  got_term = 1;
  if (do_write_pipe) { ssize_t w = write(pfd[1], "T", 1); (void)w; }
  if (child > 0) kill(child, SIGTERM);
  if (do_wake) { __atomic_store_n(&fut, 1, __ATOMIC_SEQ_CST); syscall(SYS_futex, &fut, FUTEX_WAKE_PRIVATE, 1, 0, 0, 0); }
  errno = e;
}

int main(int argc, char **argv) {
#ifndef REGS_NAME
#define REGS_NAME "regs"
#endif
  fx_init(REGS_NAME);
  const char *c = argc > 1 ? argv[1] : "";
  static char name[64]; snprintf(name, sizeof name, "%s-%s", REGS_NAME, c); fx_name = name;
  int sleep_exact = !strcmp(c, "sleep-exact");
  struct sigaction sa; memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_term; sa.sa_flags = SA_RESTART;
  FX_SYS(sigaction(SIGTERM, &sa, NULL));
  FX_SYS(pipe(pfd));
  if (sleep_exact) { sigset_t m; sigemptyset(&m); sigaddset(&m, SIGTERM); FX_SYS(sigprocmask(SIG_BLOCK, &m, NULL)); }

  /* Data in the caller's frame as well, below and above the asm frame. */
  volatile uint64_t local[32];
  for (int i = 0; i < 32; i++) local[i] = fx_seed(i) ^ 0x10ca1;
  static struct timespec req, rem, deadline, slept_from, slept_until;
  static char byte;
  static struct pollfd pf;
  static int wstatus;
  struct regs_snap s; memset(&s, 0, sizeof s);
  long r, want;

  if (!strcmp(c, "read-pipe")) {
    do_write_pipe = 1; fx_ready();
    r = regs_block(SYS_read, pfd[0], (long)&byte, 1, 0, &s); want = 1;
  } else if (!strcmp(c, "nanosleep") || sleep_exact) {
    req.tv_sec = sleep_exact ? 1 : 600; fx_ready();
    clock_gettime(CLOCK_MONOTONIC, &slept_from);
    r = regs_block(SYS_nanosleep, (long)&req, (long)&rem, 0, 0, &s); want = sleep_exact ? 0 : -EINTR;
    clock_gettime(CLOCK_MONOTONIC, &slept_until);
  } else if (!strcmp(c, "libc-nanosleep")) {
    req.tv_sec = 600; fx_ready();
    r = nanosleep(&req, &rem) < 0 ? -errno : 0; want = -EINTR;
  } else if (!strcmp(c, "clock-nanosleep-abs")) {
    FX_SYS(clock_gettime(CLOCK_REALTIME, &deadline)); deadline.tv_sec += 86400; fx_ready();
    r = regs_block(SYS_clock_nanosleep, CLOCK_REALTIME, TIMER_ABSTIME, (long)&deadline, 0, &s); want = -EINTR;
  } else if (!strcmp(c, "pause")) {
    fx_ready();
    r = regs_block(SYS_pause, 0, 0, 0, 0, &s); want = -EINTR;
  } else if (!strcmp(c, "futex")) {
    do_wake = 1; fx_ready();
    r = regs_block(SYS_futex, (long)&fut, FUTEX_WAIT_PRIVATE, 0, 0, &s); want = -EAGAIN;
  } else if (!strcmp(c, "poll")) {
    do_write_pipe = 1; pf.fd = pfd[0]; pf.events = POLLIN; fx_ready();
    r = regs_block(SYS_poll, (long)&pf, 1, 600000, 0, &s); want = -EINTR;
  } else if (!strcmp(c, "wait4")) {
    /* Ready once the child has its own SIGTERM action: a state snapshot taken at `ready`
       must see the state the dump saves. */
    int sync[2]; FX_SYS(pipe(sync));
    pid_t pid = FX_SYS(fork());
    if (pid == 0) {
      signal(SIGTERM, SIG_DFL);
      close(sync[1]); close(sync[0]);
      for (;;) pause();
    }
    close(sync[1]);
    char byte; while (read(sync[0], &byte, 1) < 0 && errno == EINTR) {}
    close(sync[0]);
    child = pid; fx_ready();
    r = regs_block(SYS_wait4, pid, (long)&wstatus, 0, 0, &s); want = pid;
  } else {
    errno = EINVAL;
    fx_setup_fail("usage: regs read-pipe|nanosleep|libc-nanosleep|clock-nanosleep-abs|pause|futex|poll|wait4|sleep-exact");
  }
  int term_at_return = got_term;

  if (sleep_exact) {
    if (r == 0)
      fx_print("slept %lld %lld", (long long)slept_from.tv_sec * 1000000000LL + slept_from.tv_nsec,
               (long long)slept_until.tv_sec * 1000000000LL + slept_until.tv_nsec);
    sigset_t m; sigprocmask(SIG_SETMASK, NULL, &m); sigdelset(&m, SIGTERM);
    while (!got_term) sigsuspend(&m);
  }

  FX_EQ("syscall result", want, r);
  if (!sleep_exact) FX_TRUE(term_at_return, "syscall returned %ld before SIGTERM arrived", r);
  /* A raw call from block.S: the registers around it. */
#ifdef __i386__
  if (strcmp(c, "libc-nanosleep")) {
    FX_EQ("ebx (argument 1)", s.a1, s.ebx);
    FX_EQ("ecx (argument 2)", s.a2, s.ecx);
    FX_EQ("edx (argument 3)", s.a3, s.edx);
    FX_EQ("esi (argument 4)", s.a4, s.esi);
    FX_EQ("edi", EDI32_VAL, s.edi);
    FX_EQ("ebp", EBP32_VAL, s.ebp);
    FX_EQ("esp after syscall", s.esp_before, s.esp_after);
    char what[64];
    for (int i = 0; i < NSTK; i++) { snprintf(what, sizeof what, "stack dword %d", i); FX_EQ(what, STK32_VAL + i, s.stk[i]); }
  }
#else
  if (strcmp(c, "libc-nanosleep")) {
    FX_EQ("rbx", RBX_VAL, s.rbx);
    FX_EQ("rbp", RBP_VAL, s.rbp);
    FX_EQ("r12", R12_VAL, s.r12);
    FX_EQ("r13", R13_VAL, s.r13);
    FX_EQ("r14", R14_VAL, s.r14);
    FX_EQ("r15", R15_VAL, s.r15);
    FX_EQ("r8", R8_VAL, s.r8);
    FX_EQ("r9", R9_VAL, s.r9);
    FX_EQ("rdi (argument 1)", (uint64_t)args[0], s.rdi);
    FX_EQ("rsi (argument 2)", (uint64_t)args[1], s.rsi);
    FX_EQ("rdx (argument 3)", (uint64_t)args[2], s.rdx);
    FX_EQ("r10 (argument 4)", (uint64_t)args[3], s.r10);
    FX_EQ("rsp after syscall", s.rsp_before, s.rsp_after);
    char what[64];
    for (int i = 0; i < NSTK; i++) { snprintf(what, sizeof what, "stack qword %d", i); FX_EQ(what, STK_VAL + i, s.stk[i]); }
    for (int i = 0; i < NRZ; i++) { snprintf(what, sizeof what, "red zone qword -%d(%%rsp)", 8 * (i + 1)); FX_EQ(what, RZ_VAL + i, s.rz[i]); }
  }
#endif
  if (fx_flip()) local[7] ^= 4;
  for (int i = 0; i < 32; i++)
    if (local[i] != (fx_seed(i) ^ 0x10ca1)) fx_bad("caller local[%d]: expected %#llx got %#llx", i,
                                                 (unsigned long long)(fx_seed(i) ^ 0x10ca1), (unsigned long long)local[i]);

  /* What each call left behind. */
  if (!strcmp(c, "read-pipe")) FX_EQ("byte read", 'T', byte);
  if (!strcmp(c, "nanosleep") || !strcmp(c, "libc-nanosleep")) {
    long long left = rem.tv_sec * 1000000000LL + rem.tv_nsec;
    FX_TRUE(left > 0 && left < 600 * 1000000000LL && rem.tv_nsec < 1000000000L,
            "rem: expected within (0, 600 s), got %lld.%09ld s", (long long)rem.tv_sec, rem.tv_nsec);
  }
  if (!strcmp(c, "clock-nanosleep-abs")) {
    struct timespec now; clock_gettime(CLOCK_REALTIME, &now);
    FX_TRUE(now.tv_sec < deadline.tv_sec, "deadline already passed (now %lld, deadline %lld)",
            (long long)now.tv_sec, (long long)deadline.tv_sec);
  }
  if (!strcmp(c, "wait4")) FX_TRUE(WIFSIGNALED(wstatus) && WTERMSIG(wstatus) == SIGTERM, "child status %#x", wstatus);
  if (!strcmp(c, "futex")) FX_EQ("futex word", 1, __atomic_load_n(&fut, __ATOMIC_SEQ_CST));
  if (!strcmp(c, "poll")) {
    /* The pipe still works, and it holds exactly the handler's byte. */
    struct pollfd p = {pfd[0], POLLIN, 0};
    fcntl(pfd[0], F_SETFL, O_NONBLOCK);   /* never hang here if the byte is missing */
    FX_EQ("poll(0) after SIGTERM", 1, poll(&p, 1, 0));
    FX_EQ("read after poll", 1, read(pfd[0], &byte, 1));
    FX_EQ("byte read", 'T', byte);
  }
  fx_finish();
}
