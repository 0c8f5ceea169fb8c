/* madvise: the advice the kernel keeps per mapping survives a restore.
 *
 * Areas of 4 pages with a pattern, each given advice with madvise(2): DONTFORK, WIPEONFORK,
 * DONTDUMP, HUGEPAGE, NOHUGEPAGE, SEQUENTIAL, RANDOM, MERGEABLE, two at once (DONTFORK and
 * DONTDUMP), and WIPEONFORK on the middle two pages of an area only (the kernel splits it).
 * After SIGTERM: smaps shows each area's flag (and a plain area none), the patterns are
 * intact, and a forked child sees the wiped pages as zeros and dies touching a DONTFORK area.
 * And an area of 8 pages with guard regions on pages 2-3 and 6 (MADV_GUARD_INSTALL, Linux
 * 6.13+; skipped where the kernel has none): after SIGTERM those pages fault on touch and
 * the others keep their pattern.
 *
 * `madvise fork`: an area with MADV_WIPEONFORK and a MAP_DROPPABLE one (which the kernel
 * may empty under memory pressure, and wipes on fork too), each 4 pages of a pattern, then
 * a child forked, which writes its own pattern into page 0 of the first and page 1 of the
 * second. After SIGTERM (the child's sent on by the parent) each process finds its own
 * pages, the child zeros where it wrote nothing (a droppable page may also read zeros, never
 * the other process's bytes), and both areas keep their flags in both processes.
 */
#include <setjmp.h>
#include "fix.h"
#include <sys/mman.h>
#include <sys/wait.h>

#define PAGE 4096
#define SIZE (4 * PAGE)

struct area {
  const char *name;
  int advice[2];   /* 0 ends the list */
  const char *flags[2];
  unsigned char *at;
};

static struct area areas[] = {
  {"plain", {0}, {0}, NULL},
  {"dontfork", {MADV_DONTFORK}, {"dc"}, NULL},
  {"wipeonfork", {MADV_WIPEONFORK}, {"wf"}, NULL},
  {"dontdump", {MADV_DONTDUMP}, {"dd"}, NULL},
  {"hugepage", {MADV_HUGEPAGE}, {"hg"}, NULL},
  {"nohugepage", {MADV_NOHUGEPAGE}, {"nh"}, NULL},
  {"sequential", {MADV_SEQUENTIAL}, {"sr"}, NULL},
  {"random", {MADV_RANDOM}, {"rr"}, NULL},
  {"mergeable", {MADV_MERGEABLE}, {"mg"}, NULL},
  {"dontfork+dontdump", {MADV_DONTFORK, MADV_DONTDUMP}, {"dc", "dd"}, NULL},
};
#define COUNT (sizeof areas / sizeof areas[0])
static const char *every[] = {"dc", "wf", "dd", "hg", "nh", "sr", "rr", "mg"};

static unsigned char *split;   /* pages 1 and 2 wiped on fork, 0 and 3 not */
static unsigned char *guarded; /* 8 pages, guards on 2-3 and 6; NULL without guard regions */
static sigjmp_buf fault_jump;

static void on_fault(int signal) { siglongjmp(fault_jump, signal); }

/* Whether reading the byte at `at` faults. */
static int faults(volatile unsigned char *at) {
  struct sigaction action = {.sa_handler = on_fault}, old;
  sigaction(SIGSEGV, &action, &old);
  int faulted = sigsetjmp(fault_jump, 1) != 0;
  if (!faulted) (void)*at;
  sigaction(SIGSEGV, &old, NULL);
  return faulted;
}

static void fill(unsigned char *at, uint64_t seed) {
  for (int i = 0; i < SIZE; i++) at[i] = (unsigned char)fx_rng(&seed);
}

static int intact(const unsigned char *at, uint64_t seed) {
  int same = 1;
  for (int i = 0; i < SIZE; i++) same &= at[i] == (unsigned char)fx_rng(&seed);
  return same;
}

