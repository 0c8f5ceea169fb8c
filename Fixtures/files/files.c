/* files: regular-file descriptors survive a restore with the same numbers, access mode,
 * status flags, FD_CLOEXEC and offsets, and with shared open file descriptions still shared.
 *   fd 20  DIR/…-append, O_WRONLY|O_APPEND, "append-1\n" written, then lseek(20, 3): offset 3.
 *          After: the offset is still 3, but a write must still go to the end (O_APPEND kept).
 *   fd 21  DIR/…-rdwr, O_RDWR, FD_CLOEXEC, 64 KiB of pattern, offset 12345.
 *   fd 23  dup(21): the same open file description, so it shares offset 12345 with fd 21.
 *   fd 24  DIR/…-rdwr again, O_RDONLY, its own description, offset 777.
 *   fd 22  /dev/null, O_RDWR|O_NONBLOCK.
 * After SIGTERM it checks the F_GETFL/F_GETFD flags and the lseek(fd, 0, SEEK_CUR) offsets. It
 * writes "append-2\n" on fd 20 and "XYZ" on fd 21, then checks that fd 23 moved with fd 21
 * and fd 24 did not. Files opened fresh must then show the append at the end, "XYZ" at 12345, and
 * everything else unchanged. /dev/null must still be a character device (1,3) that takes
 * writes and reads EOF. The files are removed at exit.
 * usage: files [DIR]   (default $CKCONT_FIXTURE_DIR or /tmp) */
#include "fix.h"
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

#define BIG (64 << 10)
static char pa[4096], pb[4096];
static uint8_t bbyte(size_t i) { return (uint8_t)(i * 29 + (i >> 9) + 1); }

static void place(int fd, int want) {            /* move fd to number want */
  if (fd < 0) fx_setup_fail("open");
  if (fd != want) { FX_SYS(dup2(fd, want)); close(fd); }
}
static long pos(int fd) { return (long)lseek(fd, 0, SEEK_CUR); }
static int flags(int fd) { return fcntl(fd, F_GETFL) & (O_ACCMODE | O_APPEND | O_NONBLOCK | O_SYNC | O_DSYNC | O_DIRECT); }

int main(int argc, char **argv) {
  fx_init("files");
  fx_term_setup();
  const char *dir = fx_dir(argc > 1 ? argv[1] : NULL);
  snprintf(pa, sizeof pa, "%s/ckcont-files-append-XXXXXX", dir);
  snprintf(pb, sizeof pb, "%s/ckcont-files-rdwr-XXXXXX", dir);
  close(FX_SYS(mkstemp(pa))); close(FX_SYS(mkstemp(pb)));

  place(open(pa, O_WRONLY | O_APPEND), 20);
  if (write(20, "append-1\n", 9) != 9) fx_setup_fail("write append");
  FX_SYS(lseek(20, 3, SEEK_SET));
  place(open(pb, O_RDWR), 21);
  FX_SYS(fcntl(21, F_SETFD, FD_CLOEXEC));        /* after dup2, which would have cleared it */
  static uint8_t big[BIG];
  for (size_t i = 0; i < BIG; i++) big[i] = bbyte(i);
  if (write(21, big, BIG) != BIG) fx_setup_fail("write rdwr");
  FX_SYS(lseek(21, 12345, SEEK_SET));
  FX_SYS(dup2(21, 23));                          /* dup2 clears FD_CLOEXEC on 23 */
  place(open(pb, O_RDONLY), 24);
  FX_SYS(lseek(24, 777, SEEK_SET));
  place(open("/dev/null", O_RDWR | O_NONBLOCK), 22);

  fx_ready();
  fx_wait_term();

  FX_EQ("fd 20 F_GETFL", O_WRONLY | O_APPEND, flags(20));
  FX_EQ("fd 21 F_GETFL", O_RDWR, flags(21));
  FX_EQ("fd 22 F_GETFL", O_RDWR | O_NONBLOCK, flags(22));
  FX_EQ("fd 23 F_GETFL", O_RDWR, flags(23));
  FX_EQ("fd 24 F_GETFL", O_RDONLY, flags(24));
  FX_EQ("fd 20 FD_CLOEXEC", 0, fcntl(20, F_GETFD));
  FX_EQ("fd 21 FD_CLOEXEC", FD_CLOEXEC, fcntl(21, F_GETFD));
  FX_EQ("fd 23 FD_CLOEXEC", 0, fcntl(23, F_GETFD));
  FX_EQ("fd 20 offset", 3, pos(20));
  FX_EQ("fd 21 offset", 12345, pos(21));
  FX_EQ("fd 23 offset (shared with 21)", 12345, pos(23));
  FX_EQ("fd 24 offset", 777, pos(24));

  FX_EQ("append write", 9, write(20, "append-2\n", 9));
  FX_EQ("positioned write", 3, write(21, "XYZ", 3));
  FX_EQ("fd 23 offset after writing on fd 21", 12348, pos(23));
  FX_EQ("fd 24 offset after writing on fd 21", 777, pos(24));

  char a[64] = ""; int fa = open(pa, O_RDONLY);
  ssize_t na = fa < 0 ? -1 : read(fa, a, sizeof a - 1);
  if (fx_flip()) a[1] ^= 1;
  FX_TRUE(na == 18 && !memcmp(a, "append-1\nappend-2\n", 18), "append file: expected \"append-1\\nappend-2\\n\", got %zd bytes \"%.*s\"",
          na, na > 0 ? (int)na : 0, a);
  static uint8_t now[BIG + 1];
  int fb = open(pb, O_RDONLY);
  ssize_t nb = fb < 0 ? -1 : read(fb, now, sizeof now);
  memcpy(big + 12345, "XYZ", 3);
  if (fx_flip()) now[BIG - 1] ^= 1;
  size_t j = 0; while (nb == BIG && j < BIG && now[j] == big[j]) j++;
  FX_TRUE(nb == BIG && j == BIG, "rdwr file: %zd bytes (expected %d), first difference at offset %zu", nb, BIG, j);
  close(fa); close(fb);

  struct stat st; memset(&st, 0, sizeof st); fstat(22, &st);
  FX_TRUE(S_ISCHR(st.st_mode) && st.st_rdev == makedev(1, 3), "fd 22 is not /dev/null (mode %o rdev %#lx)", st.st_mode, (unsigned long)st.st_rdev);
  FX_EQ("write to /dev/null", 5, write(22, "hello", 5));
  char c; FX_EQ("read from /dev/null", 0, read(22, &c, 1));
  unlink(pa); unlink(pb);
  fx_finish();
}
