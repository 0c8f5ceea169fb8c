/* rootfs: a container with a root filesystem of its own, set up as runc sets one up.
 *
 *   rootfs DIR
 *
 * DIR (made by the caller, removed by the caller) becomes the root: the fixture, pid 1 of a
 * fresh mount namespace, makes DIR/root and in it:
 *  - / : DIR/root bind-mounted on itself (runc's rootfs bind), then pivot_root(".", ".") and
 *    the old root detached, so no path of the host is left;
 *  - /usr: the host's /usr, bound read-only (lib, lib64 and bin are symlinks into it), so
 *    that the fixture, copied to /rootfs, runs inside;
 *  - /proc: a proc of the container's pid namespace, with /proc/timer_list masked by a bind of
 *    /dev/null, as runc masks it;
 *  - /dev: a tmpfs (mode 755) holding the device nodes null and zero, a symlink fd and a
 *    directory shm;
 *  - /etc/hostname: a file bound from DIR/hostname, outside the root (runc binds /etc/hosts,
 *    /etc/resolv.conf and /etc/hostname so);
 *  - /data/marker: a file on the root itself, held open at offset 5, and the working
 *    directory /data.
 * Then it execs /rootfs --inside, which says ready.
 * After SIGTERM: the root is DIR/root (a marker file of the host shows), /proc/self is "1",
 * /proc/timer_list reads nothing, /dev/null and /dev/zero are the devices, /etc/hostname has the
 * bound text, /usr refuses writes, the working directory is /data, the open file is at 5,
 * /proc/self/exe is /rootfs, and / has exactly the mounts above.
 */
#include "fix.h"
#include <fcntl.h>
#include <sys/mount.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>

static char root[3000];

/* root/name. */
static const char *in(const char *name) { return fx_join(root, name); }

static void copy_self(const char *to) {
  int from = FX_SYS(open("/proc/self/exe", O_RDONLY));
  int out = FX_SYS(open(to, O_WRONLY | O_CREAT | O_TRUNC, 0755));
  char buffer[65536];
  ssize_t n;
  while ((n = read(from, buffer, sizeof buffer)) > 0)
    if (write(out, buffer, (size_t)n) != n) fx_setup_fail("copy to %s", to);
  if (n < 0) fx_setup_fail("read /proc/self/exe");
  close(from);
  close(out);
}

static void write_file(const char *path, const char *text) {
  int fd = FX_SYS(open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644));
  if (write(fd, text, strlen(text)) != (ssize_t)strlen(text)) fx_setup_fail("write %s", path);
  close(fd);
}

