/* memfd-private: a private mapping of a memfd keeps its own copied-on-write pages and shows
 * the file through the rest.
 *
 * A memfd "ckcont-private" of three pages (pattern A) stays open and is mapped privately.
 * Page 1 of the mapping is written (copied on write); page 2 of the file is written through
 * the descriptor (the mapping shows it, never having copied it). A child forked afterwards
 * shares the mapping copy-on-write. After SIGTERM: the mapping holds A, the written page, the
 * descriptor's page; the file still holds A in page 1; a write through the descriptor to
 * page 0 shows in the mapping; the descriptor and the mapping are one file; the child sees
 * what pid 1 saw before.
 */
#include "fix.h"
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/wait.h>

#define PAGE 4096
static unsigned char expected[3 * PAGE];

static int same_file(int fd, void *map) {
  char path[64];
  snprintf(path, sizeof path, "/proc/self/map_files/%lx-%lx", (unsigned long)map, (unsigned long)map + 3 * PAGE);
  struct stat a, b;
  return fstat(fd, &a) == 0 && stat(path, &b) == 0 && a.st_ino == b.st_ino && a.st_dev == b.st_dev;
}

int main(void) {
  fx_init("memfd-private");
  fx_term_setup();
  int fd = FX_SYS(memfd_create("ckcont-private", MFD_CLOEXEC));
  unsigned char file[3 * PAGE];
  uint64_t seed = fx_seed(61);
  for (int i = 0; i < 3 * PAGE; i++) file[i] = (unsigned char)fx_rng(&seed);
  if (write(fd, file, sizeof file) != (ssize_t)sizeof file) fx_setup_fail("write");
  unsigned char *map = mmap(NULL, 3 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
  if (map == MAP_FAILED) fx_setup_fail("mmap");
  memcpy(expected, file, sizeof file);
  memset(map + PAGE, 0x5c, PAGE);
  memset(expected + PAGE, 0x5c, PAGE);
  unsigned char page[PAGE];
  memset(page, 0xd2, PAGE);
  if (pwrite(fd, page, PAGE, 2 * PAGE) != PAGE) fx_setup_fail("pwrite");
  memset(expected + 2 * PAGE, 0xd2, PAGE);
  pid_t child = FX_SYS(fork());
  if (child == 0) {
    fx_wait_term();
    _exit(memcmp(map, expected, sizeof expected) == 0 ? 0 : 1);
  }
  fx_ready();
  fx_wait_term();
  fx_stop_child(child, "the child's copy of the mapping differs");
  if (fx_flip()) map[3] ^= 1;
  FX_TRUE(!memcmp(map, expected, sizeof expected), "the mapping differs");
  unsigned char back[PAGE];
  FX_EQ("pread of page 1", PAGE, pread(fd, back, PAGE, PAGE));
  FX_TRUE(!memcmp(back, file + PAGE, PAGE), "the file's page 1 took the mapping's private copy");
  FX_TRUE(same_file(fd, map), "the descriptor and the mapping are two files");
  memset(page, 0x77, PAGE);
  FX_EQ("pwrite of page 0", PAGE, pwrite(fd, page, PAGE, 0));
  FX_TRUE(map[0] == 0x77 && map[PAGE - 1] == 0x77, "the mapping does not show the file's page 0");
  fx_finish();
}
