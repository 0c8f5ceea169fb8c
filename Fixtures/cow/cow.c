/* cow: private pages shared copy-on-write since fork stay shared, and right, after a restore.
 *
 * P fills 64 pages of a private anonymous area and forks A; A forks G; then
 *   pages  0-15: P writes its own   -> A and G share the page P had at the forks
 *   pages 16-31: nobody writes      -> P, A and G share one page
 *   pages 32-47: A writes its own   -> P and G share (G kept what A had at its fork)
 *   pages 48-55: G writes its own   -> P and A share
 *   pages 56-63: A drops them (MADV_DONTNEED) -> A reads zeros, P and G share
 * and a second area, an 8-page private mapping of a file of the fixture's, whose pages P
 * writes before the forks (A and G share P's copies) and G writes two of after.
 * With `many`: P forks 8 more children with nothing written: all share every page.
 * After SIGTERM each process checks its contents, then the root compares the physical
 * frames of every page in every process (/proc/<pid>/pagemap, as root): who shares with
 * whom must be exactly as above, so that memory use did not grow with the restore.
 */
#include "fix.h"
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/wait.h>

#define PAGE 4096
#define PAGES 64
#define FILE_PAGES 8
#define MAX_EXTRA 8

enum who { P, A, G };
static unsigned char *area, *file_area;
static volatile int *go; /* shared: [0] the step reached, [1] processes recorded, [2] compared */
static int extra;

static unsigned char pattern(enum who who, int page) { return (unsigned char)(who * 64 + page + 1); }

/* Whose pattern a page should hold in process `who`; -1: zeros. */
static int expected(enum who who, int page) {
  if (page < 16) return who == P ? P + 10 : P;
  if (page < 32) return P;
  if (page < 48) return who == A ? A + 10 : P;
  if (page < 56) return who == G ? G + 10 : P;
  return who == A ? -1 : P;
}

static void fill(int page, int owner) { memset(area + page * PAGE, pattern(owner, page), PAGE); }

/* One corruption point per area: the first page that differs is named. */
static void check(enum who who) {
  int wrong = -1;
  unsigned char got = 0, want = 0;
  for (int page = 0; page < PAGES && wrong < 0; page++) {
    int owner = expected(who, page);
    want = owner < 0 ? 0 : pattern(owner, page);
    for (int i = 0; i < PAGE; i++)
      if (area[page * PAGE + i] != want) { wrong = page; got = area[page * PAGE + i]; break; }
  }
  FX_TRUE(wrong < 0, "process %d page %d: %#x, want %#x", who, wrong, got, want);
  wrong = -1;
  for (int page = 0; page < FILE_PAGES && wrong < 0; page++) {
    want = who == G && page >= 6 ? 0xee : (unsigned char)(0xa0 + page);
    if (file_area[page * PAGE] != want) { wrong = page; got = file_area[page * PAGE]; }
  }
  FX_TRUE(wrong < 0, "process %d file page %d: %#x, want %#x", who, wrong, got, want);
}

/* Each process's frames of every page, recorded through its own /proc/self/pagemap (pids
 * in /proc need not be the container's) while all of them live. */
#define SLOTS (3 + MAX_EXTRA)
#define TRACKED (PAGES + FILE_PAGES)
static uint64_t (*frames)[TRACKED];

static void record(int slot) {
  int fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
  for (int page = 0; page < TRACKED; page++) {
    unsigned char *at = page < PAGES ? area + page * PAGE : file_area + (page - PAGES) * PAGE;
    uint64_t entry = 0;
    if (fd < 0 || pread(fd, &entry, 8, (off_t)((uintptr_t)at / PAGE * 8)) != 8) entry = 0;
    frames[slot][page] = entry >> 63 ? entry & ((1ULL << 55) - 1) : 0;
  }
  if (fd >= 0) close(fd);
  __atomic_add_fetch(&go[1], 1, __ATOMIC_SEQ_CST);
}

/* Whether slots `a` and `b` share tracked page `page` (both present, one frame). */
static int shares(int a, int b, int page) { return frames[a][page] && frames[a][page] == frames[b][page]; }

