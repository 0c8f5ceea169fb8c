/* pty: a pseudo-terminal inside the container, the controlling terminal of a session there
 * (an interactive program under `script`, a terminal multiplexer, an ssh server).
 *
 *   pty [output]
 *
 * Makes a pty whose master stays with this process (pid 1), sets its window to 33x101, and
 * forks a child that starts a session with the slave as its controlling terminal, standard
 * input and output, turns echo and output processing off, makes itself the foreground group,
 * opens /dev/tty (kept), and answers each line it reads: "tty" with its ttyname, "ctty" with
 * whether a fresh /dev/tty is its session's, "devtty" through the /dev/tty it kept, anything
 * else upper-cased.
 * After SIGTERM: each of those answers comes back right through the master; the child's
 * ttyname is the master's ptsname; the window is 33x101, echo is off, the terminal's session
 * and foreground group are the child's.
 *
 * `output`: also a second pty, both sides held by this process, output processing on (the
 * default: "\n" goes out as "\r\n"), with "out\nput" written to its slave and not read:
 * after SIGTERM the master reads exactly "out\r\nput", no more, no less.
 */
#include "fix.h"
#include <ctype.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <termios.h>

static void child_loop(const char *slave_name, int ready) {
  if (setsid() < 0) _exit(2);
  int slave = open(slave_name, O_RDWR);  /* without O_NOCTTY: the session's terminal */
  if (slave < 0 || ioctl(slave, TIOCSCTTY, 0) < 0) _exit(2);
  struct termios t;
  if (tcgetattr(slave, &t) < 0) _exit(2);
  t.c_lflag &= ~(tcflag_t)(ECHO | ECHONL);
  t.c_oflag &= ~(tcflag_t)OPOST;
  if (tcsetattr(slave, TCSANOW, &t) < 0 || tcsetpgrp(slave, getpid()) < 0) _exit(2);
  dup2(slave, 0);
  dup2(slave, 1);
  if (slave > 1) close(slave);
  int tty = open("/dev/tty", O_RDWR);
  if (tty < 0 || write(ready, "r", 1) != 1) _exit(2);
  close(ready);
  char line[256];
  size_t used = 0;
  for (;;) {
    char c;
    ssize_t n = read(0, &c, 1);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) _exit(0);
    if (c != '\n') { if (used < sizeof line - 1) line[used++] = c; continue; }
    line[used] = 0;
    used = 0;
    char answer[512];
    if (!strcmp(line, "tty")) {
      snprintf(answer, sizeof answer, "%s\n", ttyname(0) ? ttyname(0) : "none");
    } else if (!strcmp(line, "ctty")) {
      int fresh = open("/dev/tty", O_RDWR);
      pid_t sid = 0;
      int ok = fresh >= 0 && ioctl(fresh, TIOCGSID, &sid) == 0 && sid == getsid(0);
      if (fresh >= 0) close(fresh);
      snprintf(answer, sizeof answer, "ctty %s\n", ok ? "ok" : "bad");
    } else if (!strcmp(line, "devtty")) {
      fx_write(tty, "DEVTTY OK\n", 10);
      continue;
    } else {
      for (char *p = line; *p; p++) *p = (char)toupper((unsigned char)*p);
      snprintf(answer, sizeof answer, "%s\n", line);
    }
    fx_write(1, answer, strlen(answer));
  }
}

/* One line from the master (without its newline), or "" after 5 s. */
static void read_line(int master, char *out, size_t size) {
  size_t used = 0;
  out[0] = 0;
  while (used < size - 1) {
    struct pollfd p = {.fd = master, .events = POLLIN};
    int ready = poll(&p, 1, 5000);
    if (ready < 0 && errno == EINTR) continue;
    if (ready <= 0) break;
    char c;
    ssize_t n = read(master, &c, 1);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0 || c == '\n') break;
    if (c != '\r') out[used++] = c;
  }
  out[used] = 0;
}

