/* deleted-file: a file deleted while open (two descriptors of it, one at an offset) comes
 * back with its contents, still deleted, still one file.
 *
 *   deleted-file [DIR]
 *   deleted-file sparse [DIR]
 *   deleted-file fifo [DIR]
 *   deleted-file big [DIR]
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
 * `big`: also a deleted file with 72 MiB of data around a 1 MiB hole (more than a bundle's
 * model holds: the bytes go into a member of their own), opened at offset 5 MiB, and a memfd
 * with 3 MiB of data. After SIGTERM both hold the same bytes (checksums, the hole reads
 * zeros and stays a hole) and the file descriptor's offset is where it was.
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

/* `size` pseudo-random bytes from `seed` written at `at` into `fd`; their checksum. */
static uint64_t fill_random(int fd, off_t at, size_t size, uint64_t seed) {
  static unsigned char chunk[1 << 20];
  uint64_t sum = 0;
  for (size_t done = 0; done < size; done += sizeof chunk) {
    for (size_t i = 0; i < sizeof chunk; i++) chunk[i] = (unsigned char)fx_rng(&seed);
    size_t n = size - done < sizeof chunk ? size - done : sizeof chunk;
    if (pwrite(fd, chunk, n, at + (off_t)done) != (ssize_t)n) fx_setup_fail("pwrite %zu bytes", n);
    for (size_t i = 0; i < n; i++) sum = sum * 31 + chunk[i];
  }
  return sum;
}

/* The checksum of `size` bytes at `at` in `fd`, as fill_random computes it. */
static uint64_t checksum(int fd, off_t at, size_t size) {
  static unsigned char chunk[1 << 20];
  uint64_t sum = 0;
  for (size_t done = 0; done < size; done += sizeof chunk) {
    size_t n = size - done < sizeof chunk ? size - done : sizeof chunk;
    if (pread(fd, chunk, n, at + (off_t)done) != (ssize_t)n) return 0;
    for (size_t i = 0; i < n; i++) sum = sum * 31 + chunk[i];
  }
  return sum;
}

#define BIG_FIRST (40 << 20)
#define BIG_HOLE (1 << 20)
#define BIG_SECOND (32 << 20)
#define BIG_MEMFD (3 << 20)

int main(int argc, char **argv) {
  fx_init("deleted-file");
  fx_term_setup();
  int sparse = argc > 1 && !strcmp(argv[1], "sparse");
  int fifo = argc > 1 && !strcmp(argv[1], "fifo");
  int big = argc > 1 && !strcmp(argv[1], "big");
  if (sparse || fifo || big) argv++, argc--;
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
  int large = -1, large_memfd = -1;
  uint64_t first_sum = 0, second_sum = 0, memfd_sum = 0;
  if (big) {
    char other[4200];
    snprintf(other, sizeof other, "%s-big", path);
    large = FX_SYS(open(other, O_RDWR | O_CREAT | O_EXCL, 0600));
    FX_SYS(unlink(other));
    first_sum = fill_random(large, 0, BIG_FIRST, 7);
    second_sum = fill_random(large, BIG_FIRST + BIG_HOLE, BIG_SECOND, 8);
    FX_SYS(lseek(large, 5 << 20, SEEK_SET));
    large_memfd = FX_SYS(memfd_create("big", 0));
    memfd_sum = fill_random(large_memfd, 0, BIG_MEMFD, 9);
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
  if (big) {
    FX_EQ("the big deleted file's offset", 5 << 20, lseek(large, 0, SEEK_CUR));
    uint64_t first = checksum(large, 0, BIG_FIRST);
    if (fx_flip()) first ^= 1;
    FX_TRUE(first == first_sum, "the big deleted file: its first 40 MiB differ");
    FX_TRUE(checksum(large, BIG_FIRST + BIG_HOLE, BIG_SECOND) == second_sum, "the big deleted file: its last 32 MiB differ");
    FX_EQ("the big deleted file's data after the first part", BIG_FIRST + BIG_HOLE, lseek(large, BIG_FIRST, SEEK_DATA));
    FX_SYS(fstat(large, &st));
    FX_EQ("the big deleted file's size", BIG_FIRST + BIG_HOLE + BIG_SECOND, st.st_size);
    FX_EQ("the big deleted file's links", 0, st.st_nlink);
    FX_TRUE(checksum(large_memfd, 0, BIG_MEMFD) == memfd_sum, "the 3 MiB memfd differs");
  }
  if (sparse) {
    check_sparse("the sparse deleted file", holed, 200 << 20, 100 << 20, 02751);
    check_sparse("the memfd", memfd, 10 << 20, 5 << 20, 0640);
  }
  fx_finish();
}
