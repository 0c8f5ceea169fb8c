/* tree: a small process tree with its own sessions and process groups must come back with
 * every pid, parent, group and session as it was.
 *
 *   tree
 *
 * pid 1 (this program, the pid-namespace init) forks A and B. A calls setsid() and forks A1
 * and A2; A2 moves into its own process group. B forks B1. Every process records its pid,
 * ppid, pgid and sid, prints "ready" once all five children are in place (pid 1 only), and
 * waits: pid 1 blocked in wait4() for any child, the others in pause(). After SIGTERM, pid 1
 * forwards SIGTERM to A and B, which forward it to their children; each process checks that
 * its ids are unchanged and exits 0 (or 1 with a message); each parent reaps its children
 * and checks their exit status. pid 1 prints PASS when all of it held.
 */
#include "fix.h"
#include <sys/wait.h>

static pid_t children[4];
static int ready_read = -1;  /* pid 1's end of the "started" pipe: children close it */
static int nchildren;

struct ids { pid_t pid, ppid, pgid, sid; };
static struct ids now(void) { return (struct ids){getpid(), getppid(), getpgid(0), getsid(0)}; }

static int check(const char *who, struct ids before) {
  struct ids after = now();
  int same = before.pid == after.pid && before.ppid == after.ppid && before.pgid == after.pgid && before.sid == after.sid;
  if (fx_flip()) same = !same;
  if (same) return 1;
  fx_print("FAIL tree: %s ids changed: pid %d->%d ppid %d->%d pgid %d->%d sid %d->%d", who, before.pid, after.pid,
           before.ppid, after.ppid, before.pgid, after.pgid, before.sid, after.sid);
  return 0;
}

/* Waits for SIGTERM, forwards it to the children, reaps them; returns 1 if all is well. */
static int wait_and_collect(const char *who, struct ids before) {
  fx_wait_term();
  int ok = check(who, before);
  for (int i = 0; i < nchildren; i++) kill(children[i], SIGTERM);
  for (int i = 0; i < nchildren; i++) {
    int status;
    if (waitpid(children[i], &status, 0) != children[i] || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
      fx_print("FAIL tree: %s: child %d ended badly (status %#x)", who, children[i], status);
      ok = 0;
    }
  }
  return ok;
}

static pid_t spawn(void (*body)(int), int ready_fd) {
  pid_t pid = fork();
  if (pid < 0) fx_setup_fail("fork");
  if (pid == 0) {
    nchildren = 0;
    if (ready_read >= 0) close(ready_read);
    body(ready_fd);
  }
  children[nchildren++] = pid;
  return pid;
}

static void leaf(int ready_fd) {
  fx_term_setup();
  struct ids before = now();
  if (write(ready_fd, "x", 1) != 1) _exit(2);
  close(ready_fd);  /* no pipe is shared once all are in place */
  exit(wait_and_collect("leaf", before) ? 0 : 1);
}

static void own_group_leaf(int ready_fd) {
  if (setpgid(0, 0) < 0) _exit(2);
  leaf(ready_fd);
}

static void a(int ready_fd) {
  fx_term_setup();
  if (setsid() < 0) _exit(2);
  spawn(leaf, ready_fd);
  spawn(own_group_leaf, ready_fd);
  struct ids before = now();
  if (write(ready_fd, "x", 1) != 1) _exit(2);
  close(ready_fd);
  exit(wait_and_collect("A", before) ? 0 : 1);
}

static void b(int ready_fd) {
  fx_term_setup();
  spawn(leaf, ready_fd);
  struct ids before = now();
  if (write(ready_fd, "x", 1) != 1) _exit(2);
  close(ready_fd);
  exit(wait_and_collect("B", before) ? 0 : 1);
}

int main(void) {
  fx_init("tree");
  fx_term_setup();
  int ready[2];
  if (pipe(ready) < 0) fx_setup_fail("pipe");
  ready_read = ready[0];
  spawn(a, ready[1]);
  spawn(b, ready[1]);
  close(ready[1]);
  char c;
  for (int i = 0; i < 5; i++)
    if (read(ready[0], &c, 1) != 1) fx_setup_fail("a child failed to start");
  close(ready[0]);
  struct ids before = now();
  fx_ready();
  /* Block in wait4 for a child while nothing exits: SIGTERM (unblocked here, with a handler
   * without SA_RESTART) interrupts it with EINTR. */
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = fx_on_term;
  sigaction(SIGTERM, &sa, NULL);
  sigset_t term;
  sigemptyset(&term);
  sigaddset(&term, SIGTERM);
  sigprocmask(SIG_UNBLOCK, &term, NULL);
  int status;
  while (!fx_term) {
    pid_t early = waitpid(-1, &status, 0);
    if (early > 0) fx_bad("child %d exited before SIGTERM (status %#x)", early, status);
    if (early < 0 && errno != EINTR) fx_setup_fail("waitpid");
  }
  if (!check("pid 1", before)) fx_bad("pid 1 ids changed");
  for (int i = 0; i < nchildren; i++) kill(children[i], SIGTERM);
  for (int i = 0; i < nchildren; i++) {
    if (waitpid(children[i], &status, 0) != children[i] || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
      fx_bad("child %d ended badly (status %#x)", children[i], status);
  }
  fx_finish();
}