static int zero(const unsigned char *at, size_t size) {
  for (size_t i = 0; i < size; i++)
    if (at[i]) return 0;
  return 1;
}

/* Whether `at` (one page) holds `byte` everywhere, or, `or_zero`, is all zeros. */
static int page_is(const unsigned char *at, unsigned char byte, int or_zero) {
  int all = 1, none = 1;
  for (int i = 0; i < PAGE; i++) {
    all &= at[i] == byte;
    none &= at[i] == 0;
  }
  return all || (or_zero && none);
}

static int has_flag(const void *at, const char *flag) {
  char flags[512];
  fx_vm_flags(at, flags, sizeof flags);
  return fx_has_vm_flag(flags, flag);
}

/* The checks of one process: `mine` the byte it wrote (0: the parent's patterns). */
static void check_fork_areas(const char *who, unsigned char *wiped, unsigned char *droppable, int child) {
  for (int page = 0; page < 4; page++) {
    int expected = child ? (page == 0 ? 'C' : 0) : 'W';
    FX_TRUE(page_is(wiped + page * PAGE, (unsigned char)expected, 0), "%s: page %d of the wipe-on-fork area", who, page);
    int dropped = child ? (page == 1 ? 'E' : 0) : 'D';
    FX_TRUE(page_is(droppable + page * PAGE, (unsigned char)dropped, 1), "%s: page %d of the droppable area", who, page);
  }
  FX_TRUE(has_flag(wiped, "wf"), "%s: the wipe-on-fork area lost wf", who);
  FX_TRUE(has_flag(droppable, "dp") && has_flag(droppable, "wf"), "%s: the droppable area lost dp or wf", who);
}

