/* deleted-file: a file deleted while open (two descriptors of it, one at an offset) comes
 * back with its contents, still deleted, still one file.
 *
 *   deleted-file [DIR]
 *   deleted-file sparse [DIR]
 *   deleted-file fifo [DIR]
 *
 * Before "ready": DIR/ckcont-deleted-<time> ($CKCONT_FIXTURE_DIR or /tmp) gets "0123456789",
 * is opened read-write (then read up to offset 4) and read-only, and unlinked. After SIGTERM:
 * the first descriptor reads "456789" from where it was; what it appends the second one
 * reads; the file has no links; /proc names it with its old path and "(deleted)".
 *
 * `sparse`: also a second deleted file and a memfd, each sparse (200 MiB with 4 KiB of data
 * at 100 MiB and 5 bytes at its end; the memfd 10 MiB with data at 5 MiB), owned by
 * 1234:5678, mode 02751 (0640 the memfd), with access and modification times set to fixed
 * instants. After SIGTERM each has its size, data, holes (SEEK_DATA from 0 finds the data,
 * few blocks allocated), owner, mode and times.
 *
 * `fifo`: also a FIFO in DIR, mode 0640, opened read-write and read-only (non-blocking),
 * "queued" written into it, then deleted. After SIGTERM the read-only end reads "queued",
 * then what the other end writes; the FIFO has no links, its mode, and /proc names it
 * with its old path and "(deleted)".
 */
#include "fix.h"
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>

/* Data at `at` (4 KiB of 'x') and "tail!" at the end of a file of `size` bytes. */
static void make_sparse(int fd, off_t size, off_t at, mode_t mode) {
  char block[4096];
  memset(block, 'x', sizeof block);
  FX_SYS(ftruncate(fd, size));
  FX_SYS(pwrite(fd, block, sizeof block, at));
  FX_SYS(pwrite(fd, "tail!", 5, size - 5));
  FX_SYS(fchown(fd, 1234, 5678));
  FX_SYS(fchmod(fd, mode));
  struct timespec times[2] = {{1000000000, 123456789}, {1500000000, 987654321}};
  FX_SYS(futimens(fd, times));
}

static void check_sparse(const char *what, int fd, off_t size, off_t at, mode_t mode) {
  struct stat st;
  FX_SYS(fstat(fd, &st));
  FX_TRUE(st.st_size == size, "%s: size %lld", what, (long long)st.st_size);
  FX_TRUE(st.st_uid == 1234 && st.st_gid == 5678, "%s: owner %d:%d", what, (int)st.st_uid, (int)st.st_gid);
  FX_TRUE((st.st_mode & 07777) == mode, "%s: mode %o", what, (unsigned)(st.st_mode & 07777));
  FX_TRUE(st.st_atim.tv_sec == 1000000000 && st.st_atim.tv_nsec == 123456789, "%s: atime %lld.%09ld", what,
          (long long)st.st_atim.tv_sec, st.st_atim.tv_nsec);
  FX_TRUE(st.st_mtim.tv_sec == 1500000000 && st.st_mtim.tv_nsec == 987654321, "%s: mtime %lld.%09ld", what,
          (long long)st.st_mtim.tv_sec, st.st_mtim.tv_nsec);
  FX_TRUE(st.st_blocks <= 64, "%s: %lld blocks allocated: its holes were filled", what, (long long)st.st_blocks);
  FX_TRUE(lseek(fd, 0, SEEK_DATA) == at, "%s: the first data is at %lld", what, (long long)lseek(fd, 0, SEEK_DATA));
  char block[4096], tail[6] = "";
  FX_TRUE(pread(fd, block, sizeof block, at) == sizeof block && block[0] == 'x' && block[4095] == 'x', "%s: the data at %lld", what, (long long)at);
  FX_TRUE(pread(fd, tail, 5, size - 5) == 5 && !strcmp(tail, "tail!"), "%s: its end reads \"%s\"", what, tail);
  FX_TRUE(pread(fd, block, 16, at - 4096) == 16 && block[0] == 0 && block[15] == 0, "%s: a hole reads zeros", what);
}

int main(int argc, char **argv) {
  fx_init("deleted-file");
  fx_term_setup();
  int sparse = argc > 1 && !strcmp(argv[1], "sparse");
  int fifo = argc > 1 && !strcmp(argv[1], "fifo");
  if (sparse || fifo) argv++, argc--;
  char path[4096];
  struct timespec now;
  clock_gettime(CLOCK_REALTIME, &now);
  snprintf(path, sizeof path, "%s/ckcont-deleted-%lld-%ld", fx_dir(argc > 1 ? argv[1] : NULL), (long long)now.tv_sec, now.tv_nsec);
  int rw = FX_SYS(open(path, O_RDWR | O_CREAT | O_EXCL, 0640));
  if (write(rw, "0123456789", 10) != 10) fx_setup_fail("write");
  FX_SYS(lseek(rw, 4, SEEK_SET));
  int ro = FX_SYS(open(path, O_RDONLY));
  FX_SYS(unlink(path));
  int holed = -1, memfd = -1;
  if (sparse) {
    char other[4200];
    snprintf(other, sizeof other, "%s-sparse", path);
    holed = FX_SYS(open(other, O_RDWR | O_CREAT | O_EXCL, 0600));
    FX_SYS(unlink(other));
    make_sparse(holed, 200 << 20, 100 << 20, 02751);
    memfd = FX_SYS(memfd_create("sparse", 0));
    make_sparse(memfd, 10 << 20, 5 << 20, 0640);
  }
  int fifo_rw = -1, fifo_ro = -1;
  char fifo_path[4200];
  if (fifo) {
    snprintf(fifo_path, sizeof fifo_path, "%s-fifo", path);
    FX_SYS(mkfifo(fifo_path, 0600));
    FX_SYS(chmod(fifo_path, 0640));
    fifo_rw = FX_SYS(open(fifo_path, O_RDWR));
    fifo_ro = FX_SYS(open(fifo_path, O_RDONLY | O_NONBLOCK));
    FX_SYS(write(fifo_rw, "queued", 6));
    FX_SYS(unlink(fifo_path));
  }
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
  if (fifo) {
    char got[16] = "";
    FX_TRUE(read(fifo_ro, got, sizeof got - 1) == 6 && !strcmp(got, "queued"), "the deleted FIFO held \"%s\"", got);
    FX_EQ("a write into the deleted FIFO", 4, write(fifo_rw, "more", 4));
    memset(got, 0, sizeof got);
    FX_TRUE(read(fifo_ro, got, sizeof got - 1) == 4 && !strcmp(got, "more"), "the other end of the deleted FIFO read \"%s\"", got);
    FX_SYS(fstat(fifo_ro, &st));
    FX_TRUE(S_ISFIFO(st.st_mode) && (st.st_mode & 07777) == 0640 && st.st_nlink == 0, "the deleted FIFO: mode %o, %ld links",
            (unsigned)st.st_mode, (long)st.st_nlink);
    snprintf(buf, sizeof buf, "/proc/self/fd/%d", fifo_ro);
    n = readlink(buf, link, sizeof link - 1);
    link[n < 0 ? 0 : n] = 0;
    snprintf(expected, sizeof expected, "%.4000s (deleted)", fifo_path);
    FX_TRUE(!strcmp(link, expected), "/proc names the FIFO \"%s\"", link);
  }
  if (sparse) {
    check_sparse("the sparse deleted file", holed, 200 << 20, 100 << 20, 02751);
    check_sparse("the memfd", memfd, 10 << 20, 5 << 20, 0640);
  }
  fx_finish();
}
