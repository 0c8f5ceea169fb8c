/* launch: starts a fixture as a one-process container, for the tests.
 *
 *   launch CGROUPDIR [--host] PROGRAM ARGS...
 *
 * Gives PROGRAM a clean start: every inherited descriptor but 0-2 closed (a test runner's
 * stray sockets would make the dump refuse the fixture), no blocked signals, default signal
 * actions. Unless --host, it unshares pid, mount, UTS and IPC namespaces and forks, so that
 * PROGRAM runs as pid 1 of the new pid namespace, alone in the cgroup CGROUPDIR; it waits
 * for it and exits with its status. With --host it joins the cgroup and execs PROGRAM in
 * place, in the host's namespaces.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

static void die(const char *what) {
  fprintf(stderr, "launch: %s: %s\n", what, strerror(errno));
  exit(2);
}

static void join_cgroup(const char *dir) {
  char path[4096];
  snprintf(path, sizeof path, "%s/cgroup.procs", dir);
  int fd = open(path, O_WRONLY);
  if (fd < 0 || write(fd, "0", 1) != 1) die(path);
  close(fd);
}

int main(int argc, char **argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: launch CGROUPDIR [--host] PROGRAM ARGS...\n");
    return 2;
  }
  if (syscall(SYS_close_range, 3, ~0U, 0) < 0) die("close_range");
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, NULL);
  for (int signal = 1; signal < 65; signal++) {
    if (signal != SIGKILL && signal != SIGSTOP) sigaction(signal, &(struct sigaction){.sa_handler = SIG_DFL}, NULL);
  }
  int host = !strcmp(argv[2], "--host");
  char **program = argv + (host ? 3 : 2);
  if (host) {
    join_cgroup(argv[1]);
    execv(program[0], program);
    die(program[0]);
  }
  if (unshare(CLONE_NEWPID | CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC) < 0) die("unshare");
  pid_t child = fork();
  if (child < 0) die("fork");
  if (child == 0) {
    join_cgroup(argv[1]);
    execv(program[0], program);
    die(program[0]);
  }
  int status;
  while (waitpid(child, &status, 0) < 0)
    if (errno != EINTR) die("waitpid");
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}
