// Pseudo-terminals: their state is only asked and set through ioctls (variadic) over kernel
// structs (termios2) Swift cannot name.
#include <asm/termbits.h>
#include <errno.h>
#include <string.h>
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
