/* nested-ns: processes in UTS, IPC and network namespaces of their own inside the container.
 *
 *   nested-ns
 *
 * pid 1 forks A, which unshares UTS (hostname "nested-a"), IPC and network namespaces (with
 * loopback up) and forks A1, which stays in them; then B, which joins A's UTS namespace only
 * (setns through a pidfd of A); then C, which unshares a mount namespace and mounts a tmpfs
 * holding a file "secret" on a directory under /tmp that the init made. On SIGUSR1 each
 * writes one line to a pipe: its hostname, its namespaces (inode numbers), whether loopback
 * is up and whether it sees the secret.
 * After SIGTERM: A and A1 share A's three namespaces, none the init's; B shares A's UTS
 * namespace and the init's IPC and network ones; every hostname is as it was (the init's
 * too); loopback is up in A's network namespace; C alone is in its mount namespace and sees
 * the secret, which the init does not.
 */
#include "fix.h"
#include <fcntl.h>
#include <net/if.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <time.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>

static int report_fd = -1;
static const char *me = "?";
static char secret_dir[256], secret[300];

static unsigned long ns_inode(const char *kind) {
  char path[64];
  snprintf(path, sizeof path, "/proc/self/ns/%s", kind);
  struct stat st;
  return stat(path, &st) == 0 ? (unsigned long)st.st_ino : 0;
}

static int loopback_up(void) {
  int probe = socket(AF_INET, SOCK_DGRAM, 0);
  struct ifreq request = {0};
  strcpy(request.ifr_name, "lo");
  int up = probe >= 0 && ioctl(probe, SIOCGIFFLAGS, &request) == 0 && (request.ifr_flags & IFF_UP);
  if (probe >= 0) close(probe);
  return up;
}

static void report(char *out, size_t size) {
  char host[65] = "";
  gethostname(host, sizeof host - 1);
  snprintf(out, size, "%s %s %lu %lu %lu %lu %d %d\n", me, host, ns_inode("uts"), ns_inode("ipc"), ns_inode("net"), ns_inode("mnt"),
           loopback_up(), access(secret, F_OK) == 0);
}

static void on_usr1(int signal) {
  (void)signal;
  char line[256];
  report(line, sizeof line);
  fx_write(report_fd, line, strlen(line));
}

static void wait_forever(const char *name, int ready) {
  me = name;
  struct sigaction sa = {.sa_handler = on_usr1};
  sigaction(SIGUSR1, &sa, NULL);
  if (write(ready, "r", 1) != 1) _exit(2);
  for (;;) pause();
}

struct seen { char name[16], host[65]; unsigned long uts, ipc, net, mnt; int lo, secret; };

