/* zombie: a dead, unreaped child stays a zombie with its exit status across a checkpoint.
 *
 *   zombie
 *
 * pid 1 forks two children: one exits with status 42, the other is killed by SIGUSR1. Neither
 * is reaped before "ready". After SIGTERM, pid 1 reaps both and checks their pids and how
 * each one ended.
 */
#include "fix.h"
#include <sys/wait.h>

int main(void) {
  fx_init("zombie");
  fx_term_setup();
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
