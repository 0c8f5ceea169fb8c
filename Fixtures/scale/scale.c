/* scale: a container that is big in one dimension, for the scale benchmark (ckcont-bench scale).
 *
 *   scale tree N        N tasks (this one included) in a tree ten wide: task i forks tasks
 *                       10i+1 .. 10i+10 while they are < N, so 1000 tasks are four levels deep.
 *                       Every task records its pid and ppid and waits for SIGTERM in
 *                       sigsuspend (pause(2) without the race); on SIGTERM it checks its ids,
 *                       forwards SIGTERM to its children and reaps them (each must exit 0).
 *   scale threads N     one process of N threads (the main one included); the others block in
 *                       FUTEX_WAIT on a gate. On SIGTERM each must see its own tid again.
 *   scale mappings N    N extra VMAs: one anonymous region of N pages whose pages alternate
 *                       between PROT_READ|PROT_WRITE and PROT_READ, so no two neighbours merge;
 *                       every third page holds a pattern, the others were never touched. On
 *                       SIGTERM the region must still be N VMAs with those protections, the
 *                       touched pages must hold the pattern and the others zeros.
 *   scale fds N DIR     N descriptors from fd 3 up, a mix of the kinds ckcont saves: regular
 *                       files in DIR (N/16 files, each opened several times at its own offset,
 *                       some dup()ed), /dev/null, and both ends of pipes holding a few bytes.
 *                       On SIGTERM every fd must be the same kind with the same offset, and
 *                       every pipe must still hold its bytes. The files are removed at exit.
 *
 * Protocol (fix.h): "ready", SIGTERM after restore, "PASS scale" and exit 0.
 */
#include "fix.h"
#include <fcntl.h>
#include <linux/futex.h>
#include <pthread.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#define FANOUT 10

/* ---- tree ---- */

static int tree_size;
static pid_t tree_children[FANOUT];
static int tree_nchildren;

/* Task `index` of the tree: forks its children, reports to pid 1 through `ready_fd`, waits for
 * SIGTERM, checks its ids, ends its subtree and returns 1 when everything held. */
static int tree_node(int index, int ready_fd, int ready_read) {
  for (int c = 0; c < FANOUT; c++) {
    int child = index * FANOUT + 1 + c;
    if (child >= tree_size) break;
    pid_t pid = fork();
    if (pid < 0) fx_setup_fail("fork task %d", child);
    if (pid == 0) {
      if (ready_read >= 0) close(ready_read);
      tree_nchildren = 0;
      int ok = tree_node(child, ready_fd, -1);
      _exit(ok ? 0 : 1);
    }
    tree_children[tree_nchildren++] = pid;
  }
  pid_t pid = getpid(), ppid = getppid();
  if (index > 0) {
    /* No pipe stays shared once the tree is in place. */
    if (write(ready_fd, "x", 1) != 1) _exit(2);
    close(ready_fd);
  } else {
    close(ready_fd);
    char c;
    for (int i = 1; i < tree_size; i++)
      if (read(ready_read, &c, 1) != 1) fx_setup_fail("task %d of %d failed to start", i, tree_size);
    close(ready_read);
    fx_ready();
  }
  fx_wait_term();
  int ok = 1;
  if (getpid() != pid || getppid() != ppid) {
    fx_print("FAIL scale: task %d: pid %d->%d, ppid %d->%d", index, pid, getpid(), ppid, getppid());
    ok = 0;
  }
  for (int c = 0; c < tree_nchildren; c++) kill(tree_children[c], SIGTERM);
  for (int c = 0; c < tree_nchildren; c++) {
    int status = 0;
    if (waitpid(tree_children[c], &status, 0) != tree_children[c] || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
      fx_print("FAIL scale: task %d: child %d ended badly (status %#x)", index, tree_children[c], status);
      ok = 0;
    }
  }
  return ok;
}

static void run_tree(int n) {
  tree_size = n;
  int ready[2];
  FX_SYS(pipe(ready));
  int ok = tree_node(0, ready[1], ready[0]);
  FX_TRUE(ok, "some task of the tree failed (see above)");
  fx_finish();
}

/* ---- threads ---- */

static int gate;
static volatile int started;

struct thread_slot { pthread_t thread; long tid_before, tid_after; };

static void *thread_main(void *arg) {
  struct thread_slot *slot = arg;
  slot->tid_before = syscall(SYS_gettid);
  __atomic_fetch_add(&started, 1, __ATOMIC_SEQ_CST);
  while (!__atomic_load_n(&gate, __ATOMIC_SEQ_CST)) syscall(SYS_futex, &gate, FUTEX_WAIT, 0, NULL, NULL, 0);
  slot->tid_after = syscall(SYS_gettid);
  return NULL;
}

