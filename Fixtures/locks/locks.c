/* locks: advisory file locks come back with their holders.
 *
 *   locks [DIR]
 *
 * pid 1 holds, on three files under DIR: a flock(2) write lock on A, a POSIX read lock on
 * bytes 10..29 of B, and an open-file-description write lock on all of C. After SIGTERM a
 * child forked then, with descriptors of its own, finds each lock held: flock of A fails
 * with EWOULDBLOCK, F_GETLK on B reports pid 1's read lock and its range, F_OFD_GETLK on C
 * reports a write lock; and pid 1 can still unlock and lock again. A fourth file D holds a
 * read lease (F_SETLEASE), which F_GETLEASE reports after the restore; a fifth, made with
 * O_TMPFILE in DIR (never named), holds "unnamed" and reads it back.
 */
#include "fix.h"
#include <fcntl.h>
#include <sys/file.h>
#include <sys/wait.h>

static char paths[4][4096];

static int child_check(void) {
  int a = open(paths[0], O_RDWR), b = open(paths[1], O_RDWR), c = open(paths[2], O_RDWR);
  if (a < 0 || b < 0 || c < 0) return 10;
  if (flock(a, LOCK_EX | LOCK_NB) == 0 || errno != EWOULDBLOCK) return 11;
  struct flock probe = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 100};
  if (fcntl(b, F_GETLK, &probe) < 0) return 12;
  if (probe.l_type != F_RDLCK || probe.l_start != 10 || probe.l_len != 20 || probe.l_pid != 1) return 13;
  struct flock whole = {.l_type = F_RDLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 0};
  if (fcntl(c, F_OFD_GETLK, &whole) < 0) return 14;
  if (whole.l_type != F_WRLCK) return 15;
  return 0;
}

int main(int argc, char **argv) {
  fx_init("locks");
  fx_term_setup();
  const char *dir = fx_dir(argc > 1 ? argv[1] : NULL);
  int fds[3];
  for (int i = 0; i < 3; i++) {
    snprintf(paths[i], sizeof paths[i], "%s/ckcont-locks-%d-%c-XXXXXX", dir, (int)getpid(), 'a' + i);
    fds[i] = FX_SYS(mkstemp(paths[i]));
    if (write(fds[i], "0123456789012345678901234567890123456789", 40) != 40) fx_setup_fail("write");
  }
  FX_SYS(flock(fds[0], LOCK_EX));
  struct flock range = {.l_type = F_RDLCK, .l_whence = SEEK_SET, .l_start = 10, .l_len = 20};
  FX_SYS(fcntl(fds[1], F_SETLK, &range));
  struct flock whole = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 0};
  FX_SYS(fcntl(fds[2], F_OFD_SETLK, &whole));
  snprintf(paths[3], sizeof paths[3], "%s/ckcont-locks-%d-d-XXXXXX", dir, (int)getpid());
  int made = FX_SYS(mkstemp(paths[3]));
  close(made);
  int leased = FX_SYS(open(paths[3], O_RDONLY));
  FX_SYS(fcntl(leased, F_SETLEASE, F_RDLCK));
  int unnamed = FX_SYS(open(dir, O_TMPFILE | O_RDWR, 0600));
  if (write(unnamed, "unnamed", 7) != 7) fx_setup_fail("write the O_TMPFILE file");
  fx_ready();
  fx_wait_term();
  pid_t child = FX_SYS(fork());
  if (child == 0) _exit(child_check());
  int status;
  waitpid(child, &status, 0);
  int code = WIFEXITED(status) ? WEXITSTATUS(status) : 100;
  if (fx_flip()) code = 99;
  FX_TRUE(code == 0, "a lock was not held after the restore (check %d: 11 flock, 13 POSIX, 15 OFD)", code);
  FX_EQ("F_GETLEASE", F_RDLCK, fcntl(leased, F_GETLEASE));
  char text[16] = "";
  FX_EQ("pread of the O_TMPFILE file", 7, pread(unnamed, text, sizeof text - 1, 0));
  FX_TRUE(!strcmp(text, "unnamed"), "the O_TMPFILE file reads \"%s\"", text);
  FX_EQ("flock unlock", 0, flock(fds[0], LOCK_UN));
  FX_EQ("flock again", 0, flock(fds[0], LOCK_EX | LOCK_NB));
  for (int i = 0; i < 4; i++) unlink(paths[i]);
  fx_finish();
}
