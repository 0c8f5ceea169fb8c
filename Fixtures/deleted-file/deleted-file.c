/* deleted-file: a file deleted while open (two descriptors of it, one at an offset) comes
 * back with its contents, still deleted, still one file.
 *
 *   deleted-file [DIR]
 *
 * Before "ready": DIR/ckcont-deleted-<time> ($CKCONT_FIXTURE_DIR or /tmp) gets "0123456789",
 * is opened read-write (then read up to offset 4) and read-only, and unlinked. After SIGTERM:
 * the first descriptor reads "456789" from where it was; what it appends the second one
 * reads; the file has no links; /proc names it with its old path and "(deleted)".
 */
#include "fix.h"
#include <fcntl.h>
#include <sys/stat.h>
#include <time.h>

int main(int argc, char **argv) {
  fx_init("deleted-file");
  fx_term_setup();
  char path[4096];
  struct timespec now;
  clock_gettime(CLOCK_REALTIME, &now);
  snprintf(path, sizeof path, "%s/ckcont-deleted-%lld-%ld", fx_dir(argc > 1 ? argv[1] : NULL), (long long)now.tv_sec, now.tv_nsec);
  int rw = FX_SYS(open(path, O_RDWR | O_CREAT | O_EXCL, 0640));
  if (write(rw, "0123456789", 10) != 10) fx_setup_fail("write");
  FX_SYS(lseek(rw, 4, SEEK_SET));
  int ro = FX_SYS(open(path, O_RDONLY));
  FX_SYS(unlink(path));
  fx_ready();
  fx_wait_term();

  char buf[32] = "";
  FX_EQ("read from offset 4", 6, read(rw, buf, sizeof buf));
  FX_TRUE(!memcmp(buf, "456789", 6), "read \"%.6s\"", buf);
  FX_EQ("append", 2, write(rw, "AB", 2));
  memset(buf, 0, sizeof buf);
  FX_EQ("the other descriptor reads the whole file", 12, pread(ro, buf, sizeof buf, 0));
  FX_TRUE(!memcmp(buf, "0123456789AB", 12), "the other descriptor reads \"%.12s\"", buf);
  struct stat st;
  FX_SYS(fstat(ro, &st));
  FX_EQ("links", 0, st.st_nlink);
  FX_EQ("mode", 0640, st.st_mode & 0777);
  char link[4200], expected[4200];
  snprintf(buf, sizeof buf, "/proc/self/fd/%d", ro);
  ssize_t n = readlink(buf, link, sizeof link - 1);
  link[n < 0 ? 0 : n] = 0;
  snprintf(expected, sizeof expected, "%s (deleted)", path);
  FX_TRUE(!strcmp(link, expected), "/proc names it \"%s\"", link);
  fx_finish();
}
