/* mounts: what a container mounts in its own mount namespace comes back.
 *
 *   mounts [DIR]
 *
 * Under DIR/ckcont-mounts-<pid> (on a filesystem the host sees too):
 *  - t: a tmpfs (size=4m, mode=750) holding dir/ (0700), dir/data.bin (100 KiB pattern, 0640,
 *    owned by 1000:1000), link -> dir/data.bin, run.sh (0755) and again.sh (a hard link to
 *    it), and fifo (a FIFO, 0620). data.bin stays open at offset 4096 and is mapped
 *    MAP_SHARED;
 *  - bind: a read-only bind mount of src, a directory holding hello.txt;
 *  - proc: a proc of the container's own pid namespace.
 * After SIGTERM: the tmpfs is a tmpfs again with its mode and files (contents, modes, owners,
 * link); the descriptor is at 4096 and a write through it shows in the mapping; bind shows
 * hello.txt and refuses writes (EROFS); proc/self is "1". Then everything is taken down.
 */
#include "fix.h"
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/statfs.h>
#include <sys/statvfs.h>
#include <linux/magic.h>
#include <time.h>

#define DATA_SIZE (100 << 10)
static char base[3000];

/* base/name. */
static const char *at(const char *name) { return fx_join(base, name); }

static void fill(unsigned char *bytes, size_t n) {
  uint64_t seed = fx_seed(21);
  for (size_t i = 0; i < n; i++) bytes[i] = (unsigned char)fx_rng(&seed);
}