int main(void) {
  fx_init("nested-ns");
  fx_term_setup();
  int pipes[2], ready[2];
  snprintf(secret_dir, sizeof secret_dir, "/tmp/ckcont-nested-%ld-%d", (long)time(NULL), (int)getpid());
  snprintf(secret, sizeof secret, "%s/secret", secret_dir);
  FX_SYS(mkdir(secret_dir, 0700));
  FX_SYS(pipe(pipes));
  FX_SYS(pipe(ready));
  report_fd = pipes[1];
  pid_t a = FX_SYS(fork());
  if (a == 0) {
    if (unshare(CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWNET) < 0 || sethostname("nested-a", 8) < 0) _exit(2);
    int probe = socket(AF_INET, SOCK_DGRAM, 0);
    struct ifreq request = {0};
    strcpy(request.ifr_name, "lo");
    request.ifr_flags = IFF_UP;
    if (probe < 0 || ioctl(probe, SIOCSIFFLAGS, &request) < 0) _exit(2);
    close(probe);
    if (fork() == 0) wait_forever("A1", ready[1]);
    wait_forever("A", ready[1]);
  }
  char byte;
  if (read(ready[0], &byte, 1) != 1 || read(ready[0], &byte, 1) != 1) fx_setup_fail("A and A1 did not start");
  pid_t b = FX_SYS(fork());
  if (b == 0) {
    int pidfd = (int)syscall(SYS_pidfd_open, a, 0);
    if (pidfd < 0 || setns(pidfd, CLONE_NEWUTS) < 0) _exit(2);
    close(pidfd);
    wait_forever("B", ready[1]);
  }
  if (read(ready[0], &byte, 1) != 1) fx_setup_fail("B did not start");
  pid_t c = FX_SYS(fork());
  if (c == 0) {
    if (unshare(CLONE_NEWNS) < 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0) _exit(2);
    if (mount("tmpfs", secret_dir, "tmpfs", 0, "size=64k") < 0) _exit(2);
    int fd = open(secret, O_WRONLY | O_CREAT, 0600);
    if (fd < 0) _exit(2);
    close(fd);
    wait_forever("C", ready[1]);
  }
  if (read(ready[0], &byte, 1) != 1) fx_setup_fail("C did not start");
  char before[65] = "";
  gethostname(before, sizeof before - 1);

  fx_ready();
  fx_wait_term();

  /* A1 is A's child: signal the group of processes but the init by pids read from A. */
  struct seen seen[4];
  memset(seen, 0, sizeof seen);
  kill(a, SIGUSR1);
  kill(b, SIGUSR1);
  kill(c, SIGUSR1);
  char path[64];
  snprintf(path, sizeof path, "/proc/%d/task/%d/children", (int)a, (int)a);
  FILE *children = fopen(path, "r");
  int a1 = 0;
  if (!children || fscanf(children, "%d", &a1) != 1) fx_bad("A has no child A1 any more");
  if (children) fclose(children);
  if (a1 > 0) kill(a1, SIGUSR1);
  FILE *lines = fdopen(pipes[0], "r");
  for (int i = 0; i < (a1 > 0 ? 4 : 3); i++) {
    struct seen s;
    if (fscanf(lines, "%15s %64s %lu %lu %lu %lu %d %d", s.name, s.host, &s.uts, &s.ipc, &s.net, &s.mnt, &s.lo, &s.secret) != 8) {
      fx_bad("a report is missing");
      break;
    }
    int slot = !strcmp(s.name, "A") ? 0 : !strcmp(s.name, "A1") ? 1 : !strcmp(s.name, "B") ? 2 : 3;
    seen[slot] = s;
  }
  char now[65] = "";
  gethostname(now, sizeof now - 1);
  FX_TRUE(!strcmp(now, before), "the init's hostname is %s, was %s", now, before);
  unsigned long uts = ns_inode("uts"), ipc = ns_inode("ipc"), net = ns_inode("net");
  FX_TRUE(!strcmp(seen[0].host, "nested-a") && !strcmp(seen[1].host, "nested-a") && !strcmp(seen[2].host, "nested-a"),
          "hostnames: A %s, A1 %s, B %s", seen[0].host, seen[1].host, seen[2].host);
  FX_TRUE(seen[0].uts == seen[1].uts && seen[0].uts == seen[2].uts && seen[0].uts != uts, "A, A1 and B do not share A's UTS namespace");
  FX_TRUE(seen[0].ipc == seen[1].ipc && seen[0].ipc != ipc && seen[2].ipc == ipc, "the IPC namespaces are mixed up");
  FX_TRUE(seen[0].net == seen[1].net && seen[0].net != net && seen[2].net == net, "the network namespaces are mixed up");
  FX_TRUE(seen[0].lo && seen[1].lo, "loopback is down in A's network namespace");
  unsigned long mnt = ns_inode("mnt");
  FX_TRUE(seen[3].mnt != mnt && seen[0].mnt == mnt && seen[2].mnt == mnt, "the mount namespaces are mixed up");
  FX_TRUE(seen[3].secret && !seen[0].secret, "C's tmpfs is not C's alone (C sees it: %d, A: %d)", seen[3].secret, seen[0].secret);
  FX_TRUE(access(secret, F_OK) != 0, "the init sees C's secret");

  kill(a, SIGKILL);
  kill(b, SIGKILL);
  kill(c, SIGKILL);
  waitpid(c, NULL, 0);
  rmdir(secret_dir);
  if (a1 > 0) kill(a1, SIGKILL);
  fx_finish();
}
