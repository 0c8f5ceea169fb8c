/* mlock: locked memory stays locked.
 *
 * Two 64 KiB areas with a pattern: one mlock()ed, one mlock2(MLOCK_ONFAULT)ed. After SIGTERM
 * smaps shows both locked (VmFlags lo, and lf for the second), status shows 128 KiB locked,
 * and the patterns are intact.
 */
#include "fix.h"
#include <sys/mman.h>

#define SIZE (64 << 10)

static long locked_kib(void) {
  FILE *f = fopen("/proc/self/status", "r");
  char line[256];
  long kib = -1;
  while (f && fgets(line, sizeof line, f))
    if (sscanf(line, "VmLck: %ld kB", &kib) == 1) break;
  if (f) fclose(f);
  return kib;
}

int main(void) {
  fx_init("mlock");
  fx_term_setup();
  unsigned char *always = mmap(NULL, SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  unsigned char *faulted = mmap(NULL, SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (always == MAP_FAILED || faulted == MAP_FAILED) fx_setup_fail("mmap");
  uint64_t seed = fx_seed(51);
  for (int i = 0; i < SIZE; i++) always[i] = (unsigned char)fx_rng(&seed);
  for (int i = 0; i < SIZE; i += 2) faulted[i] = (unsigned char)fx_rng(&seed);
  FX_SYS(mlock(always, SIZE));
  FX_SYS(mlock2(faulted, SIZE, MLOCK_ONFAULT));
  fx_ready();
  fx_wait_term();
  char flags[256];
  fx_vm_flags(always, flags, sizeof flags);
  FX_TRUE(strstr(flags, " lo") != NULL, "the mlock()ed area is not locked: VmFlags%s", flags);
  fx_vm_flags(faulted, flags, sizeof flags);
  FX_TRUE(strstr(flags, " lo") != NULL && strstr(flags, " lf") != NULL, "the MLOCK_ONFAULT area is not locked on fault: VmFlags%s", flags);
  FX_EQ("VmLck in KiB", 128, locked_kib());
  uint64_t check = fx_seed(51);
  if (fx_flip()) always[5] ^= 1;
  int same = 1;
  for (int i = 0; i < SIZE; i++) same &= always[i] == (unsigned char)fx_rng(&check);
  for (int i = 0; i < SIZE; i += 2) same &= faulted[i] == (unsigned char)fx_rng(&check);
  FX_TRUE(same, "a locked area lost its pattern");
  fx_finish();
}
