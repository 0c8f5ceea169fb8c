/* heap: the malloc heap (brk area and mmap'd chunks) and the program break survive a restore,
 * and the heap can keep growing afterwards. Growth after the restore only works if the engine
 * put back the kernel's brk bookkeeping (PR_SET_MM_MAP) and glibc's arena metadata.
 * Before "ready": NBLK blocks, mostly small (brk arena), every 40th block 160 KiB-1 MiB (above
 * the mmap threshold, so each is its own mapping), each filled with a per-block pattern.
 * Every 5th small block is then freed, so the free lists hold chunks.
 * After SIGTERM, verifies:
 *   - the kernel's brk (raw brk(0)) and glibc's sbrk(0) equal the values from before the dump;
 *   - every live block still holds its pattern;
 *   - growth: 48 MiB of small blocks (refilling the freed chunks, then extending the arena) and
 *     4 blocks of 4 MiB (mmap), plus realloc of old blocks, are written and verified together with the
 *     old blocks (so a new allocation must not overlap restored memory);
 *   - raw sbrk(+8 MiB): the break moves, the new memory is writable and zeroed, and brk(0) agrees.
 * usage: heap */
#include "fix.h"
#include <sys/syscall.h>

#define NBLK 3000
#define NNEW 16384
static unsigned char *blk[NBLK + NNEW];
static size_t len[NBLK + NNEW];

static void fill(int i) {
  uint64_t s = fx_seed(i);
  for (size_t j = 0; j < len[i]; j += 8) { uint64_t v = fx_rng(&s); memcpy(blk[i] + j, &v, len[i] - j < 8 ? len[i] - j : 8); }
}
/* Offset of the first wrong byte, or -1. */
static long check(int i, size_t n) {
  uint64_t s = fx_seed(i);
  for (size_t j = 0; j < n; j += 8) {
    uint64_t v = fx_rng(&s);
    if (memcmp(blk[i] + j, &v, n - j < 8 ? n - j : 8)) return (long)j;
  }
  return -1;
}
static void alloc(int i, size_t n) {
  len[i] = n;
  if (!(blk[i] = malloc(n))) fx_setup_fail("malloc(%zu)", n);
  fill(i);
}
static int verify_all(int upto, const char *when) {
  int bad = 0;
  for (int i = 0; i < upto; i++) {
    if (!blk[i]) continue;
    long off = check(i, len[i]);
    if (off >= 0 && bad++ < 3) fx_bad("%s: block %d (%zu bytes at %p) differs at offset %ld", when, i, len[i], (void *)blk[i], off);
  }
  return bad;
}

int main(void) {
  fx_init("heap");
  fx_term_setup();
  uint64_t s = 0x4ea9;
  for (int i = 0; i < NBLK; i++)
    alloc(i, i % 40 == 39 ? (160 << 10) + fx_rng(&s) % (864 << 10) : 1 + fx_rng(&s) % 4096);
  for (int i = 0; i < NBLK; i += 5) if (len[i] < (128 << 10)) { free(blk[i]); blk[i] = NULL; }
  void *brk0 = (void *)syscall(SYS_brk, 0), *sbrk0 = sbrk(0);
  if (brk0 != sbrk0) { errno = 0; fx_setup_fail("brk(0) %p != sbrk(0) %p", brk0, sbrk0); }

  fx_ready();
  fx_wait_term();

  FX_EQ("kernel brk (brk(0))", (uintptr_t)brk0, syscall(SYS_brk, 0));
  FX_EQ("glibc sbrk(0)", (uintptr_t)sbrk0, (uintptr_t)sbrk(0));
  if (fx_flip()) blk[1234][len[1234] / 2] ^= 0x10;          /* a small block */
  if (fx_flip()) blk[2039][len[2039] - 1] ^= 0x10;          /* an mmap'd block, last byte */
  verify_all(NBLK, "restored heap");
  if (fx_nbad) fx_finish();    /* the allocator's own metadata may be just as damaged: stop here */

  /* Growth: 48 MiB of small blocks, 16 MiB of large ones, and realloc of old blocks. */
  size_t total = 0; int n = NBLK;
  while (total < (48u << 20) && n < NBLK + NNEW - 4) { alloc(n, 64 + fx_rng(&s) % 6000); total += len[n++]; }
  for (int k = 0; k < 4; k++) alloc(n++, 4u << 20);
  for (int i = 3; i < NBLK; i += 97) {
    if (!blk[i]) continue;
    size_t old = len[i];
    unsigned char *p = realloc(blk[i], old * 3 + 100);
    if (!p) fx_setup_fail("realloc");
    blk[i] = p;
    long off = check(i, old);                     /* the old contents moved along */
    if (off >= 0) fx_bad("realloc'd block %d differs at %ld", i, off);
    len[i] = old * 3 + 100; fill(i);
  }
  if (fx_flip()) blk[n - 1][12345] ^= 1;
  if (fx_flip()) blk[NBLK + 10][0] ^= 1;
  verify_all(n, "after growing by 64 MiB");

  /* Raw program break growth past the arena. */
  const size_t grow = 8u << 20;
  unsigned char *old_end = sbrk(0), *p = sbrk(grow);
  FX_TRUE(p == old_end, "sbrk(+8 MiB) returned %p, expected the old break %p (errno %d)", (void *)p, (void *)old_end, errno);
  if (p == old_end) {
    FX_EQ("brk(0) after sbrk", (uintptr_t)(p + grow), syscall(SYS_brk, 0));
    size_t nz = 0; for (size_t j = 0; j < grow; j += 4096) nz += p[j] != 0;
    FX_EQ("nonzero pages in fresh brk memory", 0, nz);
    for (size_t j = 0; j < grow; j++) p[j] = (unsigned char)(j * 131 + 7);
    if (fx_flip()) p[grow / 3] ^= 1;
    size_t j = 0; while (j < grow && p[j] == (unsigned char)(j * 131 + 7)) j++;
    FX_TRUE(j == grow, "sbrk'd memory differs at offset %zu", j);
  }
  verify_all(n, "after sbrk");
  fx_finish();
}
