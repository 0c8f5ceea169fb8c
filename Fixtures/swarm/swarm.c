/* swarm: a population of tasks spread over nested cgroups, for freezer tests and benchmarks.
 *
 *   swarm COUNTERS ROOTDIR SPEC...      SPEC = DIR:KIND:COUNT
 *
 * The root task moves itself into the cgroup directory ROOTDIR, then forks COUNT children per
 * SPEC; each child moves itself into the cgroup directory DIR and runs KIND:
 *   sleep    increments its counter every millisecond
 *   spin     increments its counter in a busy loop
 *   threads  four threads, each incrementing the task's counter every millisecond
 *   forker   forks a short-lived child, reaps it and increments, forever (one child at a time)
 *   pause    waits in pause(2) (benchmarks: a population that costs no CPU)
 * COUNTERS is a file (or "-" for none) that holds one 64-bit counter per task, slot 0 being the
 * root's, mapped MAP_SHARED so the test reads progress with plain reads. The root prints
 * "ready N" (N = slots) once every child sits in its cgroup with its threads, then increments slot 0 every
 * millisecond. Every task asks for SIGKILL when its parent dies, so killing the root ends all.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static volatile uint64_t *counters;
static uint64_t scratch[1];

static void die(const char *what) {
  fprintf(stderr, "swarm: %s: %s\n", what, strerror(errno));
  exit(2);
}

/* DIRS is one cgroup directory, or several joined by commas (one per v1 hierarchy). */
static void join_cgroup(const char *dirs) {
  char path[4096], pid[32];
  while (*dirs) {
    size_t length = strcspn(dirs, ",");
    snprintf(path, sizeof path, "%.*s/cgroup.procs", (int)length, dirs);
    int fd = open(path, O_WRONLY);
    if (fd < 0) die(path);
    int n = snprintf(pid, sizeof pid, "%d", getpid());
    if (write(fd, pid, n) != n) die(path);
    close(fd);
    dirs += length + (dirs[length] == ',');
  }
}

static void tick(void) {
  struct timespec ts = {0, 1000000};
  nanosleep(&ts, NULL);
}

static void *thread_main(void *slot) {
  for (;;) {
    __atomic_fetch_add(&counters[(long)slot], 1, __ATOMIC_RELAXED);
    tick();
  }
  return NULL;
}

/* Tells the parent this child is in place (its cgroup joined, its threads made). */
static void report_placed(int fd) {
  if (write(fd, "x", 1) != 1) die("write");
  close(fd);
}

static void run(const char *kind, long slot, int placed) {
  /* A child with threads is in place once they run: "ready" counts them too. */
  if (strcmp(kind, "threads")) report_placed(placed);
  if (!strcmp(kind, "sleep")) {
    for (;;) { counters[slot]++; tick(); }
  } else if (!strcmp(kind, "spin")) {
    for (;;) counters[slot]++;
  } else if (!strcmp(kind, "threads")) {
    pthread_t t;
    for (int i = 0; i < 4; i++)
      if (pthread_create(&t, NULL, thread_main, (void *)slot)) die("pthread_create");
    report_placed(placed);
    for (;;) pause();
  } else if (!strcmp(kind, "forker")) {
    for (;;) {
      pid_t child = fork();
      if (child == 0) _exit(0);
      if (child > 0) waitpid(child, NULL, 0);
      counters[slot]++;
      tick();
    }
  } else if (!strcmp(kind, "pause")) {
    for (;;) pause();
  }
  fprintf(stderr, "swarm: unknown kind %s\n", kind);
  exit(2);
}

int main(int argc, char **argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: swarm COUNTERS ROOTDIR DIR:KIND:COUNT...\n");
    return 2;
  }
  long slots = 1;
  for (int i = 3; i < argc; i++) {
    char *last = strrchr(argv[i], ':');
    if (!last) { fprintf(stderr, "swarm: bad spec %s\n", argv[i]); return 2; }
    slots += atol(last + 1);
  }
  if (strcmp(argv[1], "-")) {
    int fd = open(argv[1], O_RDWR | O_CREAT | O_TRUNC, 0644);
    if (fd < 0 || ftruncate(fd, slots * 8) < 0) die(argv[1]);
    counters = mmap(NULL, slots * 8, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (counters == MAP_FAILED) die("mmap");
    close(fd);
  } else {
    counters = calloc(slots, 8);
    if (!counters) die("calloc");
  }
  (void)scratch;
  join_cgroup(argv[2]);
  int placed[2];
  if (pipe(placed) < 0) die("pipe");
  long slot = 1;
  for (int i = 3; i < argc; i++) {
    char spec[4096];
    snprintf(spec, sizeof spec, "%s", argv[i]);
    char *count = strrchr(spec, ':');
    *count++ = 0;
    char *kind = strrchr(spec, ':');
    if (!kind) { fprintf(stderr, "swarm: bad spec %s\n", argv[i]); return 2; }
    *kind++ = 0;
    for (long n = atol(count); n > 0; n--, slot++) {
      pid_t pid = fork();
      if (pid < 0) die("fork");
      if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() == 1) _exit(0);
        close(placed[0]);
        join_cgroup(spec);
        run(kind, slot, placed[1]);
      }
    }
  }
  close(placed[1]);
  char c;
  for (long n = 1; n < slots; n++)
    if (read(placed[0], &c, 1) != 1) { fprintf(stderr, "swarm: a child failed to start\n"); return 2; }
  printf("ready %ld\n", slots);
  fflush(stdout);
  for (;;) {
    counters[0]++;
    tick();
    while (waitpid(-1, NULL, WNOHANG) > 0) {}
  }
}
