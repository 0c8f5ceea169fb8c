/* shm: anonymous shared memory inherited across fork stays shared after restore.
 *
 *   shm [memfd]
 *
 * With memfd the region is a MAP_SHARED mapping of a memfd_create(2) file, which must come
 * back as a memfd of the same name, shared by both processes. pid 1 keeps a descriptor of
 * it (what it writes there after the restore shows in the mapping: one file, not a copy) and
 * a second, unmapped memfd "ckcont-note" holding "hello memfd", sealed against writes, read
 * up to offset 6 (after the restore: "memfd" is what is left, and the seals are the same).
 *
 * pid 1 maps 1 MiB MAP_SHARED|MAP_ANONYMOUS, fills it with a pattern, and forks a child.
 * After SIGTERM, pid 1 writes a token into the region and forwards SIGTERM; the child must
 * see the token within a second, answers with its own token, and checks the pattern; pid 1
 * must then see the child's token. Private copies would each see only their own writes.
 *
 * A second shared region (a memfd of its own with `memfd`, its descriptor closed) is never
 * touched by pid 1: a child that exits before "ready" writes one pattern into its first half,
 * the long-lived child another into its second half. Both halves must read back in both
 * processes after the restore: the region's pages are in the shared object, not in the page
 * tables of any process still there (PostgreSQL's shared buffers are like that: written by
 * backends that come and go, never by the postmaster).
 */
#include "fix.h"
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/wait.h>

#define SIZE (1 << 20)
static volatile uint64_t *region;
/* Written by children only; each half holds a pattern of its own seed. */
static volatile uint64_t *others;
#define HALF (SIZE / 16)

static void fill_half(int half, uint64_t seed) {
  for (size_t i = 0; i < HALF; i++) others[half * HALF + i] = fx_rng(&seed);
}

static int half_intact(int half, uint64_t seed) {
  for (size_t i = 0; i < HALF; i++)
    if (others[half * HALF + i] != fx_rng(&seed)) return 0;
  return 1;
}

static int is_memfd_mapping(void) {
  char path[64], target[256];
  snprintf(path, sizeof path, "/proc/self/map_files/%lx-%lx", (unsigned long)region, (unsigned long)region + SIZE);
  ssize_t n = readlink(path, target, sizeof target - 1);
  if (n < 0) return 0;
  target[n] = 0;
  return !strncmp(target, "/memfd:ckcont-shm", 17);
}

int main(int argc, char **argv) {
  fx_init("shm");
  fx_term_setup();
  int memfd = argc > 1 && !strcmp(argv[1], "memfd");
  int fd = -1, note = -1;
  if (memfd) {
    fd = FX_SYS(memfd_create("ckcont-shm", MFD_CLOEXEC));
    FX_SYS(ftruncate(fd, SIZE));
    region = mmap(NULL, SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    note = FX_SYS(memfd_create("ckcont-note", MFD_CLOEXEC | MFD_ALLOW_SEALING));
    if (write(note, "hello memfd", 11) != 11) fx_setup_fail("write");
    FX_SYS(fcntl(note, F_ADD_SEALS, F_SEAL_WRITE | F_SEAL_SEAL));
    FX_SYS(lseek(note, 6, SEEK_SET));
  } else {
    region = mmap(NULL, SIZE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  }
  if (region == MAP_FAILED) fx_setup_fail("mmap");
  if (memfd) {
    int other_fd = FX_SYS(memfd_create("ckcont-shm-others", MFD_CLOEXEC));
    FX_SYS(ftruncate(other_fd, SIZE));
    others = mmap(NULL, SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, other_fd, 0);
    close(other_fd);
  } else {
    others = mmap(NULL, SIZE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  }
  if (others == MAP_FAILED) fx_setup_fail("mmap");
  uint64_t seed = fx_seed(7);
  for (size_t i = 2; i < SIZE / 8; i++) region[i] = fx_rng(&seed);
  pid_t gone = fork();
  if (gone < 0) fx_setup_fail("fork");
  if (gone == 0) {
    fill_half(0, fx_seed(11));
    _exit(0);
  }
  int gone_status;
  waitpid(gone, &gone_status, 0);
  int half_written[2];
  if (pipe(half_written) < 0) fx_setup_fail("pipe");
  pid_t child = fork();
  if (child < 0) fx_setup_fail("fork");
  if (child == 0) {
    fill_half(1, fx_seed(13));
    close(half_written[1]);
    fx_wait_term();
    int ok = fx_await(&region[0], 0xA11CE);
    region[1] = 0xB0B;
    uint64_t check = fx_seed(7);
    for (size_t i = 2; i < SIZE / 8; i++)
      if (region[i] != fx_rng(&check)) { ok = 0; break; }
    if (memfd && !is_memfd_mapping()) ok = 0;
    if (!half_intact(0, fx_seed(11)) || !half_intact(1, fx_seed(13))) ok = 0;
    _exit(ok ? 0 : 1);
  }
  /* The child closing its end (EOF) says its half is written. */
  close(half_written[1]);
  char byte;
  if (read(half_written[0], &byte, 1) != 0) fx_setup_fail("read");
  close(half_written[0]);
  fx_ready();
  fx_wait_term();
  region[0] = 0xA11CE;
  fx_stop_child(child, "the child did not see pid 1's write or lost the pattern");
  FX_TRUE(fx_await(&region[1], 0xB0B), "pid 1 did not see the child's write");
  FX_TRUE(half_intact(0, fx_seed(11)), "the half written by the child that is gone is lost");
  FX_TRUE(half_intact(1, fx_seed(13)), "the half written by the other child is lost");
  if (memfd) {
    FX_TRUE(is_memfd_mapping(), "the region is no longer a mapping of memfd:ckcont-shm");
    uint64_t token = 0x70CE;
    FX_EQ("pwrite through the memfd descriptor", 8, pwrite(fd, &token, 8, SIZE - 8));
    FX_EQ("the mapping sees the descriptor's write", 0x70CE, region[SIZE / 8 - 1]);
    char rest[16] = "";
    FX_EQ("read of the note from its offset", 5, read(note, rest, sizeof rest));
    FX_TRUE(!memcmp(rest, "memfd", 5), "the note reads \"%.5s\"", rest);
    FX_EQ("seals of the note", F_SEAL_WRITE | F_SEAL_SEAL, fcntl(note, F_GET_SEALS));
  }
  fx_finish();
}
