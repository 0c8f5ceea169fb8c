/* stack: a deep [stack] mapping (DEPTH frames, several MiB) survives a restore byte for byte,
 * and can still grow afterwards (the restore must remap [stack] as MAP_GROWSDOWN at the same
 * place, with room under it).
 * Each frame keeps an 8-qword pattern that depends on its depth, plus a pointer to its parent's
 * pattern. The bottom frame waits for SIGTERM. After SIGTERM it checks every frame through a
 * table of their addresses, then recurses GROW more frames into stack that did not exist at
 * dump time. Finally every frame checks its own pattern and its parent link while unwinding.
 * An unwind through a damaged return address crashes, which the test sees as a signal exit.
 * usage: stack [DEPTH]  (default 20000, about 3 MiB; GROW = DEPTH/2. Needs RLIMIT_STACK of about
 *        160 B per frame, checked at start: exit 2 if too small.) */
#include "fix.h"
#include <sys/resource.h>

#define W 8
static volatile uint64_t **frame_at;    /* frame_at[d] = pattern of the frame at depth d */
static int depth_max, grow_max, unwind_bad;

static inline uint64_t pat(int d, int k) { return fx_seed((uint64_t)d * W + k) ^ 0x57ac; }

static long grow(int g);
/* Kept out of frame() so its locals (a sigset_t in fx_wait_term) do not make every frame bigger. */
static long __attribute__((noinline)) bottom(void) {
  fx_ready();
  fx_wait_term();
  if (fx_flip()) frame_at[depth_max / 2][3] ^= 1;
  if (fx_flip()) frame_at[1][0] ^= 1ULL << 63;
  int bad = 0;
  for (int i = 0; i <= depth_max; i++)
    for (int k = 0; k < W; k++)
      if (frame_at[i][k] != pat(i, k) && bad++ < 3)
        fx_bad("frame %d (at %p) word %d: expected %#llx got %#llx", i, (void *)frame_at[i], k,
               (unsigned long long)pat(i, k), (unsigned long long)frame_at[i][k]);
  FX_EQ("frames grown after restore", grow_max + 1, grow(0));
  return 0;
}

static long __attribute__((noinline)) frame(int d, volatile uint64_t *parent) {
  volatile uint64_t loc[W];
  for (int k = 0; k < W; k++) loc[k] = pat(d, k);
  frame_at[d] = loc;
  long r = d < depth_max ? frame(d + 1, loc) : bottom();
  /* Unwinding: this frame and the link to its parent are intact. */
  for (int k = 0; k < W; k++)
    if (loc[k] != pat(d, k) && unwind_bad++ < 3) fx_bad("unwind: frame %d word %d damaged", d, k);
  if (parent && parent[W - 1] != pat(d - 1, W - 1) && unwind_bad++ < 3) fx_bad("unwind: frame %d parent link damaged", d);
  return r + 1;
}

/* New frames below the restored stack; they must fault in and keep their contents. */
static long __attribute__((noinline)) grow(int g) {
  volatile uint64_t loc[W];
  for (int k = 0; k < W; k++) loc[k] = pat(g + 1000000, k);
  long r = g < grow_max ? grow(g + 1) : (fx_flip() ? (loc[2] ^= 1, 0) : 0);
  for (int k = 0; k < W; k++)
    if (loc[k] != pat(g + 1000000, k)) { fx_bad("grown frame %d word %d damaged", g, k); break; }
  return r + 1;
}

int main(int argc, char **argv) {
  fx_init("stack");
  depth_max = argc > 1 ? atoi(argv[1]) : 20000;
  if (depth_max < 10) { errno = EINVAL; fx_setup_fail("usage: stack [DEPTH >= 10]"); }
  grow_max = depth_max / 2;
  struct rlimit rl; getrlimit(RLIMIT_STACK, &rl);
  if (rl.rlim_cur != RLIM_INFINITY && (rlim_t)(depth_max + grow_max) * 160 + (1 << 20) > rl.rlim_cur) {
    errno = ERANGE; fx_setup_fail("depth %d needs more than RLIMIT_STACK %llu", depth_max, (unsigned long long)rl.rlim_cur);
  }
  if (!(frame_at = calloc(depth_max + 1, sizeof *frame_at))) fx_setup_fail("calloc");
  fx_term_setup();
  long n = frame(0, NULL);
  FX_EQ("frames unwound", depth_max + 1, n);
  fx_finish();
}
