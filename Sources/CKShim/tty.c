// Pseudo-terminals: their state is only asked and set through ioctls (variadic) over kernel
// structs (termios2) Swift cannot name.
#include <asm/termbits.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <sys/ioctl.h>
#include "ckshim.h"

_Static_assert(sizeof(struct termios2) == CK_TERMIOS2_SIZE, "struct termios2");

int ck_pty_facts(int fd, int master, struct ck_pty_facts *facts) {
  memset(facts, 0, sizeof(*facts));
  facts->index = -1;
  // On a master, these act on the terminal (its slave side): what both sides see.
  if (ioctl(fd, TCGETS2, facts->termios) < 0) return -errno;
  struct winsize size;
  if (ioctl(fd, TIOCGWINSZ, &size) < 0) return -errno;
  facts->window[0] = size.ws_row;
  facts->window[1] = size.ws_col;
  facts->window[2] = size.ws_xpixel;
  facts->window[3] = size.ws_ypixel;
  // No session or group: ENOTTY; left 0.
  if (ioctl(fd, TIOCGSID, &facts->session) < 0) facts->session = 0;
  if (ioctl(fd, TIOCGPGRP, &facts->foreground) < 0) facts->foreground = 0;
  if (ioctl(fd, FIONREAD, &facts->readable) < 0) facts->readable = 0;
  if (master) {
    if (ioctl(fd, TIOCGPTN, &facts->index) < 0) return -errno;
    if (ioctl(fd, TIOCGPTLCK, &facts->locked) < 0) return -errno;
    if (ioctl(fd, TIOCGPKT, &facts->packet) < 0) return -errno;
  }
  return 0;
}

int ck_pty_open_master(int fd, int *index) {
  int unlock = 0;
  if (ioctl(fd, TIOCSPTLCK, &unlock) < 0) return -errno;
  return ioctl(fd, TIOCGPTN, index) < 0 ? -errno : 0;
}

int ck_pty_apply(int master, const struct ck_pty_facts *facts) {
  if (ioctl(master, TCSETS2, facts->termios) < 0) return -errno;
  struct winsize size = {.ws_row = facts->window[0], .ws_col = facts->window[1], .ws_xpixel = facts->window[2], .ws_ypixel = facts->window[3]};
  if (ioctl(master, TIOCSWINSZ, &size) < 0) return -errno;
  int packet = facts->packet;
  return ioctl(master, TIOCPKT, &packet) < 0 ? -errno : 0;
}

int ck_pty_lock(int master, int locked) {
  return ioctl(master, TIOCSPTLCK, &locked) < 0 ? -errno : 0;
}

int ck_pty_typed_ahead(int master, unsigned long long *devpts) {
  *devpts = 0;
  int slave = ioctl(master, TIOCGPTPEER, O_RDONLY | O_NOCTTY | O_CLOEXEC | O_NONBLOCK);
  if (slave < 0) return 0;  // a locked master: no slave, nothing typed into it
  int waiting = 0;
  if (ioctl(slave, FIONREAD, &waiting) < 0) waiting = 0;
  struct stat status;
  if (fstat(slave, &status) == 0) *devpts = status.st_dev;
  close(slave);
  return waiting;
}

size_t ck_pty_take_output(int master, void *buffer, size_t capacity, int *error) {
  size_t taken = 0;
  *error = 0;
  for (;;) {
    int waiting = 0;
    if (ioctl(master, FIONREAD, &waiting) < 0) { *error = -errno; return taken; }
    if (waiting == 0) {
      // The line discipline holds 4 KiB; the rest reaches it from the port's buffers a
      // moment after room is made: wait for it a little.
      struct pollfd ready = {.fd = master, .events = POLLIN};
      if (poll(&ready, 1, 20) <= 0 || ioctl(master, FIONREAD, &waiting) < 0 || waiting == 0) return taken;
    }
    if (taken == capacity) { *error = -E2BIG; return taken; }
    if ((size_t)waiting > capacity - taken) waiting = (int)(capacity - taken);
    // As many as FIONREAD counts are there: the read does not block.
    ssize_t got = read(master, (char *)buffer + taken, (size_t)waiting);
    if (got < 0) { *error = -errno; return taken; }
    if (got == 0) return taken;
    taken += (size_t)got;
  }
}

int ck_pty_put_output(int master, const void *bytes, size_t length) {
  int slave = ioctl(master, TIOCGPTPEER, O_WRONLY | O_NOCTTY | O_CLOEXEC | O_NONBLOCK);
  if (slave < 0) return -errno;
  struct termios2 saved, raw;
  int err = 0;
  if (ioctl(slave, TCGETS2, &saved) < 0) err = -errno;
  raw = saved;
  // The bytes went through output processing once (ONLCR...): not again.
  raw.c_oflag &= ~(tcflag_t)OPOST;
  if (!err && ioctl(slave, TCSETS2, &raw) < 0) err = -errno;
  size_t done = 0;
  while (!err && done < length) {
    ssize_t n = write(slave, (const char *)bytes + done, length - done);
    if (n < 0) err = -errno;
    else done += (size_t)n;
  }
  if (ioctl(slave, TCSETS2, &saved) < 0 && !err) err = -errno;
  close(slave);
  return err;
}

int ck_pty_readable(int fd) {
  int waiting = 0;
  return ioctl(fd, FIONREAD, &waiting) < 0 ? -errno : waiting;
}
