/* forest: 50 processes, three levels deep, in their own pid namespace, with two sessions of
 * their own, several process groups, a zombie and orphans whose session and group leaders
 * have exited. After a restore every process must have its pid, ppid, pgid and sid again, the
 * zombie its exit status, and every parent its children.
 *
 *   forest
 *
 * pid 1 (this program) forks:
 *   A  setsid(); forks 8 "mids" (every other one in a group of its own), each with 2 leaves;
 *      then forks Ax, which moves into a group of its own, forks O and exits (A reaps it):
 *      O (session A, group Ax whose leader is gone) is an orphan of pid 1, with 2 leaves.
 *   B  a group of its own in pid 1's session; forks 8 mids with 1 leaf each (one with 2), and
 *      a child that exits with status 7 and stays a zombie until B reaps it after SIGTERM.
 *   D  setsid(); forks D1 (with a leaf) and D2, then exits (pid 1 reaps it): D1 and D2 are
 *      orphans of pid 1 in a session and group whose leader is gone.
 * 50 live processes in all. Each records its ids (orphans once adopted by pid 1), tells pid 1
 * it is in place, and waits for SIGTERM. pid 1 waits in wait4() for any child; on SIGTERM it
 * sends SIGTERM to every process of the namespace (kill(-1)). Each process then checks its
 * ids, reaps its children (all must exit 0; B's zombie with 7) and exits 0 or 1. pid 1 reaps
 * its children and the orphans and prints PASS when all of it held.
 */
#include "fix.h"
#include <sys/wait.h>

#define LIVE 50
static pid_t kids[16];
static int nkids;
static int ready_write = -1, ready_read = -1;

struct ids { pid_t pid, ppid, pgid, sid; };
static struct ids now(void) { return (struct ids){getpid(), getppid(), getpgid(0), getsid(0)}; }

static pid_t spawn(void (*body)(void)) {
  pid_t pid = fork();
  if (pid < 0) fx_setup_fail("fork");
  if (pid == 0) {
    nkids = 0;
    if (ready_read >= 0) close(ready_read);
    ready_read = -1;
    body();
    _exit(2);
  }
  kids[nkids++] = pid;
  return pid;
}

/* In place: record the ids, tell pid 1, wait for SIGTERM, check, reap the children. */
static void settle(const char *who, pid_t zombie) {
  struct ids before = now();
  if (write(ready_write, "x", 1) != 1) _exit(2);
  close(ready_write);
  fx_wait_term();
  struct ids after = now();
  int ok = 1;
  if (memcmp(&before, &after, sizeof before)) {
    fx_print("FAIL forest: %s %d: ids changed: ppid %d->%d pgid %d->%d sid %d->%d", who, before.pid, before.ppid,
             after.ppid, before.pgid, after.pgid, before.sid, after.sid);
    ok = 0;
  }
  for (int i = 0; i < nkids; i++) {
    int status;
    if (waitpid(kids[i], &status, 0) != kids[i] || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
      fx_print("FAIL forest: %s %d: child %d ended badly (status %#x)", who, before.pid, kids[i], status);
      ok = 0;
    }
  }
  if (zombie) {
    int status;
    if (waitpid(zombie, &status, WNOHANG) != zombie || !WIFEXITED(status) || WEXITSTATUS(status) != 7) {
      fx_print("FAIL forest: %s %d: zombie %d is not there with status 7 (status %#x)", who, before.pid, zombie, status);
      ok = 0;
    }
  }
  _exit(ok ? 0 : 1);
}

/* Orphans settle once pid 1 has adopted them. */
static void adopted(const char *who) {
  while (getppid() != 1) usleep(1000);
  settle(who, 0);
}

static void leaf(void) { fx_term_setup(); settle("leaf", 0); }
static void mid(void) { fx_term_setup(); spawn(leaf); spawn(leaf); settle("mid", 0); }
static void mid_own_group(void) { if (setpgid(0, 0) < 0) _exit(2); mid(); }
static void mid_one(void) { fx_term_setup(); spawn(leaf); settle("mid", 0); }
static void orphan_o(void) { fx_term_setup(); spawn(leaf); spawn(leaf); adopted("O"); }
static void orphan_d1(void) { fx_term_setup(); spawn(leaf); adopted("D1"); }
static void orphan_d2(void) { fx_term_setup(); adopted("D2"); }

static void ax(void) {
  if (setpgid(0, 0) < 0) _exit(2);
  spawn(orphan_o);
  _exit(0);
}

static void a(void) {
  fx_term_setup();
  if (setsid() < 0) _exit(2);
  for (int i = 0; i < 8; i++) spawn(i % 2 ? mid : mid_own_group);
  pid_t gone = fork();
  if (gone < 0) fx_setup_fail("fork");
  if (gone == 0) ax();
  int status;
  if (waitpid(gone, &status, 0) != gone) _exit(2);
  settle("A", 0);
}

static void b(void) {
  fx_term_setup();
  if (setpgid(0, 0) < 0) _exit(2);
  spawn(mid);
  for (int i = 1; i < 8; i++) spawn(mid_one);
  pid_t zombie = fork();
  if (zombie < 0) fx_setup_fail("fork");
  if (zombie == 0) _exit(7);
  siginfo_t info;
  if (waitid(P_PID, zombie, &info, WEXITED | WNOWAIT) < 0) _exit(2);
  settle("B", zombie);
}

static void d(void) {
  if (setsid() < 0) _exit(2);
  spawn(orphan_d1);
  spawn(orphan_d2);
  _exit(0);
}

int main(void) {
  fx_init("forest");
  fx_term_setup();
  if (getpid() != 1) fx_setup_fail("forest must run as pid 1 of its own pid namespace");
  int ready[2];
  if (pipe(ready) < 0) fx_setup_fail("pipe");
  ready_read = ready[0];
  ready_write = ready[1];
  spawn(a);
  spawn(b);
  pid_t gone = fork();
  if (gone < 0) fx_setup_fail("fork");
  if (gone == 0) { close(ready_read); d(); }
  close(ready_write);
  int status;
  if (waitpid(gone, &status, 0) != gone) fx_setup_fail("waitpid D");
  char c;
  for (int i = 0; i < LIVE - 1; i++)
    if (read(ready_read, &c, 1) != 1) fx_setup_fail("only %d of %d processes started", i, LIVE - 1);
  close(ready_read);
  struct ids before = now();
  fx_ready();
  /* Blocked in wait4 for any child while nothing exits; SIGTERM (no SA_RESTART here)
   * interrupts it. */
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = fx_on_term;
  sigaction(SIGTERM, &sa, NULL);
  sigset_t term;
  sigemptyset(&term);
  sigaddset(&term, SIGTERM);
  sigprocmask(SIG_UNBLOCK, &term, NULL);
  while (!fx_term) {
    pid_t early = waitpid(-1, &status, 0);
    if (early > 0) fx_bad("process %d exited before SIGTERM (status %#x)", early, status);
    if (early < 0 && errno != EINTR) fx_setup_fail("waitpid");
  }
  struct ids after = now();
  FX_TRUE(!memcmp(&before, &after, sizeof before), "pid 1 ids changed");
  kill(-1, SIGTERM);
  /* A and B, and the adopted orphans O, D1 and D2. */
  int reaped = 0;
  pid_t pid;
  while ((pid = waitpid(-1, &status, 0)) > 0 || (pid < 0 && errno == EINTR)) {
    if (pid < 0) continue;
    reaped++;
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) fx_bad("process %d ended badly (status %#x)", pid, status);
  }
  FX_EQ("processes pid 1 reaped", 5, reaped);
  fx_finish();
}
