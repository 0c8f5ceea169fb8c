/* launch: starts a fixture as a one-process container, for the tests.
 *
 *   launch CGROUPDIR [--host | --userns] PROGRAM ARGS...
 *
 * Gives PROGRAM a clean start: every inherited descriptor but 0-2 closed (a test runner's
 * stray sockets would make the dump refuse the fixture), no blocked signals, default signal
 * actions. Unless --host, it unshares pid, mount, UTS and IPC namespaces and forks, so that
 * PROGRAM runs as pid 1 of the new pid namespace, alone in the cgroup CGROUPDIR; it waits
 * for it and exits with its status. With --host it joins the cgroup and execs PROGRAM in
 * place, in the host's namespaces.
 * --userns puts those namespaces in a user namespace of their own whose ids 0-65535 are the
 * host's 100000-165535, as a rootless runtime's: a child unshares it, this process writes
 * its maps, the child unshares the rest and forks PROGRAM, which joins the cgroup (still
 * host root underneath) and becomes root of the namespace (host uid 100000) before the exec.
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

/* Waits for `child` and returns what this launcher exits with: its code, or 128 + signal. */
static int wait_for(pid_t child) {
  int status;
  while (waitpid(child, &status, 0) < 0)
    if (errno != EINTR) die("waitpid");
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

static void write_file(const char *path, const char *text) {
  int fd = open(path, O_WRONLY);
  if (fd < 0 || write(fd, text, strlen(text)) != (ssize_t)strlen(text)) die(path);
  close(fd);
}

static int launch_in_user_namespace(const char *cgroup, char **program) {
  int unshared[2], mapped[2];
  if (pipe(unshared) < 0 || pipe(mapped) < 0) die("pipe");
  pid_t child = fork();
  if (child < 0) die("fork");
  if (child == 0) {
    char byte = 0;
    if (unshare(CLONE_NEWUSER) < 0) die("unshare(CLONE_NEWUSER)");
    if (write(unshared[1], &byte, 1) != 1 || read(mapped[0], &byte, 1) != 1) die("sync");
    if (unshare(CLONE_NEWPID | CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC) < 0) die("unshare");
    pid_t init = fork();
    if (init < 0) die("fork");
    if (init == 0) {
      join_cgroup(cgroup);
      if (setresgid(0, 0, 0) < 0 || setresuid(0, 0, 0) < 0) die("setresuid(0) in the user namespace");
      execv(program[0], program);
      die(program[0]);
    }
    exit(wait_for(init));
  }
  char byte = 0, path[64];
  if (read(unshared[0], &byte, 1) != 1) die("sync");
  snprintf(path, sizeof path, "/proc/%d/uid_map", (int)child);
  write_file(path, "0 100000 65536\n");
  snprintf(path, sizeof path, "/proc/%d/gid_map", (int)child);
  write_file(path, "0 100000 65536\n");
  if (write(mapped[1], &byte, 1) != 1) die("sync");
  return wait_for(child);
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
  int userns = !strcmp(argv[2], "--userns");
  char **program = argv + (host || userns ? 3 : 2);
  if (host) {
    join_cgroup(argv[1]);
    execv(program[0], program);
    die(program[0]);
  }
  if (userns) return launch_in_user_namespace(argv[1], program);
  if (unshare(CLONE_NEWPID | CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC) < 0) die("unshare");
  pid_t child = fork();
  if (child < 0) die("fork");
  if (child == 0) {
    join_cgroup(argv[1]);
    execv(program[0], program);
    die(program[0]);
  }
  return wait_for(child);
}
