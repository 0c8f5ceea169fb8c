/* memfd-beyond: mappings of a memfd that reach past its end come back the same: the file's
 * bytes, zeros after them up to the page's end, and SIGBUS beyond that page.
 *
 * A memfd "ckcont-beyond" holds one page and 100 bytes (pattern A) and stays open. It is
 * mapped shared over four pages and privately over three; the private mapping's first page
 * is written (copied on write, pattern B). Programs map a file larger than it is when it is
 * going to grow, or keep a mapping of one that was truncated since. After SIGTERM: the size
 * is the same; both mappings show A (B in the private first page), zeros after byte 4196 of
 * the second page, and touching the third page raises SIGBUS in both.
 */
#include "fix.h"
#include <fcntl.h>
#include <setjmp.h>
#include <sys/mman.h>

#define PAGE 4096
#define SIZE (PAGE + 100)
static sigjmp_buf bus;

static void on_bus(int s) { (void)s; siglongjmp(bus, 1); }

static unsigned char pattern(size_t i, unsigned seed) { return (unsigned char)(i * 31 + seed); }

/* Whether reading `at` raises SIGBUS. */
static int faults(const volatile unsigned char *at) {
  if (sigsetjmp(bus, 1)) return 1;
  (void)*at;
  return 0;
}

static void check(const char *name, const unsigned char *map, unsigned first_page_seed) {
  size_t bad = 0;
  for (size_t i = 0; i < PAGE; i++) bad += map[i] != pattern(i, first_page_seed);
  for (size_t i = PAGE; i < SIZE; i++) bad += map[i] != pattern(i, 'A');
  for (size_t i = SIZE; i < 2 * PAGE; i++) bad += map[i] != 0;
  FX_EQ(name, 0, (long)bad);
  FX_TRUE(faults(map + 2 * PAGE), "%s: the third page did not raise SIGBUS", name);
}

int main(void) {
  fx_init("memfd-beyond");
  fx_term_setup();
  int fd = FX_SYS(memfd_create("ckcont-beyond", MFD_CLOEXEC));
  unsigned char data[SIZE];
  for (size_t i = 0; i < SIZE; i++) data[i] = pattern(i, 'A');
  if (write(fd, data, SIZE) != SIZE) fx_setup_fail("write");
  unsigned char *shared = mmap(NULL, 4 * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  unsigned char *private = mmap(NULL, 3 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
  if (shared == MAP_FAILED || private == MAP_FAILED) fx_setup_fail("mmap");
  for (size_t i = 0; i < PAGE; i++) private[i] = pattern(i, 'B');
  struct sigaction sa = {0};
  sa.sa_handler = on_bus;
  FX_SYS(sigaction(SIGBUS, &sa, NULL));
  fx_ready();
  fx_wait_term();
  struct stat st;
  FX_SYS(fstat(fd, &st));
  FX_EQ("the memfd's size", SIZE, (long)st.st_size);
  check("the shared mapping", shared, 'A');
  check("the private mapping", private, 'B');
  fx_finish();
}
