/* stopped: stopped jobs stay stopped, with their stop signal.
 *
 *   stopped
 *
 * Before "ready": child A is stopped by SIGSTOP; child B, with two more threads, by SIGTSTP
 * (a job stopped with Ctrl-Z). After SIGTERM, for each: no continue is waiting to be
 * reported (one would mean it ran since its stop: a checkpoint continues stopped jobs to
 * read them, and must stop them again); a stop that is reported names its signal; SIGCONT
 * then continues it, which only a stopped process reports.
 */
#include "fix.h"
#include <pthread.h>
#include <sys/prctl.h>
#include <sys/wait.h>

static int started[2]; /* each thread writes a byte once it runs */

static void *idle(void *unused) {
  (void)unused;
  char byte = 't';
  if (write(started[1], &byte, 1) != 1) _exit(3);
  for (;;) pause();
  return NULL;
}

/* The child is stopped only once every thread of it runs (in pause()): a thread still being
 * created when the stop comes may join the stop late, and a snapshot taken then sees it
 * running. */
static pid_t start(int threads, int signal) {
  FX_SYS(pipe(started));
  pid_t child = fork();
  if (child < 0) fx_setup_fail("fork");
  if (child == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    close(started[0]);
    for (int i = 0; i < threads; i++) {
      pthread_t thread;
      if (pthread_create(&thread, NULL, idle, NULL)) _exit(3);
    }
    for (;;) pause();
  }
  close(started[1]);
  for (int i = 0; i < threads; i++) {
    char byte;
    while (read(started[0], &byte, 1) < 0 && errno == EINTR) {}
  }
  close(started[0]);
  usleep(20000);
  FX_SYS(kill(child, signal));
  int status;
  FX_SYS(waitpid(child, &status, WUNTRACED));
  if (!WIFSTOPPED(status) || WSTOPSIG(status) != signal) fx_setup_fail("child %d did not stop", child);
  return child;
}

static void check(pid_t child, int signal, const char *name) {
  int status;
  FX_EQ("continues reported before SIGCONT", 0, waitpid(child, &status, WCONTINUED | WNOHANG));
  if (waitpid(child, &status, WUNTRACED | WNOHANG) == child) {
    FX_TRUE(WIFSTOPPED(status) && WSTOPSIG(status) == signal, "%s reports a stop by %d", name, WIFSTOPPED(status) ? WSTOPSIG(status) : -1);
  }
  FX_SYS(kill(child, SIGCONT));
  int continued = 0;
  for (int i = 0; i < 1000 && !continued; i++) {
    if (waitpid(child, &status, WCONTINUED | WNOHANG) == child && WIFCONTINUED(status)) continued = 1;
    else usleep(1000);
  }
  FX_TRUE(continued, "%s was not stopped (SIGCONT continued nothing)", name);
  kill(child, SIGKILL);
  waitpid(child, &status, 0);
}

int main(void) {
  fx_init("stopped");
  fx_term_setup();
  pid_t a = start(0, SIGSTOP);
  pid_t b = start(2, SIGTSTP);
  fx_ready();
  fx_wait_term();
  check(a, SIGSTOP, "child A");
  check(b, SIGTSTP, "child B");
  fx_finish();
}
