// The guard of a lazy migration's receiver (LazyPages.swift). In C: it is a child forked
// from the multi-threaded Swift process, which may run raw system calls only.
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include "ckshim.h"

// Kills every process of the cgroup directory `dir`: cgroup.kill (v2), else SIGKILL to each
// pid of cgroup.procs until none is left (v1), for at most about a second.
static void kill_cgroup(const char *dir) {
  char path[4200];
  size_t length = strlen(dir);
  if (length == 0 || length > 4000) return;
  memcpy(path, dir, length);
  memcpy(path + length, "/cgroup.kill", sizeof "/cgroup.kill");
  int fd = open(path, O_WRONLY | O_CLOEXEC);
  if (fd >= 0) {
    ssize_t written = write(fd, "1", 1);
    close(fd);
    if (written == 1) return;
  }
  memcpy(path + length, "/cgroup.procs", sizeof "/cgroup.procs");
  for (int round = 0; round < 200; round++) {
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return;
    char text[8192];
    ssize_t count = read(fd, text, sizeof text - 1);
    close(fd);
    if (count <= 0) return;
    long pid = 0;
    for (ssize_t i = 0; i < count; i++) {
      if (text[i] >= '0' && text[i] <= '9') {
        pid = pid * 10 + (text[i] - '0');
      } else {
        if (pid > 0) kill((pid_t)pid, SIGKILL);
        pid = 0;
      }
    }
    struct timespec pause = {0, 5000000};
    nanosleep(&pause, NULL);
  }
}

// The guard's life: holds every descriptor sent, learns the cgroup, and on the end of the
// stream before "done" kills the cgroup.
static void guard(int control) {
  char cgroup[4096] = "";
  for (;;) {
    char bytes[4096];
    union {
      char buffer[CMSG_SPACE(sizeof(int))];
      struct cmsghdr align;
    } space;
    struct iovec iov = {.iov_base = bytes, .iov_len = sizeof bytes - 1};
    struct msghdr message = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = space.buffer,
                             .msg_controllen = sizeof space.buffer};
    ssize_t count = recvmsg(control, &message, 0);
    if (count < 0 && errno == EINTR) continue;
    if (count <= 0) break;
    // A descriptor sent is kept open (a received one is this process's now): nothing else.
    if (bytes[0] == 'd') _exit(0);
    if (bytes[0] == 'c') {
      bytes[count] = 0;
      memcpy(cgroup, bytes + 1, (size_t)count);
    }
  }
  kill_cgroup(cgroup);
  _exit(0);
}

pid_t ck_spawn_lazy_guard(int *control) {
  int pair[2];
  if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pair) < 0) return -errno;
  pid_t pid = fork();
  if (pid < 0) {
    int error = errno;
    close(pair[0]);
    close(pair[1]);
    return -error;
  }
  if (pid == 0) {
    // Out of the receiver's session (a Ctrl-C there must not end it), deaf to the signals
    // that end a process politely; nothing of the receiver's open but its end.
    setsid();
    signal(SIGINT, SIG_IGN);
    signal(SIGTERM, SIG_IGN);
    signal(SIGHUP, SIG_IGN);
    signal(SIGPIPE, SIG_IGN);
    int end = pair[1];
    if (end > 0) syscall(SYS_close_range, 0, (unsigned)end - 1, 0);
    syscall(SYS_close_range, (unsigned)end + 1, ~0U, 0);
    guard(end);
  }
  close(pair[1]);
  *control = pair[0];
  return pid;
}
