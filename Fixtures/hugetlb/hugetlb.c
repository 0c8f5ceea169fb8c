/* hugetlb: private anonymous memory in huge pages (MAP_PRIVATE|MAP_ANONYMOUS|MAP_HUGETLB,
 * shown as /anon_hugepage in maps). The parent maps 4 MiB of 2 MiB pages and writes a
 * pattern, forks a child that writes its own pattern into the second huge page (a copy of
 * its own, copy-on-write), and both check after the restore that every byte is theirs and
 * that the mapping is still in huge pages (smaps KernelPageSize 2048 kB).
 * Needs free huge pages (vm.nr_hugepages): the test reserves them.
 * usage: hugetlb */
#include "fix.h"
#include <sys/mman.h>
#include <sys/wait.h>

#define HUGE (2UL << 20)

static void fill(unsigned char *area, size_t size, unsigned seed) {
  for (size_t i = 0; i < size; i += 4096) area[i] = (unsigned char)(seed + i / 4096), area[i + 17] = (unsigned char)seed;
}

static int same(unsigned char *area, size_t size, unsigned seed) {
  for (size_t i = 0; i < size; i += 4096)
    if (area[i] != (unsigned char)(seed + i / 4096) || area[i + 17] != (unsigned char)seed) return 0;
  return 1;
}

/* The KernelPageSize smaps shows for the mapping at `area`, in kB. */
static long page_size_kb(void *area) {
  FILE *f = fopen("/proc/self/smaps", "r");
  if (!f) return -1;
  char line[512];
  int in = 0;
  long kb = -1;
  unsigned long start, end;
  while (fgets(line, sizeof line, f)) {
    if (sscanf(line, "%lx-%lx ", &start, &end) == 2) in = start == (unsigned long)area;
    else if (in && sscanf(line, "KernelPageSize: %ld kB", &kb) == 1) break;
  }
  fclose(f);
  return kb;
}

int main(void) {
  fx_init("hugetlb");
  fx_term_setup();
  unsigned char *area = mmap(NULL, 2 * HUGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB, -1, 0);
  if (area == MAP_FAILED) fx_setup_fail("mmap MAP_HUGETLB (free huge pages? vm.nr_hugepages)");
  fill(area, 2 * HUGE, 3);
  pid_t child = fork();
  if (child < 0) fx_setup_fail("fork");
  if (child == 0) {
    fill(area + HUGE, HUGE, 9);
    fx_wait_term();
    FX_TRUE(same(area, HUGE, 3), "the child's first huge page is not the parent's pattern");
    FX_TRUE(same(area + HUGE, HUGE, 9), "the child's second huge page is not its own pattern");
    FX_EQ("the child's page size (kB)", 2048, page_size_kb(area));
    fx_finish();
  }
  fx_ready();
  fx_wait_term();
  FX_TRUE(same(area, 2 * HUGE, 3), "the parent's huge pages are not its pattern");
  FX_EQ("the parent's page size (kB)", 2048, page_size_kb(area));
  fx_stop_child(child, "the child");
  fx_finish();
}
