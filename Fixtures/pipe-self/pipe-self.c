/* pipe-self: a pipe whose two ends are both held by this process, with 32 KiB of data buffered
 * and unread. A restore must recreate the pipe and put the data back in order.
 * To make the buffer layout less regular, 32768 + 100 bytes go in as 34 odd-sized writes and
 * the first 100 bytes are read back before "ready", so the unread data starts inside a page.
 * The read end is O_NONBLOCK and the pipe is resized to 128 KiB: both must survive too.
 * After SIGTERM: F_GETFL of the read end has O_NONBLOCK; F_GETPIPE_SZ is 128 KiB; FIONREAD
 * is 32768; reading until EAGAIN returns exactly the 32768 expected bytes; and the pipe still
 * works (write 5 bytes, read them back).
 * usage: pipe-self [fifo [DIR]]
 *   fifo   the same through a FIFO made in DIR ($CKCONT_FIXTURE_DIR or /tmp), both ends
 *          opened by path (the reader first, O_NONBLOCK); removed at the end. */
#include "fix.h"
#include <fcntl.h>
#include <sys/ioctl.h>
#include <time.h>

#define SKIP 100
#define KEEP 32768
static uint8_t pbyte(size_t i) { return (uint8_t)(i * 7 + (i >> 8) * 13 + 0x21); }

int main(int argc, char **argv) {
  fx_init("pipe-self");
  fx_term_setup();
  int p[2];
  int fifo = argc > 1 && !strcmp(argv[1], "fifo");
  static char path[4096];
  if (fifo) {
    struct timespec t; clock_gettime(CLOCK_REALTIME, &t);
    snprintf(path, sizeof path, "%s/ckcont-fifo-%lld-%ld", fx_dir(argc > 2 ? argv[2] : NULL), (long long)t.tv_sec, t.tv_nsec);
    FX_SYS(mkfifo(path, 0600));
    p[0] = FX_SYS(open(path, O_RDONLY | O_NONBLOCK));
    p[1] = FX_SYS(open(path, O_WRONLY));
  } else {
    FX_SYS(pipe(p));
  }
  FX_SYS(fcntl(p[0], F_SETPIPE_SZ, 128 << 10));
  static uint8_t buf[SKIP + KEEP + 64];
  for (size_t i = 0; i < SKIP + KEEP; i++) buf[i] = pbyte(i);
  for (size_t off = 0; off < SKIP + KEEP;) {
    size_t n = 967; if (off + n > SKIP + KEEP) n = SKIP + KEEP - off;
    if (write(p[1], buf + off, n) != (ssize_t)n) fx_setup_fail("write");
    off += n;
  }
  if (read(p[0], buf, SKIP) != SKIP) fx_setup_fail("read");
  FX_SYS(fcntl(p[0], F_SETFL, O_NONBLOCK));

  fx_ready();
  fx_wait_term();

  FX_EQ("read end F_GETFL & O_NONBLOCK", O_NONBLOCK, fcntl(p[0], F_GETFL) & O_NONBLOCK);
  FX_EQ("write end F_GETFL & O_ACCMODE", O_WRONLY, fcntl(p[1], F_GETFL) & O_ACCMODE);
  FX_EQ("F_GETPIPE_SZ", 128 << 10, fcntl(p[0], F_GETPIPE_SZ));
  int avail = -1; ioctl(p[0], FIONREAD, &avail);
  FX_EQ("FIONREAD", KEEP, avail);
  memset(buf, 0, sizeof buf);
  size_t got = 0; ssize_t n;
  while (got < sizeof buf && (n = read(p[0], buf + got, sizeof buf - got)) > 0) got += (size_t)n;
  FX_EQ("bytes read until EAGAIN", KEEP, got);
  if (fx_flip()) buf[KEEP / 2] ^= 1;
  size_t j = 0; while (j < KEEP && buf[j] == pbyte(SKIP + j)) j++;
  FX_TRUE(j == KEEP, "pipe data differs at offset %zu: expected %#x got %#x", j, pbyte(SKIP + j), buf[j]);
  char c[5] = "";
  FX_EQ("write after draining", 5, write(p[1], "again", 5));
  FX_EQ("read after draining", 5, read(p[0], c, 5));
  FX_TRUE(!memcmp(c, "again", 5), "pipe round trip: got \"%.5s\"", c);
  if (fifo) unlink(path);
  fx_finish();
}
