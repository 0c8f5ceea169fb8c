// posix_spawn with a clean descriptor table and signal state: see ckshim.h.
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include "ckshim.h"

pid_t ck_spawn(char *const argv[], char *const envp[], int in_fd, int out_fd, int err_fd, const char *terminal) {
  posix_spawn_file_actions_t actions;
  posix_spawnattr_t attributes;
  posix_spawn_file_actions_init(&actions);
  // A session of its own first (POSIX_SPAWN_SETSID), so that opening the terminal makes it
  // the controlling terminal.
  if (terminal) posix_spawn_file_actions_addopen(&actions, 0, terminal, O_RDWR, 0);
  else if (in_fd >= 0) posix_spawn_file_actions_adddup2(&actions, in_fd, 0);
  else posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&actions, out_fd, 1);
  posix_spawn_file_actions_adddup2(&actions, err_fd, 2);
  posix_spawn_file_actions_addclosefrom_np(&actions, 3);
  posix_spawnattr_init(&attributes);
  sigset_t none, all;
  sigemptyset(&none);
  sigfillset(&all);
  posix_spawnattr_setsigmask(&attributes, &none);
  posix_spawnattr_setsigdefault(&attributes, &all);
  posix_spawnattr_setflags(&attributes, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF | (terminal ? POSIX_SPAWN_SETSID : 0));
  pid_t pid;
  int error = posix_spawn(&pid, argv[0], &actions, &attributes, argv, envp);
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attributes);
  return error ? -error : pid;
}
