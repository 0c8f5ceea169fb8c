/* clone-share: a child made by clone(CLONE_FILES | CLONE_FS) without CLONE_VM shares its
 * parent's descriptor table and fs information (root, cwd, umask). A restore must make it
 * the same way, not give it copies.
 *
 *   clone-share
 *
 * Before "ready": pid 1 opens /dev/null, chdirs to /tmp, sets umask 027 and clones the child,
 * which sleeps in pause(). After SIGTERM: the kernel still says the two share one table and
 * one fs (kcmp), a file pid 1 opens now is the same file at the same number in the child
 * (kcmp KCMP_FILE; /proc here is the host's, so the child's /proc entry is not at its pid),
 * the fd and the umask are still there.
 */
#include "fix.h"
#include <fcntl.h>
#include <sched.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>

static int child_main(void *arg) {
  (void)arg;
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  for (;;) pause();
  return 0;
}

int main(void) {
  fx_init("clone-share");
  fx_term_setup();
  int null = FX_SYS(open("/dev/null", O_RDWR));
  FX_SYS(chdir("/tmp"));
  umask(027);
  static char stack[64 << 10];
  pid_t child = FX_SYS(clone(child_main, stack + sizeof stack, CLONE_FILES | CLONE_FS | SIGCHLD, NULL));
  fx_ready();
  fx_wait_term();

  FX_EQ("kcmp KCMP_FILES (0: one table)", 0, syscall(SYS_kcmp, getpid(), child, 2, 0, 0));
  FX_EQ("kcmp KCMP_FS (0: one fs)", 0, syscall(SYS_kcmp, getpid(), child, 3, 0, 0));
  int fresh = FX_SYS(open("/dev/null", O_RDONLY));
  FX_EQ("kcmp KCMP_FILE of an fd opened after the restore (0: the child has it too)", 0,
        syscall(SYS_kcmp, getpid(), child, 0, fresh, fresh));
  FX_TRUE(fcntl(null, F_GETFD) >= 0, "fd %d is gone", null);
  mode_t mask = umask(0);
  FX_EQ("umask", 027, mask);
  kill(child, SIGKILL);
  waitpid(child, NULL, 0);
  fx_finish();
}