static void run_threads(int n) {
  struct thread_slot *slots = calloc((size_t)n, sizeof *slots);
  if (!slots) fx_setup_fail("calloc");
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setstacksize(&attr, 64 << 10);
  for (int i = 1; i < n; i++) {
    errno = pthread_create(&slots[i].thread, &attr, thread_main, &slots[i]);
    if (errno) fx_setup_fail("pthread_create %d", i);
  }
  while (__atomic_load_n(&started, __ATOMIC_SEQ_CST) < n - 1) usleep(1000);
  fx_ready();
  fx_wait_term();
  __atomic_store_n(&gate, 1, __ATOMIC_SEQ_CST);
  syscall(SYS_futex, &gate, FUTEX_WAKE, INT32_MAX, NULL, NULL, 0);
  for (int i = 1; i < n; i++) pthread_join(slots[i].thread, NULL);
  for (int i = 1; i < n; i++) FX_EQ("thread tid", slots[i].tid_before, slots[i].tid_after);
  fx_finish();
}

/* ---- mappings ---- */

#define PG 4096
static int page_writable(long i) { return i % 2 == 0; }
static int page_touched(long i) { return i % 3 == 0; }
static uint64_t page_word(long i) { return fx_seed((uint64_t)i) | 1; }

/* How many VMAs of /proc/self/maps lie in [start, end), and whether each has the protection
 * its first page should have. */
static long count_vmas(uintptr_t start, uintptr_t end, long *wrong) {
  FILE *f = fopen("/proc/self/maps", "r");
  if (!f) fx_setup_fail("/proc/self/maps");
  char line[512];
  long count = 0;
  *wrong = 0;
  while (fgets(line, sizeof line, f)) {
    unsigned long from, to;
    char perms[5];
    if (sscanf(line, "%lx-%lx %4s", &from, &to, perms) != 3 || from < start || to > end) continue;
    count++;
    long page = (long)((from - start) / PG);
    int writable = perms[1] == 'w';
    if (writable != page_writable(page) || perms[0] != 'r' || to - from != PG) (*wrong)++;
  }
  fclose(f);
  return count;
}

