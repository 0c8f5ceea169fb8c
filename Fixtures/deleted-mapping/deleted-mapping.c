/* deleted-mapping: shared mappings of deleted files come back shared, with their data, still
 * deleted, as Python's multiprocessing leaves its semaphores.
 *
 *   deleted-mapping [DIR]
 *
 * Before "ready": two named POSIX semaphores (sem_open, then sem_unlink: shared mappings of
 * deleted files in /dev/shm), and DIR/ckcont-mapped-<time> ($CKCONT_FIXTURE_DIR or /tmp),
 * 64 KiB, mode 0640, mapped shared, filled with a pattern, unlinked, with one descriptor of it
 * kept open with O_NOFOLLOW (as sem_open opens); and DIR/ckcont-private-<time>, three pages
 * of a pattern, mapped private (as a library an upgrade replaced), its middle page written to
 * (copied on write), unlinked. Then a child is forked.
 * After SIGTERM pid 1 posts the semaphore; the child waits for it, checks the pattern, writes
 * a token into the file's mapping and posts a second semaphore; pid 1 waits, then finds the token in its
 * mapping and through its descriptor (one file, not copies). Both mappings are still named
 * as before, "(deleted)" (the semaphore after the temporary name glibc made it under); the
 * file has no links and mode 0640. The private mapping shows the file's pattern where it was
 * not written to, pid 1's token where it was, and its old name.
 */
#include "fix.h"
#include <fcntl.h>
#include <semaphore.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>

#define SIZE (64 << 10)
#define PRIVATE_SIZE (3 * 4096)

/* The name /proc/self/maps gives the mapping holding `address` (path and "(deleted)"). */
static void mapping_name(const volatile void *address, char *name, size_t size) {
  name[0] = 0;
  FILE *maps = fopen("/proc/self/maps", "r");
  if (!maps) return;
  char line[4400];
  while (fgets(line, sizeof line, maps)) {
    unsigned long start, end;
    int at = 0;
    if (sscanf(line, "%lx-%lx %*s %*s %*s %*s %n", &start, &end, &at) < 2 || !at) continue;
    if ((unsigned long)address < start || (unsigned long)address >= end) continue;
    snprintf(name, size, "%s", line + at);
    name[strcspn(name, "\n")] = 0;
  }
  fclose(maps);
}

