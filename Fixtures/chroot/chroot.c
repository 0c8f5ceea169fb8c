/* chroot: a process that chroot()ed into a directory keeps that root and its working
 * directory under it.
 *
 *   chroot [DIR]
 *
 * Makes DIR/ckcont-chroot-<time>-<pid> with inner/ and inside.txt, keeps a descriptor of the
 * real root, chroot()s into the directory and chdir()s to /inner.
 * After SIGTERM: the working directory is /inner, /inside.txt reads back, the real root's
 * /proc is not visible; then it leaves the chroot through the kept descriptor and removes
 * what it made.
 */
#include "fix.h"
#include <fcntl.h>
#include <time.h>

int main(int argc, char **argv) {
  fx_init("chroot");
  fx_term_setup();
  char base[4096], path[4200];
  snprintf(base, sizeof base, "%s/ckcont-chroot-%ld-%d", fx_dir(argc > 1 ? argv[1] : NULL), (long)time(NULL), (int)getpid());
  FX_SYS(mkdir(base, 0755));
  snprintf(path, sizeof path, "%s/inner", base);
  FX_SYS(mkdir(path, 0755));
  snprintf(path, sizeof path, "%s/inside.txt", base);
  int fd = FX_SYS(open(path, O_WRONLY | O_CREAT, 0644));
  if (write(fd, "chrooted", 8) != 8) fx_setup_fail("write");
  close(fd);
  int real_root = FX_SYS(open("/", O_RDONLY | O_DIRECTORY));
  FX_SYS(chroot(base));
  FX_SYS(chdir("/inner"));

  fx_ready();
  fx_wait_term();

  char cwd[256] = "";
  FX_TRUE(getcwd(cwd, sizeof cwd) && !strcmp(cwd, "/inner"), "the working directory is %s", cwd);
  char text[16] = "";
  int inside = open("/inside.txt", O_RDONLY);
  FX_TRUE(inside >= 0 && read(inside, text, sizeof text - 1) == 8 && !strcmp(text, "chrooted"), "/inside.txt reads \"%s\"", text);
  if (inside >= 0) close(inside);
  FX_TRUE(access("/proc/self", F_OK) != 0, "the real root's /proc shows inside the chroot");

  /* Out through the kept descriptor of the real root, to clean up. */
  if (fchdir(real_root) == 0 && chroot(".") == 0) {
    unlink(path);
    snprintf(path, sizeof path, "%s/inner", base);
    rmdir(path);
    rmdir(base);
  }
  fx_finish();
}