static int fork_mode(void) {
  unsigned char *wiped = mmap(NULL, 4 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  unsigned char *droppable = mmap(NULL, 4 * PAGE, PROT_READ | PROT_WRITE, 0x08 /* MAP_DROPPABLE */ | MAP_ANONYMOUS, -1, 0);
  if (wiped == MAP_FAILED || droppable == MAP_FAILED) fx_setup_fail("mmap");
  FX_SYS(madvise(wiped, 4 * PAGE, MADV_WIPEONFORK));
  memset(wiped, 'W', 4 * PAGE);
  memset(droppable, 'D', 4 * PAGE);
  int report[2];
  FX_SYS(pipe(report));
  pid_t child = FX_SYS(fork());
  if (child == 0) {
    close(report[0]);
    memset(wiped, 'C', PAGE);
    memset(droppable + PAGE, 'E', PAGE);
    FX_SYS(write(report[1], "r", 1));
    fx_wait_term();
    check_fork_areas("the child", wiped, droppable, 1);
    fx_finish();
  }
  close(report[1]);
  char byte;
  if (read(report[0], &byte, 1) != 1) fx_setup_fail("the child did not write");
  fx_ready();
  fx_wait_term();
  check_fork_areas("the parent", wiped, droppable, 0);
  fx_stop_child(child, "the child's checks failed");
  fx_finish();
}

int main(int argc, char **argv) {
  fx_init("madvise");
  fx_term_setup();
  if (argc > 1 && !strcmp(argv[1], "fork")) return fork_mode();
  /* One reservation, cut into areas with a free page between them: the kernel would merge
   * neighbours whose advice ends up the same. */
  unsigned char *base = mmap(NULL, (COUNT + 1) * 2 * SIZE, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (base == MAP_FAILED) fx_setup_fail("mmap");
  for (size_t i = 0; i <= COUNT; i++) {
    unsigned char *at = base + i * 2 * SIZE;
    FX_SYS(mprotect(at, SIZE, PROT_READ | PROT_WRITE));
    FX_SYS(munmap(at + SIZE, SIZE));
    fill(at, fx_seed(i));
    if (i == COUNT) {
      split = at;
      FX_SYS(madvise(split + PAGE, 2 * PAGE, MADV_WIPEONFORK));
      continue;
    }
    areas[i].at = at;
    for (int a = 0; a < 2 && areas[i].advice[a]; a++) FX_SYS(madvise(at, SIZE, areas[i].advice[a]));
  }
  guarded = mmap(NULL, 8 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (guarded == MAP_FAILED) fx_setup_fail("mmap");
  for (int i = 0; i < 8 * PAGE; i++) guarded[i] = (unsigned char)(i * 7 + 3);
  if (madvise(guarded + 2 * PAGE, 2 * PAGE, 102 /* MADV_GUARD_INSTALL */) != 0 || madvise(guarded + 6 * PAGE, PAGE, 102) != 0) {
    if (errno != EINVAL) fx_setup_fail("MADV_GUARD_INSTALL");
    guarded = NULL;
  }
  fx_ready();
  fx_wait_term();

  char flags[512];
  for (size_t i = 0; i < COUNT; i++) {
    fx_vm_flags(areas[i].at, flags, sizeof flags);
    for (size_t f = 0; f < sizeof every / sizeof every[0]; f++) {
      int want = (areas[i].flags[0] && !strcmp(areas[i].flags[0], every[f])) ||
                 (areas[i].flags[1] && !strcmp(areas[i].flags[1], every[f]));
      FX_TRUE(fx_has_vm_flag(flags, every[f]) == want, "area %s: VmFlags%s %s %s", areas[i].name,
              flags[0] ? flags : " (no mapping starts there)", want ? "lacks" : "has", every[f]);
    }
    if (fx_flip()) areas[i].at[SIZE / 2] ^= 1;
    FX_TRUE(intact(areas[i].at, fx_seed(i)), "area %s lost its pattern", areas[i].name);
  }
  fx_vm_flags(split, flags, sizeof flags);
  FX_TRUE(flags[0] && !fx_has_vm_flag(flags, "wf"), "the split area's first page: VmFlags%s", flags[0] ? flags : " none");
  fx_vm_flags(split + PAGE, flags, sizeof flags);
  FX_TRUE(fx_has_vm_flag(flags, "wf"), "the split area's wiped pages: VmFlags%s", flags[0] ? flags : " none (not split)");
  FX_TRUE(intact(split, fx_seed(COUNT)), "the split area lost its pattern");

  if (guarded) {
    for (int page = 0; page < 8; page++) {
      int guard = page == 2 || page == 3 || page == 6;
      FX_TRUE(faults(guarded + page * PAGE + 5) == guard, "page %d of the guarded area %s", page, guard ? "does not fault" : "faults");
      if (!guard) {
        int same = 1;
        if (fx_flip()) guarded[page * PAGE] ^= 1;
        for (int i = page * PAGE; i < (page + 1) * PAGE; i++) same &= guarded[i] == (unsigned char)(i * 7 + 3);
        FX_TRUE(same, "page %d of the guarded area lost its pattern", page);
      }
    }
  }

  /* What the advice is for: a child sees wiped pages as zeros, and no DONTFORK area at all. */
  pid_t child = fork();
  if (child == 0) {
    int ok = zero(areas[2].at, SIZE) && zero(split + PAGE, 2 * PAGE) && !zero(split, PAGE) && !zero(split + 3 * PAGE, PAGE);
    _exit(ok ? 0 : 1);
  }
  int status = 0;
  FX_SYS(waitpid(child, &status, 0));
  FX_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0, "a child did not see the WIPEONFORK pages (and only those) as zeros");
  child = fork();
  if (child == 0) {
    volatile unsigned char c = areas[1].at[0];
    (void)c;
    _exit(0);
  }
  FX_SYS(waitpid(child, &status, 0));
  FX_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGSEGV, "a child touched the DONTFORK area without a fault (status %#x)", status);
  fx_finish();
}