static void ask(int master, const char *question, char *answer, size_t size) {
  fx_write(master, question, strlen(question));
  fx_write(master, "\n", 1);
  read_line(master, answer, size);
}

int main(int argc, char **argv) {
  fx_init("pty");
  fx_term_setup();
  int output = argc > 1 && !strcmp(argv[1], "output");
  int second = -1, second_slave = -1;
  if (output) {
    second = FX_SYS(posix_openpt(O_RDWR | O_NOCTTY));
    FX_SYS(unlockpt(second));
    second_slave = FX_SYS(open(ptsname(second), O_RDWR | O_NOCTTY));
    FX_SYS(write(second_slave, "out\nput", 7));
  }
  int master = FX_SYS(posix_openpt(O_RDWR | O_NOCTTY));
  FX_SYS(grantpt(master));
  FX_SYS(unlockpt(master));
  char slave_name[64];
  snprintf(slave_name, sizeof slave_name, "%s", ptsname(master));
  struct winsize window = {.ws_row = 33, .ws_col = 101};
  FX_SYS(ioctl(master, TIOCSWINSZ, &window));
  int ready[2];
  FX_SYS(pipe(ready));
  pid_t child = FX_SYS(fork());
  if (child == 0) {
    close(master);
    close(ready[0]);
    child_loop(slave_name, ready[1]);
  }
  close(ready[1]);
  char byte;
  if (read(ready[0], &byte, 1) != 1) fx_setup_fail("the child did not take the terminal");
  close(ready[0]);
  char answer[256];
  ask(master, "ping", answer, sizeof answer);
  if (strcmp(answer, "PING")) fx_setup_fail("the child answered \"%s\"", answer);

  fx_ready();
  fx_wait_term();

  ask(master, "hello", answer, sizeof answer);
  FX_TRUE(!strcmp(answer, "HELLO"), "hello came back as \"%s\"", answer);
  ask(master, "tty", answer, sizeof answer);
  FX_TRUE(!strcmp(answer, ptsname(master)), "the child's terminal is %s, the master's slave %s", answer, ptsname(master));
  ask(master, "ctty", answer, sizeof answer);
  FX_TRUE(!strcmp(answer, "ctty ok"), "the child's /dev/tty: %s", answer);
  ask(master, "devtty", answer, sizeof answer);
  FX_TRUE(!strcmp(answer, "DEVTTY OK"), "the child's kept /dev/tty answered \"%s\"", answer);
  struct winsize now;
  FX_EQ("TIOCGWINSZ", 0, ioctl(master, TIOCGWINSZ, &now));
  FX_TRUE(now.ws_row == 33 && now.ws_col == 101, "the window is %dx%d", now.ws_row, now.ws_col);
  struct termios t;
  FX_EQ("tcgetattr", 0, tcgetattr(master, &t));
  FX_TRUE(!(t.c_lflag & ECHO) && !(t.c_oflag & OPOST), "echo or output processing is on again");
  pid_t sid = 0, group = 0;
  FX_EQ("TIOCGSID", 0, ioctl(master, TIOCGSID, &sid));
  FX_EQ("the terminal's session", child, sid);
  FX_EQ("TIOCGPGRP", 0, ioctl(master, TIOCGPGRP, &group));
  FX_EQ("the terminal's foreground group", child, group);
  if (output) {
    char waiting[64] = "";
    size_t got = 0;
    for (struct pollfd p = {.fd = second, .events = POLLIN}; got < sizeof waiting - 1 && poll(&p, 1, 200) == 1;) {
      ssize_t n = read(second, waiting + got, sizeof waiting - 1 - got);
      if (n <= 0) break;
      got += (size_t)n;
    }
    FX_TRUE(got == 8 && !memcmp(waiting, "out\r\nput", 8), "the output waiting in the second terminal: %zu bytes %02x %02x %02x %02x %02x %02x %02x %02x", got,
            waiting[0], waiting[1], waiting[2], waiting[3], waiting[4], waiting[5], waiting[6], waiting[7]);
  }

  kill(child, SIGKILL);
  fx_finish();
}
