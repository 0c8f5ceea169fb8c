/* tls: thread-local storage must still be reachable through fs_base after a restore in a
 * single-threaded process. The restore has to put fs_base back (PTRACE_SETREGS carries it).
 * A wrong fs_base breaks every __thread access, errno, and the stack-protector canary at %fs:0x28.
 * Verifies:
 *   - arch_prctl(ARCH_GET_FS) is the same as before, and the TCB self-pointer at %fs:0 still equals it;
 *   - &tls_scalar and &tls_arr are the same addresses, and their contents are intact: an initialized
 *     .tdata variable that was changed after start, and a .tbss array with a pattern;
 *   - an explicit %fs:-relative load (the local-exec model) sees the same value as C does;
 *   - the stack-protector canary at %fs:0x28 is unchanged, and libc's own TLS (errno) works;
 *   - glibc's rseq area (in the TCB) is still registered with the kernel: pinned to each allowed
 *     CPU in turn, its cpu_id must equal getcpu(2). A stale registration breaks sched_getcpu().
 * usage: tls */
#include "fix.h"
#include <sched.h>
#include <asm/prctl.h>
#include <sys/syscall.h>

static __thread uint64_t tls_scalar = 0x7715c0ffee000001ULL;
static __thread uint64_t tls_arr[512];

struct rseq_abi { uint32_t cpu_id_start, cpu_id; uint64_t rseq_cs; uint32_t flags; };
extern const ptrdiff_t __rseq_offset __attribute__((weak));
extern const unsigned int __rseq_size __attribute__((weak));

static uint64_t fs_load(long off) { uint64_t v; asm volatile("mov %%fs:(%1), %0" : "=r"(v) : "r"(off)); return v; }
static uint64_t fs_base(void) { uint64_t b = 0; syscall(SYS_arch_prctl, ARCH_GET_FS, &b); return b; }

int main(void) {
  fx_init("tls");
  fx_term_setup();
  tls_scalar = 0x7715beef00000002ULL;                    /* no longer the .tdata initializer */
  for (int i = 0; i < 512; i++) tls_arr[i] = fx_seed(i) ^ 0x715;
  uint64_t base0 = fs_base(), canary0 = fs_load(0x28);
  void *scalar_addr0 = &tls_scalar, *arr_addr0 = tls_arr;
  if (base0 == 0 || base0 != (uint64_t)__builtin_thread_pointer()) fx_setup_fail("fs_base %#llx", (unsigned long long)base0);

  fx_ready();
  fx_wait_term();

  uint64_t base = fs_base();
  FX_EQ("fs_base (ARCH_GET_FS)", base0, base);
  FX_EQ("TCB self-pointer %fs:0", base, fs_load(0));
  FX_EQ("&tls_scalar", (uintptr_t)scalar_addr0, (uintptr_t)&tls_scalar);
  FX_EQ("&tls_arr", (uintptr_t)arr_addr0, (uintptr_t)tls_arr);
  FX_EQ("tls_scalar", 0x7715beef00000002ULL, tls_scalar);
  FX_EQ("tls_scalar via %fs:tpoff", 0x7715beef00000002ULL, fs_load((long)((char *)&tls_scalar - (char *)base)));
  if (fx_flip()) tls_arr[300] ^= 1ULL << 40;
  for (int i = 0; i < 512; i++)
    if (tls_arr[i] != (fx_seed(i) ^ 0x715)) { fx_bad("tls_arr[%d]: expected %#llx got %#llx", i,
                                                      (unsigned long long)(fx_seed(i) ^ 0x715), (unsigned long long)tls_arr[i]); break; }
  FX_EQ("stack canary %fs:0x28", canary0, fs_load(0x28));
  errno = 0; close(-1);
  FX_EQ("errno after close(-1)", EBADF, errno);

  if (&__rseq_size && __rseq_size > 0) {
    volatile struct rseq_abi *rs = (struct rseq_abi *)((char *)__builtin_thread_pointer() + __rseq_offset);
    cpu_set_t orig, one;
    FX_SYS(sched_getaffinity(0, sizeof orig, &orig));
    int tried = 0;
    for (int cpu = 0; cpu < CPU_SETSIZE && tried < 8; cpu++) {
      if (!CPU_ISSET(cpu, &orig)) continue;
      CPU_ZERO(&one); CPU_SET(cpu, &one);
      if (sched_setaffinity(0, sizeof one, &one)) continue;
      tried++;
      unsigned sys = ~0u; syscall(SYS_getcpu, &sys, NULL, NULL);
      uint32_t seen = rs->cpu_id;                  /* the kernel updates it on return to user */
      if (fx_flip()) seen ^= 1;
      if (seen != sys) fx_bad("rseq cpu_id %d but getcpu() says %u (rseq not registered after restore?)", (int)seen, sys);
      if (sched_getcpu() != (int)sys) fx_bad("sched_getcpu() %d but getcpu() says %u", sched_getcpu(), sys);
    }
    sched_setaffinity(0, sizeof orig, &orig);
    FX_TRUE(tried > 0, "could not pin to any allowed CPU");
  }
  fx_finish();
}
