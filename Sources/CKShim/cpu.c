// CPU facts through xgetbv and cpuid (instructions, not system calls), and CPU affinity.
#include <cpuid.h>
#include <sched.h>
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

int ck_sched_getaffinity(pid_t tid, uint64_t *mask, size_t words) {
  return sched_getaffinity(tid, words * sizeof(uint64_t), (cpu_set_t *)mask);
}

int ck_sched_setaffinity(pid_t tid, const uint64_t *mask, size_t words) {
  return sched_setaffinity(tid, words * sizeof(uint64_t), (const cpu_set_t *)mask);
}

int ck_sched_getcpu(void) { return sched_getcpu(); }