int main(int argc, char **argv) {
  fx_init("mounts");
  fx_term_setup();
  snprintf(base, sizeof base, "%s/ckcont-mounts-%d", fx_dir(argc > 1 ? argv[1] : NULL), (int)getpid());
  /* pid 1 in its namespace: make the name unique with the time instead. */
  snprintf(base + strlen(base), sizeof base - strlen(base), "-%ld", (long)time(NULL));
  FX_SYS(mkdir(base, 0755));
  FX_SYS(mkdir(at("t"), 0755));
  FX_SYS(mkdir(at("bind"), 0755));
  FX_SYS(mkdir(at("src"), 0755));
  FX_SYS(mkdir(at("proc"), 0755));
  int hello = FX_SYS(open(at("src/hello.txt"), O_WRONLY | O_CREAT, 0644));
  if (write(hello, "from the host", 13) != 13) fx_setup_fail("write hello");
  close(hello);

  FX_SYS(mount("tmpfs", at("t"), "tmpfs", MS_NOSUID, "size=4m,mode=750"));
  FX_SYS(mkdir(at("t/dir"), 0700));
  static unsigned char data[DATA_SIZE];
  fill(data, sizeof data);
  int fd = FX_SYS(open(at("t/dir/data.bin"), O_RDWR | O_CREAT, 0640));
  if (write(fd, data, sizeof data) != (ssize_t)sizeof data) fx_setup_fail("write data");
  FX_SYS(fchown(fd, 1000, 1000));
  FX_SYS(lseek(fd, 4096, SEEK_SET));
  volatile unsigned char *map = mmap(NULL, DATA_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (map == MAP_FAILED) fx_setup_fail("mmap");
  FX_SYS(symlink("dir/data.bin", at("t/link")));
  int script = FX_SYS(open(at("t/run.sh"), O_WRONLY | O_CREAT, 0755));
  if (write(script, "#!/bin/sh\n", 10) != 10) fx_setup_fail("write run.sh");
  close(script);
  FX_SYS(link(at("t/run.sh"), at("t/again.sh")));
  FX_SYS(mkfifo(at("t/fifo"), 0620));
  FX_SYS(chmod(at("t/fifo"), 0620)); /* past the umask */
  FX_SYS(mount(at("src"), at("bind"), NULL, MS_BIND, NULL));
  FX_SYS(mount(NULL, at("bind"), NULL, MS_REMOUNT | MS_BIND | MS_RDONLY, NULL));
  FX_SYS(mount("proc", at("proc"), "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL));

  fx_ready();
  fx_wait_term();

  struct statfs fs;
  FX_EQ("statfs of t", 0, statfs(at("t"), &fs));
  FX_EQ("t is a tmpfs", TMPFS_MAGIC, fs.f_type);
  struct stat st;
  FX_EQ("stat of t", 0, stat(at("t"), &st));
  FX_EQ("mode of t", 0750, st.st_mode & 07777);
  FX_EQ("stat of data.bin", 0, stat(at("t/dir/data.bin"), &st));
  FX_EQ("mode of data.bin", 0640, st.st_mode & 07777);
  FX_EQ("owner of data.bin", 1000, st.st_uid);
  FX_EQ("mode of dir", 0, stat(at("t/dir"), &st));
  FX_EQ("mode of dir", 0700, st.st_mode & 07777);
  FX_EQ("stat of run.sh", 0, stat(at("t/run.sh"), &st));
  FX_EQ("mode of run.sh", 0755, st.st_mode & 07777);
  struct stat second;
  FX_EQ("stat of again.sh", 0, stat(at("t/again.sh"), &second));
  FX_TRUE(second.st_ino == st.st_ino && second.st_nlink == 2, "again.sh is no longer a second name of run.sh");
  FX_EQ("stat of fifo", 0, stat(at("t/fifo"), &st));
  FX_TRUE(S_ISFIFO(st.st_mode) && (st.st_mode & 07777) == 0620, "fifo is not a FIFO of mode 0620 (%o)", st.st_mode);
  char target[64] = "";
  FX_EQ("readlink of link", 12, readlink(at("t/link"), target, sizeof target - 1));
  FX_TRUE(!strcmp(target, "dir/data.bin"), "link points to %s", target);
  static unsigned char now[DATA_SIZE];
  int again = open(at("t/link"), O_RDONLY);
  FX_EQ("read through the link", DATA_SIZE, read(again, now, sizeof now));
  if (fx_flip()) now[7] ^= 1;
  FX_TRUE(!memcmp(now, data, sizeof data), "data.bin differs");
  close(again);
  FX_EQ("offset of the open data.bin", 4096, lseek(fd, 0, SEEK_CUR));
  FX_EQ("pwrite through the descriptor", 2, pwrite(fd, "ZZ", 2, 0));
  FX_TRUE(map[0] == 'Z' && map[1] == 'Z', "the shared mapping does not see the write (%02x %02x)", map[0], map[1]);
  char greeting[32] = "";
  int h = open(at("bind/hello.txt"), O_RDONLY);
  FX_EQ("read of bind/hello.txt", 13, read(h, greeting, sizeof greeting - 1));
  FX_TRUE(!strcmp(greeting, "from the host"), "bind/hello.txt reads \"%s\"", greeting);
  close(h);
  struct statvfs vfs;
  FX_EQ("statvfs of bind", 0, statvfs(at("bind"), &vfs));
  FX_TRUE(vfs.f_flag & ST_RDONLY, "bind is writable again");
  FX_TRUE(open(at("bind/new"), O_WRONLY | O_CREAT, 0644) < 0 && errno == EROFS, "a write into bind was not refused with EROFS");
  char self[16] = "";
  FX_EQ("readlink of proc/self", 1, readlink(at("proc/self"), self, sizeof self - 1));
  FX_TRUE(!strcmp(self, "1"), "proc/self is %s", self);

  munmap((void *)map, DATA_SIZE);
  close(fd);
  umount2(at("proc"), MNT_DETACH);
  umount2(at("bind"), MNT_DETACH);
  umount2(at("t"), MNT_DETACH);
  unlink(at("src/hello.txt"));
  rmdir(at("src"));
  rmdir(at("bind"));
  rmdir(at("proc"));
  rmdir(at("t"));
  rmdir(base);
  fx_finish();
}