static void check_sharing(void) {
  int wrong = -1, pa = 0, pg = 0, ag = 0, extra_wrong = -1;
  for (int page = 0; page < PAGES; page++) {
    int want_pa = (page >= 16 && page < 32) || (page >= 48 && page < 56);
    int want_pg = (page >= 16 && page < 48) || page >= 56;
    int want_ag = page < 32;
    int got_pa = shares(P, A, page), got_pg = shares(P, G, page), got_ag = shares(A, G, page);
    if (wrong < 0 && (got_pa != want_pa || got_pg != want_pg || got_ag != want_ag)) {
      wrong = page;
      pa = got_pa, pg = got_pg, ag = got_ag;
    }
    /* The others were forked before anyone wrote: P's pages from 16 on, A's old ones below. */
    for (int n = 0; n < extra && extra_wrong < 0; n++)
      if (!shares(page >= 16 ? P : A, 3 + n, page)) extra_wrong = page;
  }
  FX_TRUE(wrong < 0, "page %d shared wrongly: P-A %d, P-G %d, A-G %d", wrong, pa, pg, ag);
  FX_TRUE(extra_wrong < 0, "page %d: a child forked before the writes does not share it", extra_wrong);
  wrong = -1;
  for (int page = 0; page < FILE_PAGES && wrong < 0; page++)
    if (!shares(P, A, PAGES + page) || shares(A, G, PAGES + page) != (page < 6)) wrong = page;
  FX_TRUE(wrong < 0, "file page %d shared wrongly", wrong);
}

/* On SIGTERM, a child records its frames, then waits until the root has compared them. */
static void record_and_wait(int slot) {
  record(slot);
  while (!go[2]) usleep(1000);
}

static void wait_step(int step) {
  while (*go < step) usleep(1000);
}

int main(int argc, char **argv) {
  fx_init("cow");
  extra = argc > 1 && !strcmp(argv[1], "many") ? MAX_EXTRA : 0;
  const char *dir = fx_dir(NULL);
  fx_term_setup();
  go = mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  frames = mmap(NULL, sizeof(uint64_t) * SLOTS * TRACKED, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (frames == MAP_FAILED) fx_setup_fail("mmap");
  area = mmap(NULL, PAGES * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (go == MAP_FAILED || area == MAP_FAILED) fx_setup_fail("mmap");
  char path[256];
  snprintf(path, sizeof path, "%s/cow-file-%d", dir, (int)getpid());
  int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0 || ftruncate(fd, FILE_PAGES * PAGE) < 0) fx_setup_fail("%s", path);
  file_area = mmap(NULL, FILE_PAGES * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
  if (file_area == MAP_FAILED) fx_setup_fail("mmap %s", path);
  close(fd);
  for (int page = 0; page < PAGES; page++) fill(page, P);
  for (int page = 0; page < FILE_PAGES; page++) memset(file_area + page * PAGE, 0xa0 + page, PAGE);
  pid_t a = FX_SYS(fork());
  if (a == 0) {
    pid_t g = FX_SYS(fork());
    if (g == 0) {
      wait_step(2);
      for (int page = 48; page < 56; page++) fill(page, G + 10);
      for (int page = 6; page < FILE_PAGES; page++) memset(file_area + page * PAGE, 0xee, PAGE);
      __atomic_add_fetch(go, 1, __ATOMIC_SEQ_CST);
      fx_wait_term();
      record_and_wait(G);
      check(G);
      _exit(fx_nbad ? 1 : 0);
    }
    for (int page = 32; page < 48; page++) fill(page, A + 10);
    if (madvise(area + 56 * PAGE, 8 * PAGE, MADV_DONTNEED) < 0) fx_setup_fail("madvise");
    __atomic_add_fetch(go, 1, __ATOMIC_SEQ_CST); /* step 1: A wrote */
    fx_wait_term();
    kill(g, SIGTERM);
    record_and_wait(A);
    int status = -1;
    while (waitpid(g, &status, 0) < 0 && errno == EINTR) {}
    FX_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0, "G ended with %#x", status);
    check(A);
    _exit(fx_nbad ? 1 : 0);
  }
  pid_t extras[MAX_EXTRA];
  for (int n = 0; n < extra; n++) {
    extras[n] = FX_SYS(fork());
    if (extras[n] == 0) {
      fx_wait_term();
      record_and_wait(3 + n);
      _exit(0);
    }
  }
  wait_step(1);
  for (int page = 0; page < 16; page++) fill(page, P + 10);
  __atomic_add_fetch(go, 1, __ATOMIC_SEQ_CST); /* step 2: P wrote */
  wait_step(3);
  fx_ready();
  fx_wait_term();
  check(P);
  for (int n = 0; n < extra; n++) kill(extras[n], SIGTERM);
  kill(a, SIGTERM);
  record(P);
  for (int i = 0; i < 5000 && go[1] < 3 + extra; i++) usleep(1000);
  FX_TRUE(go[1] == 3 + extra, "%d of %d processes recorded their pages", go[1], 3 + extra);
  check_sharing();
  go[2] = 1;
  for (int n = 0; n < extra + 1; n++) {
    int status = -1;
    pid_t done;
    while ((done = wait(&status)) < 0 && errno == EINTR) {}
    FX_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child %d ended with %#x", (int)done, status);
  }
  unlink(path);
  fx_finish();
}
