/* fuse-hang: makes a task that cannot be frozen, for the freezer's timeout path.
 *
 *   fuse-hang MOUNTDIR CGROUPDIR
 *
 * Mounts a FUSE filesystem on MOUNTDIR and serves nothing but its INIT handshake. A child
 * (the victim) moves itself into the cgroup CGROUPDIR and stats a file on the mount. Its
 * request is never answered, so the kernel parks it in request_wait_answer(): when the
 * freezer interrupts the first, interruptible wait, FUSE falls back to a killable wait
 * (TASK_KILLABLE, state D), which freezing cannot end. That is the real-world case of a task
 * stuck in uninterruptible sleep on a dead network or FUSE filesystem.
 * Prints "ready VICTIMPID" once the victim's request has arrived. Killing this process closes
 * /dev/fuse, its last holder, which aborts the connection and releases the victim.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/fuse.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <unistd.h>

static void die(const char *what) {
  fprintf(stderr, "fuse-hang: %s: %s\n", what, strerror(errno));
  exit(2);
}

int main(int argc, char **argv) {
  if (argc != 3) {
    fprintf(stderr, "usage: fuse-hang MOUNTDIR CGROUPDIR\n");
    return 2;
  }
  /* In a mount namespace of its own (private): a mount in the host's would be copied into
   * the namespace of any container started meanwhile, and outlive this one there. */
  if (unshare(CLONE_NEWNS) < 0) die("unshare");
  if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0) die("make / private");
  int fuse = open("/dev/fuse", O_RDWR | O_CLOEXEC);
  if (fuse < 0) die("/dev/fuse");
  char options[128];
  snprintf(options, sizeof options, "fd=%d,rootmode=40000,user_id=0,group_id=0", fuse);
  if (mount("ckcont-fuse-hang", argv[1], "fuse", MS_NOSUID | MS_NODEV, options) < 0) die("mount");

  pid_t victim = fork();
  if (victim < 0) die("fork");
  if (victim == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    /* Only the daemon may hold /dev/fuse: its exit must abort the connection. */
    close(fuse);
    char path[4096], pid[32];
    snprintf(path, sizeof path, "%s/cgroup.procs", argv[2]);
    int fd = open(path, O_WRONLY);
    int n = snprintf(pid, sizeof pid, "%d", getpid());
    if (fd < 0 || write(fd, pid, n) != n) die(path);
    close(fd);
    snprintf(path, sizeof path, "%s/never-answered", argv[1]);
    struct stat st;
    stat(path, &st);
    _exit(0);
  }

  static char buffer[1 << 20];  /* FUSE requires a read buffer of at least max_write + headers */
  for (;;) {
    ssize_t n = read(fuse, buffer, sizeof buffer);
    if (n < 0) {
      if (errno == EINTR || errno == ENOENT) continue;
      die("read /dev/fuse");
    }
    struct fuse_in_header *in = (struct fuse_in_header *)buffer;
    if (in->opcode == FUSE_INIT) {
      struct {
        struct fuse_out_header header;
        struct fuse_init_out init;
      } reply;
      memset(&reply, 0, sizeof reply);
      reply.header.len = sizeof reply;
      reply.header.unique = in->unique;
      reply.init.major = FUSE_KERNEL_VERSION;
      reply.init.minor = FUSE_KERNEL_MINOR_VERSION;
      reply.init.max_write = 4096;
      reply.init.max_readahead = 4096;
      if (write(fuse, &reply, sizeof reply) < 0) die("write INIT reply");
    } else if (in->opcode != FUSE_INTERRUPT) {
      printf("ready %d\n", victim);
      fflush(stdout);
    }
  }
}
