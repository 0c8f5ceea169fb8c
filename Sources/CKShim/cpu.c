// CPU facts through xgetbv and cpuid: instructions, not system calls.
#include <cpuid.h>
#include "ckshim.h"

uint64_t ck_xgetbv0(void) {
  uint32_t eax, edx;
  __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
  return ((uint64_t)edx << 32) | eax;
}

uint32_t ck_xsave_size(void) {
  unsigned int eax, ebx, ecx, edx;
  if (!__get_cpuid_count(0xd, 0, &eax, &ebx, &ecx, &edx)) return 0;
  return ebx;
}
