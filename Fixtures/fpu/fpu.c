/* fpu: the vector and FPU register state (the XSAVE area, which the engine must save and
 * restore with PTRACE_{GET,SET}REGSET NT_X86_XSTATE) must survive a checkpoint taken while
 * the task blocks in a raw read(2) on a pipe issued from inline asm. Nothing touches the
 * vector registers between loading and storing them, so the values stored afterwards are
 * whatever the kernel (and after a restore, the engine) put back.
 *   - AVX-512 (cpuid and XCR0 report avx512f + OS support): zmm0-31 full 512 bits and k0-k7 (16 bits).
 *   - AVX: ymm0-15 full 256 bits, including the upper halves.
 *   - otherwise SSE: xmm0-15.
 *   - always: MXCSR = 0xdf80 (FZ, round up; the default is 0x1f80), x87 control word 0x0e7f
 *     (round toward zero, double precision; the default is 0x037f), and two values on the x87 stack.
 * usage: fpu [sse|avx]   forces a smaller register set (default: the largest the CPU has).
 * The SA_RESTART SIGTERM handler writes one byte into the pipe, so the read restarts and
 * returns 1. The handler runs ordinary C code and may use SSE; the kernel saves and
 * restores the interrupted state in the signal frame. */
#include "fix.h"
#include <cpuid.h>
#include <stddef.h>
#include <sys/syscall.h>

enum { SSE = 1, AVX = 2, AVX512 = 3 };
struct vstate {
  uint8_t v[32][64];          /* register i in v[i][0..width) */
  uint16_t k[8];
  uint32_t mxcsr, mx_restore; /* mx_restore/cw_restore: the caller's values, put back after */
  uint16_t fcw, cw_restore;
  double st0, st1;
};
#define MXCSR_VAL 0xdf80u
#define FCW_VAL 0x0e7fu

static int pfd[2];
static volatile sig_atomic_t got_term;
static void on_term(int s) { (void)s; got_term = 1; ssize_t w = write(pfd[1], "F", 1); (void)w; }

/* Load the control words and x87 stack, read(fd, buf, 1), store them (operands named in/out). */
#define CTL_LOAD "ldmxcsr %c[mx](%[in])\n\tfldcw %c[cw](%[in])\n\tfldl %c[s1](%[in])\n\tfldl %c[s0](%[in])\n\t"
#define CTL_STORE "stmxcsr %c[mx](%[out])\n\tfnstcw %c[cw](%[out])\n\tfstpl %c[s0](%[out])\n\tfstpl %c[s1](%[out])\n\t" \
                  "ldmxcsr %c[mxr](%[in])\n\tfldcw %c[cwr](%[in])\n\t"
#define OPS [in] "r"(in), [out] "r"(out), [mx] "i"(offsetof(struct vstate, mxcsr)), [cw] "i"(offsetof(struct vstate, fcw)), \
            [s0] "i"(offsetof(struct vstate, st0)), [s1] "i"(offsetof(struct vstate, st1)), \
            [mxr] "i"(offsetof(struct vstate, mx_restore)), [cwr] "i"(offsetof(struct vstate, cw_restore)), \
            "D"((long)pfd[0]), "S"(buf), "d"(1L)
#define CLOB16 "rcx", "r11", "memory", "st", "st(1)", "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", \
               "xmm8", "xmm9", "xmm10", "xmm11", "xmm12", "xmm13", "xmm14", "xmm15"
#define R8(M) M(0) M(1) M(2) M(3) M(4) M(5) M(6) M(7)
#define R16(M) R8(M) M(8) M(9) M(10) M(11) M(12) M(13) M(14) M(15)
#define R32(M) R16(M) M(16) M(17) M(18) M(19) M(20) M(21) M(22) M(23) M(24) M(25) M(26) M(27) M(28) M(29) M(30) M(31)

