/* bigmem: a large anonymous region (default 256 MiB) filled with a xorshift stream survives a
 * restore. Used by the tests, and by the benchmarks with 64..4096 MiB.
 * Before "ready" it fills every byte and stores a checksum, so every page is present and
 * non-zero and a dump must copy all of it. After SIGTERM it recomputes the checksum, and on a
 * mismatch it regenerates the stream to report the first wrong offset (also 0 when a page read
 * back as zeros, which is the typical "page not restored" symptom).
 * With "ops" (bigmem MiB ops), after SIGTERM it works on its memory at once, as a program
 * that runs on does while a lazy migration still fetches it: it forks a child that checks
 * the whole region as it was (2.5 s later), moves the second quarter elsewhere (mremap), drops the third
 * (MADV_DONTNEED: zeros), flips bits of the fourth, and checks each.
 * usage: bigmem [MiB [ops]]   (1..1048576; default 256) */
#include "fix.h"
#include <sys/mman.h>
#include <sys/wait.h>

#define SEED 0xb16e3e3ULL
static uint64_t sum(const uint64_t *p, size_t n) {       /* order-dependent, so swapped pages count */
  uint64_t h = 0x6a09e667f3bcc908ULL;
  for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 0x100000001b3ULL + i;
  return h;
}

int main(int argc, char **argv) {
  fx_init("bigmem");
  fx_term_setup();
  char *end = NULL;
  long mib = argc > 1 ? strtol(argv[1], &end, 10) : 256;
  if ((end && *end) || mib < 1 || mib > (1L << 20)) { errno = EINVAL; fx_setup_fail("usage: bigmem [MiB]"); }
  size_t n = (size_t)mib << 17;                            /* 64-bit words */
  uint64_t *p = mmap(NULL, n * 8, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED) fx_setup_fail("mmap %ld MiB", mib);
  uint64_t s = SEED;
  for (size_t i = 0; i < n; i++) p[i] = fx_rng(&s);
  const uint64_t want = sum(p, n);

  fx_ready();
  fx_wait_term();
  if (argc > 2 && !strcmp(argv[2], "ops")) {
    pid_t child = fork();
    if (child < 0) fx_setup_fail("fork");
    if (child == 0) {
      /* Late: a lazy restore's fills are done by then, the parent's memory all in, and what
       * the child missed must have been put in for it too. */
      usleep(2500000);
      if (sum(p, n) == want) _exit(0);
      uint64_t t = SEED;
      size_t i = 0;
      while (i < n && p[i] == fx_rng(&t)) i++;
      fx_print("child: first wrong word %#zx (page %zu of %zu)%s", i, i / 512, n / 512, i < n && p[i] == 0 ? ", zero" : "");
      _exit(3);
    }
    size_t q = n / 4, bytes = q * 8;                      /* a quarter: whole pages */
    void *spot = mmap(NULL, bytes, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    uint64_t *moved = spot == MAP_FAILED ? MAP_FAILED : mremap(p + q, bytes, bytes, MREMAP_MAYMOVE | MREMAP_FIXED, spot);
    if (moved == MAP_FAILED) fx_setup_fail("mremap");
    FX_SYS(madvise(p + 2 * q, bytes, MADV_DONTNEED));
    for (size_t i = 3 * q; i < n; i++) p[i] ^= 0xffULL;
    size_t wrong[4] = {0, 0, 0, 0};
    s = SEED;
    for (size_t i = 0; i < n; i++) {
      uint64_t v = fx_rng(&s);
      if (i < q) wrong[0] += p[i] != v;
      else if (i < 2 * q) wrong[1] += moved[i - q] != v;
      else if (i < 3 * q) wrong[2] += p[i] != 0;
      else wrong[3] += p[i] != (v ^ 0xffULL);
    }
    if (fx_flip()) wrong[1]++;
    FX_EQ("words wrong in the first quarter", 0, (long)wrong[0]);
    FX_EQ("words wrong in the quarter moved", 0, (long)wrong[1]);
    FX_EQ("words not zero in the quarter dropped", 0, (long)wrong[2]);
    FX_EQ("words wrong in the quarter written", 0, (long)wrong[3]);
    int status = -1;
    while (waitpid(child, &status, 0) < 0 && errno == EINTR) {}
    FX_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0, "the child forked after the restore saw other memory (status %#x)", status);
    fx_finish();
  }

  if (fx_flip()) ((volatile uint8_t *)p)[n * 8 / 2 + 4093] ^= 0x20;
  if (fx_flip()) memset((uint8_t *)p + (n * 8 - 4096), 0, 4096);   /* a "lost" last page */
  uint64_t got = sum(p, n);
  if (got != want) {
    s = SEED;
    size_t i = 0;
    while (i < n && p[i] == fx_rng(&s)) i++;
    fx_bad("checksum of %ld MiB: expected %#llx got %#llx; first wrong qword at offset %#zx (page %zu)%s", mib,
           (unsigned long long)want, (unsigned long long)got, i * 8, i * 8 / 4096, i < n && p[i] == 0 ? ", reads as zero" : "");
  }
  fx_finish();
}
