/* zombie: a dead, unreaped child stays a zombie with its exit status across a checkpoint.
 *
 *   zombie
 *   zombie session-leader
 *
 * pid 1 forks two children: one exits with status 42, the other is killed by SIGUSR1. Neither
 * is reaped before "ready". After SIGTERM, pid 1 reaps both and checks their pids and how
 * each one ended.
 *
 * `session-leader`: a child makes a session, forks a member of it and exits with status 7,
 * unreaped: a zombie that leads a session with a live member. Another child makes a process
 * group, forks a member of it and exits with status 9: a zombie that leads a group. After
 * SIGTERM pid 1 reaps both and checks that the members are still in the zombies' session
 * and group, and the zombies' own ids.
 */
#include "fix.h"
#include <sys/wait.h>

/* A child that leads a new session (or only a new group), forks a member of it and exits
 * with `code`; returns once it is a zombie, with the member's pid in *member. */
static pid_t dead_leader(int session, int code, pid_t *member) {
  int ready[2];
  if (pipe(ready) < 0) fx_setup_fail("pipe");
  pid_t leader = fork();
  if (leader == 0) {
    if (session ? setsid() < 0 : setpgid(0, 0) < 0) _exit(1);
    pid_t own = fork();
    if (own == 0) { for (;;) pause(); }
    if (write(ready[1], &own, sizeof own) != sizeof own) _exit(1);
    _exit(code);
  }
  if (read(ready[0], member, sizeof *member) != sizeof *member) fx_setup_fail("read");
  siginfo_t info;
  if (waitid(P_PID, leader, &info, WEXITED | WNOWAIT) < 0) fx_setup_fail("waitid");
  close(ready[0]);
  close(ready[1]);
  return leader;
}

static void reap(const char *who, pid_t pid, int code) {
  int status;
  FX_EQ("reaped pid", (long)pid, (long)waitpid(pid, &status, WNOHANG));
  FX_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == code, "%s: expected exit %d, got status %#x", who, code, status);
}

static int session_leader(void) {
  pid_t member, grouped;
  pid_t leader = dead_leader(1, 7, &member);
  pid_t group = dead_leader(0, 9, &grouped);
  fx_ready();
  fx_wait_term();
  FX_EQ("the member's session", (long)leader, (long)getsid(member));
  FX_EQ("the member's group", (long)leader, (long)getpgid(member));
  FX_EQ("the zombie leader's session", (long)leader, (long)getsid(leader));
  FX_EQ("the grouped member's group", (long)group, (long)getpgid(grouped));
  FX_EQ("the grouped member's session", (long)getsid(0), (long)getsid(grouped));
  FX_EQ("the zombie group leader's group", (long)group, (long)getpgid(group));
  FX_EQ("the zombie group leader's session", (long)getsid(0), (long)getsid(group));
  reap("the session leader", leader, 7);
  reap("the group leader", group, 9);
  /* The member fell to pid 1 when its leader exited: pid 1 reaps it. */
  kill(member, SIGKILL);
  kill(grouped, SIGKILL);
  FX_EQ("the member, reaped by pid 1", (long)member, (long)waitpid(member, NULL, 0));
  fx_finish();
}

int main(int argc, char **argv) {
  fx_init("zombie");
  fx_term_setup();
  if (argc > 1 && !strcmp(argv[1], "session-leader")) return session_leader();
  pid_t exited = fork();
  if (exited == 0) _exit(42);
  pid_t killed = fork();
  if (killed == 0) { signal(SIGUSR1, SIG_DFL); for (;;) pause(); }
  kill(killed, SIGUSR1);
  /* Wait until both are zombies, without reaping them. */
  siginfo_t info;
  for (int i = 0; i < 2; i++) {
    pid_t which = i == 0 ? exited : killed;
    if (waitid(P_PID, which, &info, WEXITED | WNOWAIT) < 0) fx_setup_fail("waitid");
  }
  fx_ready();
  fx_wait_term();
  int status;
  FX_EQ("reaped pid", (long)exited, (long)waitpid(exited, &status, WNOHANG));
  FX_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 42, "first child: expected exit 42, got status %#x", status);
  FX_EQ("reaped pid", (long)killed, (long)waitpid(killed, &status, WNOHANG));
  FX_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGUSR1, "second child: expected SIGUSR1, got status %#x", status);
  fx_finish();
}