/* Outside: build the root and pivot into it, as a runtime's init does. */
static void enter(const char *dir) {
  snprintf(root, sizeof root, "%s/root", dir);
  FX_SYS(mkdir(root, 0755));
  const char *dirs[] = {"usr", "proc", "dev", "etc", "data", "tmp"};
  for (size_t i = 0; i < sizeof dirs / sizeof *dirs; i++) FX_SYS(mkdir(in(dirs[i]), 0755));
  FX_SYS(symlink("usr/lib", in("lib")));
  FX_SYS(symlink("usr/lib64", in("lib64")));
  FX_SYS(symlink("usr/bin", in("bin")));
  copy_self(in("rootfs"));
  write_file(in("data/marker"), "root of its own");
  write_file(in("etc/hostname"), "not bound\n");
  char hostname[4096];
  snprintf(hostname, sizeof hostname, "%s/hostname", dir);
  write_file(hostname, "rootfs-fixture\n");

  FX_SYS(mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL));
  FX_SYS(mount(root, root, NULL, MS_BIND | MS_REC, NULL));
  FX_SYS(mount("/usr", in("usr"), NULL, MS_BIND, NULL));
  FX_SYS(mount(NULL, in("usr"), NULL, MS_REMOUNT | MS_BIND | MS_RDONLY, NULL));
  FX_SYS(mount("proc", in("proc"), "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL));
  FX_SYS(mount("tmpfs", in("dev"), "tmpfs", MS_NOSUID, "mode=755,size=64k"));
  FX_SYS(mknod(in("dev/null"), S_IFCHR | 0666, makedev(1, 3)));
  FX_SYS(mknod(in("dev/zero"), S_IFCHR | 0666, makedev(1, 5)));
  FX_SYS(chmod(in("dev/null"), 0666));
  FX_SYS(chmod(in("dev/zero"), 0666));
  FX_SYS(symlink("/proc/self/fd", in("dev/fd")));
  FX_SYS(mkdir(in("dev/shm"), 01777));
  FX_SYS(chmod(in("dev/shm"), 01777)); /* past the umask */
  FX_SYS(mount(in("dev/null"), in("proc/timer_list"), NULL, MS_BIND, NULL));
  FX_SYS(mount(hostname, in("etc/hostname"), NULL, MS_BIND, NULL));

  FX_SYS(chdir(root));
  FX_SYS(syscall(SYS_pivot_root, ".", "."));
  FX_SYS(umount2(".", MNT_DETACH));
  FX_SYS(chdir("/"));
  char *argv[] = {"/rootfs", "--inside", NULL};
  execv(argv[0], argv);
  fx_setup_fail("execv /rootfs");
}

/* The mount points of /proc/self/mountinfo, in order, joined with spaces. */
static void mount_points(char *out, size_t size) {
  FILE *file = fopen("/proc/self/mountinfo", "r");
  if (!file) { snprintf(out, size, "(no mountinfo: %s)", strerror(errno)); return; }
  out[0] = 0;
  char line[8192];
  while (fgets(line, sizeof line, file)) {
    char point[4096];
    if (sscanf(line, "%*s %*s %*s %*s %4095s", point) != 1) continue;
    size_t used = strlen(out);
    snprintf(out + used, size - used, "%s%s", used ? " " : "", point);
  }
  fclose(file);
}

static void inside(void) {
  fx_term_setup();
  int marker = FX_SYS(open("/data/marker", O_RDONLY));
  FX_SYS(lseek(marker, 5, SEEK_SET));
  FX_SYS(chdir("/data"));
  int null = FX_SYS(open("/dev/null", O_WRONLY));

  fx_ready();
  fx_wait_term();

  char text[64] = "";
  FX_EQ("read of the open marker", 10, read(marker, text, sizeof text - 1));
  FX_TRUE(!strcmp(text, "of its own"), "the open marker reads \"%s\"", text);
  char cwd[256] = "";
  FX_TRUE(getcwd(cwd, sizeof cwd) != NULL && !strcmp(cwd, "/data"), "the working directory is %s", cwd);
  int again = open("marker", O_RDONLY);
  FX_TRUE(again >= 0, "marker is not in the working directory");
  close(again);
  char self[16] = "";
  FX_EQ("readlink of /proc/self", 1, readlink("/proc/self", self, sizeof self - 1));
  FX_TRUE(!strcmp(self, "1"), "/proc/self is %s", self);
  char exe[256] = "";
  FX_EQ("readlink of /proc/self/exe", 7, readlink("/proc/self/exe", exe, sizeof exe - 1));
  FX_TRUE(!strcmp(exe, "/rootfs"), "/proc/self/exe is %s", exe);
  int masked = open("/proc/timer_list", O_RDONLY);
  FX_TRUE(masked >= 0 && read(masked, text, sizeof text) == 0, "/proc/timer_list is not masked");
  close(masked);
  struct stat st;
  FX_EQ("stat of /dev/zero", 0, stat("/dev/zero", &st));
  FX_TRUE(S_ISCHR(st.st_mode) && st.st_rdev == makedev(1, 5) && (st.st_mode & 07777) == 0666,
          "/dev/zero is no longer the zero device (mode %o)", st.st_mode);
  FX_EQ("stat of /dev/shm", 0, stat("/dev/shm", &st));
  FX_EQ("mode of /dev/shm", 01777, st.st_mode & 07777);
  FX_EQ("write to the open /dev/null", 3, write(null, "abc", 3));
  int zero = open("/dev/zero", O_RDONLY);
  char zeros[4] = {1, 1, 1, 1};
  FX_TRUE(zero >= 0 && read(zero, zeros, 4) == 4 && !zeros[0] && !zeros[3], "/dev/zero does not read zeros");
  close(zero);
  char host[64] = "";
  int name = open("/etc/hostname", O_RDONLY);
  FX_TRUE(name >= 0 && read(name, host, sizeof host - 1) > 0, "/etc/hostname cannot be read");
  FX_TRUE(!strcmp(host, "rootfs-fixture\n"), "/etc/hostname reads \"%s\"", host);
  close(name);
  struct statvfs vfs;
  FX_EQ("statvfs of /usr", 0, statvfs("/usr", &vfs));
  FX_TRUE(vfs.f_flag & ST_RDONLY, "/usr is writable");
  char points[8192];
  mount_points(points, sizeof points);
  FX_TRUE(!strcmp(points, "/ /usr /proc /dev /proc/timer_list /etc/hostname"), "the mounts are %s", points);

  close(marker);
  close(null);
  fx_finish();
}

int main(int argc, char **argv) {
  fx_init("rootfs");
  if (argc == 2 && !strcmp(argv[1], "--inside")) inside();
  else if (argc == 2) enter(argv[1]);
  errno = EINVAL;
  fx_setup_fail("usage: rootfs DIR");
}