int main(int argc, char **argv) {
  fx_init("deleted-mapping");
  fx_term_setup();
  struct timespec now;
  clock_gettime(CLOCK_REALTIME, &now);
  char sem_name[64], path[4096], private_path[4096];
  snprintf(sem_name, sizeof sem_name, "/ckcont-sem-%ld", now.tv_nsec);
  snprintf(path, sizeof path, "%s/ckcont-mapped-%lld-%ld", fx_dir(argc > 1 ? argv[1] : NULL), (long long)now.tv_sec, now.tv_nsec);
  snprintf(private_path, sizeof private_path, "%s/ckcont-private-%lld-%ld", fx_dir(argc > 1 ? argv[1] : NULL), (long long)now.tv_sec, now.tv_nsec);
  int private_fd = FX_SYS(open(private_path, O_RDWR | O_CREAT | O_EXCL, 0600));
  static uint64_t pattern[PRIVATE_SIZE / 8];
  uint64_t private_seed = fx_seed(31);
  for (size_t i = 0; i < PRIVATE_SIZE / 8; i++) pattern[i] = fx_rng(&private_seed);
  if (write(private_fd, pattern, PRIVATE_SIZE) != PRIVATE_SIZE) fx_setup_fail("write %s", private_path);
  volatile uint64_t *private_map = mmap(NULL, PRIVATE_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE, private_fd, 0);
  if (private_map == MAP_FAILED) fx_setup_fail("mmap %s", private_path);
  close(private_fd);
  FX_SYS(unlink(private_path));
  private_map[512] = 0x9A7E;
  sem_t *sem = sem_open(sem_name, O_CREAT | O_EXCL, 0600, 0);
  if (sem == SEM_FAILED) fx_setup_fail("sem_open");
  FX_SYS(sem_unlink(sem_name));
  /* The child's answer: a semaphore of its own, or pid 1 could take back its own post. */
  sem_t *back = sem_open(sem_name, O_CREAT | O_EXCL, 0600, 0);
  if (back == SEM_FAILED) fx_setup_fail("sem_open");
  FX_SYS(sem_unlink(sem_name));
  int fd = FX_SYS(open(path, O_RDWR | O_CREAT | O_EXCL, 0640));
  FX_SYS(fchmod(fd, 0640));
  FX_SYS(ftruncate(fd, SIZE));
  volatile uint64_t *data = mmap(NULL, SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (data == MAP_FAILED) fx_setup_fail("mmap");
  close(fd);
  fd = FX_SYS(open(path, O_RDWR | O_NOFOLLOW));
  FX_SYS(unlink(path));
  uint64_t seed = fx_seed(23);
  for (size_t i = 1; i < SIZE / 8; i++) data[i] = fx_rng(&seed);
  /* glibc makes the semaphore under a temporary name and links it: maps shows that one. */
  static char sem_shown[4400], data_shown[4400], private_shown[4400], now_shown[4400];
  mapping_name(private_map, private_shown, sizeof private_shown);
  if (!strstr(private_shown, private_path) || !strstr(private_shown, " (deleted)")) fx_setup_fail("the private file shows as \"%s\"", private_shown);
  mapping_name(sem, sem_shown, sizeof sem_shown);
  mapping_name(data, data_shown, sizeof data_shown);
  if (!strstr(sem_shown, "/dev/shm/sem.") || !strstr(sem_shown, " (deleted)")) fx_setup_fail("the semaphore shows as \"%s\"", sem_shown);
  if (!strstr(data_shown, path) || !strstr(data_shown, " (deleted)")) fx_setup_fail("the file shows as \"%s\"", data_shown);
  pid_t child = fork();
  if (child < 0) fx_setup_fail("fork");
  if (child == 0) {
    fx_wait_term();
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += 5;
    int ok = sem_timedwait(sem, &deadline) == 0;
    uint64_t check = fx_seed(23);
    for (size_t i = 1; i < SIZE / 8; i++)
      if (data[i] != fx_rng(&check)) { ok = 0; break; }
    mapping_name(sem, now_shown, sizeof now_shown);
    if (strcmp(now_shown, sem_shown)) ok = 0;
    mapping_name(data, now_shown, sizeof now_shown);
    if (strcmp(now_shown, data_shown)) ok = 0;
    data[0] = 0xC0FFEE;
    sem_post(back);
    _exit(ok ? 0 : 1);
  }
  fx_ready();
  fx_wait_term();
  sem_post(sem);
  kill(child, SIGTERM);
  struct timespec deadline;
  clock_gettime(CLOCK_REALTIME, &deadline);
  deadline.tv_sec += 5;
  FX_EQ("sem_timedwait for the child's post", 0, sem_timedwait(back, &deadline));
  int status;
  waitpid(child, &status, 0);
  FX_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0, "the child lost the semaphore, the pattern or the names (status %#x)", status);
  FX_EQ("the child's token in the mapping", 0xC0FFEE, data[0]);
  uint64_t token = 0;
  FX_EQ("pread of the token through the descriptor", 8, pread(fd, &token, 8, 0));
  FX_EQ("the child's token through the descriptor", 0xC0FFEE, token);
  struct stat st;
  FX_SYS(fstat(fd, &st));
  FX_EQ("links of the file", 0, st.st_nlink);
  FX_EQ("mode of the file", 0640, st.st_mode & 07777);
  mapping_name(sem, now_shown, sizeof now_shown);
  FX_TRUE(!strcmp(now_shown, sem_shown), "the semaphore shows as \"%s\", not \"%s\"", now_shown, sem_shown);
  mapping_name(data, now_shown, sizeof now_shown);
  FX_TRUE(!strcmp(now_shown, data_shown), "the file shows as \"%s\", not \"%s\"", now_shown, data_shown);
  mapping_name(private_map, now_shown, sizeof now_shown);
  FX_TRUE(!strcmp(now_shown, private_shown), "the private file shows as \"%s\", not \"%s\"", now_shown, private_shown);
  FX_EQ("the written word of the private mapping", 0x9A7E, private_map[512]);
  int intact = 1;
  for (size_t i = 0; i < PRIVATE_SIZE / 8; i++)
    if (i != 512 && private_map[i] != pattern[i]) intact = 0;
  FX_TRUE(intact, "the private mapping lost the file's pattern");
  fx_finish();
}
