/* sigio: signal-driven I/O comes back: the descriptions keep O_ASYNC, their owner and their
 * signal.
 *
 *   sigio
 *
 * Before "ready": the read end of a pipe with O_ASYNC, owned by this process (F_OWNER_PID),
 * signalling SIGRTMIN+1 (F_SETSIG, so the siginfo names the descriptor); one end of a unix
 * socketpair with O_ASYNC, owned by this process's group (its own, F_SETOWN with -pgid),
 * plain SIGIO.
 * After SIGTERM: a byte written into the pipe brings SIGRTMIN+1 with si_fd the read end and
 * POLL_IN; a byte sent to the socket brings SIGIO; F_GETOWN_EX, F_GETSIG and O_ASYNC read as
 * before.
 */
#define _GNU_SOURCE
#include "fix.h"
#include <fcntl.h>
#include <sys/socket.h>

static volatile sig_atomic_t rt_count, rt_fd = -1, rt_code, io_count;

static void on_rt(int signal, siginfo_t *info, void *context) {
  (void)signal;
  (void)context;
  rt_count++;
  rt_fd = info->si_fd;
  rt_code = info->si_code;
}

static void on_io(int signal) {
  (void)signal;
  io_count++;
}

static int wait_for(volatile sig_atomic_t *counter) {
  for (int i = 0; i < 1000 && !*counter; i++) usleep(1000);
  return *counter != 0;
}

int main(void) {
  fx_init("sigio");
  fx_term_setup();
  struct sigaction action = {.sa_sigaction = on_rt, .sa_flags = SA_SIGINFO | SA_RESTART};
  FX_SYS(sigaction(SIGRTMIN + 1, &action, NULL));
  signal(SIGIO, on_io);
  /* A group of its own: launched in a new pid namespace, the group it came in is not visible. */
  FX_SYS(setpgid(0, 0));
  int pipe_ends[2], pair[2];
  FX_SYS(pipe2(pipe_ends, O_NONBLOCK));
  FX_SYS(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, pair));
  struct f_owner_ex owner = {.type = F_OWNER_PID, .pid = getpid()};
  FX_SYS(fcntl(pipe_ends[0], F_SETOWN_EX, &owner));
  FX_SYS(fcntl(pipe_ends[0], F_SETSIG, SIGRTMIN + 1));
  FX_SYS(fcntl(pipe_ends[0], F_SETFL, fcntl(pipe_ends[0], F_GETFL) | O_ASYNC));
  FX_SYS(fcntl(pair[0], F_SETOWN, -getpgrp()));
  FX_SYS(fcntl(pair[0], F_SETFL, fcntl(pair[0], F_GETFL) | O_ASYNC));
  fx_ready();
  fx_wait_term();
  struct f_owner_ex now;
  FX_SYS(fcntl(pipe_ends[0], F_GETOWN_EX, &now));
  FX_TRUE(now.type == F_OWNER_PID && now.pid == getpid(), "the pipe's owner is %d/%d", now.type, now.pid);
  FX_EQ("F_GETSIG of the pipe", SIGRTMIN + 1, fcntl(pipe_ends[0], F_GETSIG));
  FX_TRUE(fcntl(pipe_ends[0], F_GETFL) & O_ASYNC, "the pipe lost O_ASYNC");
  FX_SYS(fcntl(pair[0], F_GETOWN_EX, &now));
  FX_TRUE(now.type == F_OWNER_PGRP && now.pid == getpgrp(), "the socket's owner is %d/%d", now.type, now.pid);
  FX_TRUE(fcntl(pair[0], F_GETFL) & O_ASYNC, "the socket lost O_ASYNC");
  if (write(pipe_ends[1], "x", 1) != 1) fx_bad("write to the pipe");
  FX_TRUE(wait_for(&rt_count), "no SIGRTMIN+1 for the pipe");
  FX_EQ("si_fd of the pipe's signal", pipe_ends[0], rt_fd);
  FX_EQ("si_code of the pipe's signal", POLL_IN, rt_code);
  if (send(pair[1], "y", 1, 0) != 1) fx_bad("send to the socket");
  FX_TRUE(wait_for(&io_count), "no SIGIO for the socket");
  fx_finish();
}
