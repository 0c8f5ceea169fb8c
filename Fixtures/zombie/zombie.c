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
 * unreaped: a zombie that leads a session with a live member. After SIGTERM pid 1 reaps it
 * and checks that the member is still in the zombie's session.
 */
#include "fix.h"
#include <sys/wait.h>

static int session_leader(void) {
  int ready[2];
  if (pipe(ready) < 0) fx_setup_fail("pipe");
  pid_t leader = fork();
  if (leader == 0) {
    setsid();
    pid_t member = fork();
    if (member == 0) { for (;;) pause(); }
    if (write(ready[1], &member, sizeof member) != sizeof member) _exit(1);
    _exit(7);
  }
  pid_t member;
  if (read(ready[0], &member, sizeof member) != sizeof member) fx_setup_fail("read");
  siginfo_t info;
  if (waitid(P_PID, leader, &info, WEXITED | WNOWAIT) < 0) fx_setup_fail("waitid");
  fx_ready();
  fx_wait_term();
  FX_EQ("the member's session", (long)leader, (long)getsid(member));
  int status;
  FX_EQ("reaped pid", (long)leader, (long)waitpid(leader, &status, WNOHANG));
  FX_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 7, "the leader: expected exit 7, got status %#x", status);
  kill(member, SIGKILL);
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