static void run_mappings(long n) {
  /* A PROT_NONE guard page on each side keeps the end pages from merging with a neighbour. */
  uint8_t *guarded = mmap(NULL, (size_t)(n + 2) * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (guarded == MAP_FAILED) fx_setup_fail("mmap %ld pages", n + 2);
  uint8_t *region = guarded + PG;
  FX_SYS(mprotect(guarded, PG, PROT_NONE));
  FX_SYS(mprotect(region + n * PG, PG, PROT_NONE));
  for (long i = 0; i < n; i++)
    if (page_touched(i)) *(uint64_t *)(region + i * PG) = page_word(i);
  for (long i = 0; i < n; i++)
    if (!page_writable(i)) FX_SYS(mprotect(region + i * PG, PG, PROT_READ));
  long wrong;
  long before = count_vmas((uintptr_t)region, (uintptr_t)region + (uintptr_t)n * PG, &wrong);
  if (before != n || wrong) {
    errno = 0;
    fx_setup_fail("the region is %ld VMAs (%ld wrong), not %ld", before, wrong, n);
  }
  fx_ready();
  fx_wait_term();
  long after = count_vmas((uintptr_t)region, (uintptr_t)region + (uintptr_t)n * PG, &wrong);
  FX_EQ("VMAs in the region", n, after);
  FX_EQ("VMAs with the wrong protection or size", 0, wrong);
  long bad = 0;
  if (fx_flip()) *(volatile uint64_t *)region ^= 2;  /* page 0 is touched and writable */
  for (long i = 0; i < n; i++) {
    uint64_t want = page_touched(i) ? page_word(i) : 0;
    if (*(uint64_t *)(region + i * PG) != want) bad++;
  }
  FX_EQ("pages with the wrong contents", 0, bad);
  fx_finish();
}

/* ---- fds ---- */

enum fd_kind { FD_FILE, FD_DUP, FD_NULL, FD_PIPE_READ, FD_PIPE_WRITE };
struct fd_slot { enum fd_kind kind; long offset; int twin; };

static char fds_dir[4096];
static int fds_files;

static void remove_files(void) {
  char path[4200];
  for (int f = 0; f < fds_files; f++) {
    snprintf(path, sizeof path, "%s/scale-%d", fds_dir, f);
    unlink(path);
  }
}

/* The bytes buffered in the pipe whose read end is `fd`. */
static void pipe_bytes(int fd, char out[8]) { snprintf(out, 8, "p%06u", (unsigned)fd % 1000000u); }

static void run_fds(int n, const char *dir) {
  struct rlimit limit;
  FX_SYS(getrlimit(RLIMIT_NOFILE, &limit));
  if (limit.rlim_cur < (rlim_t)n + 3) {
    limit.rlim_cur = limit.rlim_max;
    FX_SYS(setrlimit(RLIMIT_NOFILE, &limit));
  }
  /* fd numbers are predicted below: nothing inherited may sit among them. */
  FX_SYS(syscall(SYS_close_range, 3, ~0U, 0));
  snprintf(fds_dir, sizeof fds_dir, "%s", dir);
  fds_files = n / 16 + 1;
  atexit(remove_files);
  static char block[PG];
  memset(block, 'f', sizeof block);
  for (int f = 0; f < fds_files; f++) {
    char path[4200];
    snprintf(path, sizeof path, "%s/scale-%d", dir, f);
    int fd = FX_SYS(open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
    if (write(fd, block, sizeof block) != (ssize_t)sizeof block) fx_setup_fail("write %s", path);
    close(fd);
  }
  struct fd_slot *slots = calloc((size_t)n + 3, sizeof *slots);
  if (!slots) fx_setup_fail("calloc");
  /* Eight kinds in turn: file, file, file, dup of the last file, /dev/null, /dev/null, and a
   * pipe's two ends. Every open lands on the lowest free number, so fd == 3 + i. */
  int fd = 3;
  while (fd < n + 3) {
    int step = (fd - 3) % 8;
    struct fd_slot *slot = &slots[fd];
    int got, width = 1;
    if (step < 3) {
      char path[4200];
      snprintf(path, sizeof path, "%s/scale-%d", dir, fd % fds_files);
      got = FX_SYS(open(path, step == 1 ? O_RDWR : O_RDONLY));
      slot->kind = FD_FILE;
      slot->offset = fd % PG;
      FX_SYS(lseek(got, slot->offset, SEEK_SET));
    } else if (step == 3) {
      got = FX_SYS(dup(fd - 1));
      *slot = slots[fd - 1];
      slot->kind = FD_DUP;
      slot->twin = fd - 1;
    } else if (step < 6) {
      got = FX_SYS(open("/dev/null", step == 4 ? O_RDWR : O_WRONLY));
      slot->kind = FD_NULL;
    } else if (fd + 1 < n + 3) {
      int ends[2];
      FX_SYS(pipe(ends));
      got = ends[0];
      slot->kind = FD_PIPE_READ;
      slots[ends[1]].kind = FD_PIPE_WRITE;
      char bytes[8];
      pipe_bytes(ends[0], bytes);
      if (write(ends[1], bytes, 8) != 8) fx_setup_fail("write pipe %d", ends[1]);
      if (ends[1] != fd + 1) { errno = 0; fx_setup_fail("pipe got fds %d and %d, not %d and %d", ends[0], ends[1], fd, fd + 1); }
      width = 2;
    } else {
      got = FX_SYS(open("/dev/null", O_RDONLY));
      slot->kind = FD_NULL;
    }
    if (got != fd) { errno = 0; fx_setup_fail("fd %d landed on %d", fd, got); }
    fd += width;
  }
  fx_ready();
  fx_wait_term();

  long bad_kind = 0, bad_offset = 0, bad_pipe = 0, bad_twin = 0;
  if (fx_flip()) lseek(3, 1, SEEK_CUR);
  for (fd = 3; fd < n + 3; fd++) {
    struct fd_slot *slot = &slots[fd];
    struct stat st;
    if (fstat(fd, &st) < 0) { bad_kind++; continue; }
    switch (slot->kind) {
    case FD_FILE:
    case FD_DUP:
      if (!S_ISREG(st.st_mode)) bad_kind++;
      else if (lseek(fd, 0, SEEK_CUR) != slot->offset) bad_offset++;
      break;
    case FD_NULL:
      if (!S_ISCHR(st.st_mode)) bad_kind++;
      break;
    case FD_PIPE_READ:
    case FD_PIPE_WRITE:
      if (!S_ISFIFO(st.st_mode)) bad_kind++;
      break;
    }
  }
  /* A dup shares its twin's offset: moving one moves the other. */
  for (fd = 3; fd < n + 3; fd++) {
    if (slots[fd].kind != FD_DUP) continue;
    lseek(slots[fd].twin, 1, SEEK_CUR);
    if (lseek(fd, 0, SEEK_CUR) != slots[fd].offset + 1) bad_twin++;
  }
  for (fd = 3; fd < n + 3; fd++) {
    if (slots[fd].kind != FD_PIPE_READ) continue;
    char want[8], got[8];
    pipe_bytes(fd, want);
    fcntl(fd, F_SETFL, O_NONBLOCK);
    if (read(fd, got, 8) != 8 || memcmp(want, got, 8)) bad_pipe++;
  }
  FX_EQ("fds of the wrong kind", 0, bad_kind);
  FX_EQ("files at the wrong offset", 0, bad_offset);
  FX_EQ("dup()ed fds no longer sharing their offset", 0, bad_twin);
  FX_EQ("pipes without their bytes", 0, bad_pipe);
  fx_finish();
}

int main(int argc, char **argv) {
  fx_init("scale");
  fx_term_setup();
  long n = argc > 2 ? atol(argv[2]) : 0;
  const char *mode = argc > 1 ? argv[1] : "";
  errno = EINVAL;
  if (n < 1 || n > 100000) fx_setup_fail("usage: scale tree|threads|mappings|fds N [DIR]");
  if (!strcmp(mode, "tree")) run_tree((int)n);
  if (!strcmp(mode, "threads")) run_threads((int)n);
  if (!strcmp(mode, "mappings")) run_mappings(n);
  if (!strcmp(mode, "fds")) run_fds((int)n, fx_dir(argc > 3 ? argv[3] : NULL));
  fx_setup_fail("usage: scale tree|threads|mappings|fds N [DIR]");
}
