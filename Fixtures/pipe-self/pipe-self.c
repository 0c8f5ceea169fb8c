/* pipe-self: a pipe whose two ends are both held by this process, with 16 KiB of data buffered
 * and unread. A restore must recreate the pipe and put the data back in order.
 * To make the buffer layout less regular, 16384 + 100 bytes go in as 17 odd-sized writes and
 * the first 100 bytes are read back before "ready", so the unread data starts inside a page.
 * The read end is O_NONBLOCK and the pipe is resized to 128 KiB: both must survive too.
 * After SIGTERM: F_GETFL of the read end has O_NONBLOCK; F_GETPIPE_SZ is 128 KiB; FIONREAD
 * is 16384; reading until EAGAIN returns exactly the 16384 expected bytes; and the pipe still
 * works (write 5 bytes, read them back).
 * usage: pipe-self */
#include "fix.h"
#include <fcntl.h>
#include <sys/ioctl.h>

#define SKIP 100
#define KEEP 16384
static uint8_t pbyte(size_t i) { return (uint8_t)(i * 7 + (i >> 8) * 13 + 0x21); }

int main(void) {
  fx_init("pipe-self");
  fx_term_setup();
  int p[2];
  FX_SYS(pipe(p));
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
  fx_finish();
}