static long block_sse(const struct vstate *in, struct vstate *out, char *buf) {
#define LX(i) "movdqu " #i "*64(%[in]), %%xmm" #i "\n\t"
#define SX(i) "movdqu %%xmm" #i ", " #i "*64(%[out])\n\t"
  long r = SYS_read;
  asm volatile(R16(LX) CTL_LOAD "syscall\n\t" R16(SX) CTL_STORE : "+a"(r) : OPS : CLOB16);
  return r;
}
static long block_avx(const struct vstate *in, struct vstate *out, char *buf) {
#define LY(i) "vmovdqu " #i "*64(%[in]), %%ymm" #i "\n\t"
#define SY(i) "vmovdqu %%ymm" #i ", " #i "*64(%[out])\n\t"
  long r = SYS_read;
  asm volatile(R16(LY) CTL_LOAD "syscall\n\t" R16(SY) CTL_STORE "vzeroupper\n\t" : "+a"(r) : OPS : CLOB16);
  return r;
}
__attribute__((target("avx512f"))) static long block_avx512(const struct vstate *in, struct vstate *out, char *buf) {
#define LZ(i) "vmovdqu64 " #i "*64(%[in]), %%zmm" #i "\n\t"
#define SZ(i) "vmovdqu64 %%zmm" #i ", " #i "*64(%[out])\n\t"
#define LK(i) "kmovw " #i "*2+%c[ko](%[in]), %%k" #i "\n\t"
#define SK(i) "kmovw %%k" #i ", " #i "*2+%c[ko](%[out])\n\t"
  long r = SYS_read;
  asm volatile(R32(LZ) R8(LK) CTL_LOAD "syscall\n\t" R32(SZ) R8(SK) CTL_STORE "vzeroupper\n\t"
               : "+a"(r) : OPS, [ko] "i"(offsetof(struct vstate, k))
               : CLOB16, "xmm16", "xmm17", "xmm18", "xmm19", "xmm20", "xmm21", "xmm22", "xmm23", "xmm24", "xmm25",
                 "xmm26", "xmm27", "xmm28", "xmm29", "xmm30", "xmm31", "k0", "k1", "k2", "k3", "k4", "k5", "k6", "k7");
  return r;
}

/* The largest register set that both the CPU and the kernel (XCR0) enable. */
static int detect(void) {
  unsigned a, b, c, d;
  if (!__get_cpuid(1, &a, &b, &c, &d) || !(c & bit_OSXSAVE) || !(c & bit_AVX)) return SSE;
  unsigned lo, hi; asm volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
  if ((lo & 6) != 6) return SSE;                          /* SSE + AVX state */
  if (__get_cpuid_count(7, 0, &a, &b, &c, &d) && (b & bit_AVX512F) && (lo & 0xe6) == 0xe6) return AVX512;
  return AVX;
}

int main(int argc, char **argv) {
  fx_init("fpu");
  int level = detect();
  if (argc > 1 && !strcmp(argv[1], "sse")) level = SSE;
  else if (argc > 1 && !strcmp(argv[1], "avx") && level >= AVX) level = AVX;
  else if (argc > 1) { errno = EINVAL; fx_setup_fail("usage: fpu [sse|avx] (cpu level %d)", level); }
  static const char *names[] = {"", "xmm", "ymm", "zmm"};
  int nregs = level == AVX512 ? 32 : 16, width = level == SSE ? 16 : level == AVX ? 32 : 64;

  struct sigaction sa; memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_term; sa.sa_flags = SA_RESTART;
  FX_SYS(sigaction(SIGTERM, &sa, NULL));
  FX_SYS(pipe(pfd));

  static struct vstate in, out;
  uint64_t s = 0xf9f9f9f9ULL;
  for (int i = 0; i < 32; i++) for (int j = 0; j < 64; j++) in.v[i][j] = (uint8_t)fx_rng(&s);
  for (int i = 0; i < 8; i++) in.k[i] = (uint16_t)(0x1001 * (i + 1) ^ 0xa5a5);
  in.mxcsr = MXCSR_VAL; in.fcw = FCW_VAL;
  in.st0 = -1234.5625; in.st1 = 6.02214076e23;
  asm volatile("stmxcsr %0\n\tfnstcw %1" : "=m"(in.mx_restore), "=m"(in.cw_restore));
  char buf = 0;

  fx_ready();
  long r = level == AVX512 ? block_avx512(&in, &out, &buf) : level == AVX ? block_avx(&in, &out, &buf)
                                                                          : block_sse(&in, &out, &buf);
  FX_EQ("read result", 1, r);
  FX_TRUE(got_term, "read returned %ld before SIGTERM arrived", r);
  FX_EQ("byte read", 'F', buf);
  for (int i = 0; i < nregs; i++) {
    if (fx_flip()) out.v[i][width - 1] ^= 0x80;      /* the top byte: catches a lost upper half */
    for (int j = 0; j < width; j++)
      if (in.v[i][j] != out.v[i][j]) {
        fx_bad("%s%d byte %d: expected %#x got %#x%s", names[level], i, j, in.v[i][j], out.v[i][j],
               j >= 16 && !memcmp(in.v[i], out.v[i], 16) ? " (low 128 bits intact)" : "");
        break;
      }
  }
  if (level == AVX512) for (int i = 0; i < 8; i++) { char w[8]; snprintf(w, sizeof w, "k%d", i); FX_EQ(w, in.k[i], out.k[i]); }
  FX_EQ("MXCSR", MXCSR_VAL, out.mxcsr);
  FX_EQ("x87 control word", FCW_VAL, out.fcw);
  uint64_t e0, g0, e1, g1;
  memcpy(&e0, &in.st0, 8); memcpy(&g0, &out.st0, 8); memcpy(&e1, &in.st1, 8); memcpy(&g1, &out.st1, 8);
  FX_EQ("x87 st(0) bits", e0, g0);
  FX_EQ("x87 st(1) bits", e1, g1);
  fx_finish();
}
