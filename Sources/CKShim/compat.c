// i386 (compat) system calls made by ckcont itself: `int $0x80` from 64-bit code enters the
// kernel's ia32 entry, which is the only way to reach a task's compat robust list (a slot of
// its own, apart from the native one get_robust_list answers from 64-bit code).
#include <errno.h>
#include <stdint.h>
#include <sys/mman.h>
#include "ckshim.h"

enum { I386_GET_ROBUST_LIST = 312 };

static long int80(long number, long a1, long a2, long a3) {
  long result;
  asm volatile("int $0x80" : "=a"(result) : "a"(number), "b"(a1), "c"(a2), "d"(a3) : "memory");
  return result;
}

int ck_get_compat_robust_list(pid_t tid, uint32_t *head, uint32_t *length) {
  // The ia32 entry takes 32-bit pointers: the out-parameters live in a page below 4 GiB.
  uint32_t *page = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_32BIT, -1, 0);
  if (page == MAP_FAILED) return -errno;
  long result = int80(I386_GET_ROBUST_LIST, tid, (long)(uintptr_t)&page[0], (long)(uintptr_t)&page[1]);
  *head = page[0];
  *length = page[1];
  munmap(page, 4096);
  return (int)result;
}
