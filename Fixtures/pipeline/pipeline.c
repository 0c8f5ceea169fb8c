/* pipeline: processes connected by a pipe and sharing one file offset keep both after restore.
 *
 *   pipeline [DIR]
 *
 * pid 1 opens a file (O_WRONLY, no O_APPEND) and a pipe, then forks a producer, which writes
 * an increasing 64-bit sequence into the pipe, and a consumer, which reads it and checks that
 * no number is lost or repeated. Both write an 8-byte record (tag | n) to the file after every
 * 64 numbers, through the one inherited file description: only a shared offset keeps their
 * records from overwriting each other. After SIGTERM, pid 1 forwards it; the consumer reads on
 * for 200 ms and exits 0 only if the sequence kept flowing without a gap; then pid 1 checks
 * that the file holds each writer's records complete and in order.
 */
#include "fix.h"
#include <fcntl.h>
#include <sys/wait.h>
#include <time.h>

#define PRODUCER 0x5000000000000000ULL
#define CONSUMER 0xC000000000000000ULL

static void record(int file, uint64_t tag, uint64_t n) {
  uint64_t rec = tag | n;
  if (write(file, &rec, 8) != 8) _exit(4);
}

static void run_producer(int out, int file) {
  for (uint64_t n = 1; !fx_term; n++) {
    if (write(out, &n, 8) != 8) _exit(errno == EPIPE || fx_term ? 0 : 3);  /* the consumer is done */
    if (n % 64 == 0) { record(file, PRODUCER, n); usleep(1000); }
  }
  _exit(0);
}

static long ms_now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

static void run_consumer(int in, int file) {
  uint64_t expected = 1, n, at_term = 0;
  long stop_at = 0;
  for (;;) {
    if (fx_term && !stop_at) { stop_at = ms_now() + 200; at_term = expected; }
    if (stop_at && ms_now() > stop_at) break;
    if (read(in, &n, 8) != 8) { if (errno == EINTR) continue; _exit(5); }
    if (n != expected) { fx_print("FAIL pipeline: consumer expected %lu, got %lu", (unsigned long)expected, (unsigned long)n); _exit(1); }
    expected = n + 1;
    if (n % 64 == 0) record(file, CONSUMER, n);
  }
  if (expected < at_term + 64) { fx_print("FAIL pipeline: the pipe stopped flowing at %lu", (unsigned long)expected); _exit(1); }
  _exit(0);
}

/* The records of one writer: tag | 64, tag | 128, ... without a gap. */
static int complete(const uint64_t *records, long count, uint64_t tag) {
  uint64_t next = 64;
  long seen = 0;
  for (long i = 0; i < count; i++) {
    if ((records[i] & 0xF000000000000000ULL) != tag) continue;
    if ((records[i] & ~0xF000000000000000ULL) != next) return 0;
    next += 64;
    seen++;
  }
  return seen > 0;
}

int main(int argc, char **argv) {
  fx_init("pipeline");
  char path[4096];
  snprintf(path, sizeof path, "%s/ckcont-pipeline-XXXXXX", fx_dir(argc > 1 ? argv[1] : NULL));
  int file = mkstemp(path);
  if (file < 0) fx_setup_fail("mkstemp");
  int p[2];
  if (pipe(p) < 0) fx_setup_fail("pipe");
  /* SIGTERM without SA_RESTART in the children, so a blocked read or write returns. */
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = fx_on_term;
  pid_t producer = fork();
  if (producer == 0) {
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    close(p[0]);
    run_producer(p[1], file);
  }
  pid_t consumer = fork();
  if (consumer == 0) { sigaction(SIGTERM, &sa, NULL); close(p[1]); run_consumer(p[0], file); }
  close(p[0]);
  close(p[1]);
  fx_term_setup();
  usleep(300000);
  fx_ready();
  fx_wait_term();
  kill(consumer, SIGTERM);
  int status;
  if (waitpid(consumer, &status, 0) != consumer || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
    fx_bad("the consumer failed (status %#x)", status);
  kill(producer, SIGTERM);
  if (waitpid(producer, &status, 0) != producer || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
    fx_bad("the producer failed (status %#x)", status);
  struct stat st;
  fstat(file, &st);
  long count = st.st_size / 8;
  uint64_t *records = malloc(st.st_size + 8);
  if (!records) fx_setup_fail("malloc");
  int fd = open(path, O_RDONLY);
  if (fd < 0 || read(fd, records, st.st_size) != st.st_size) fx_setup_fail("read back");
  FX_TRUE(st.st_size % 8 == 0, "the shared file has a torn record (%ld bytes)", (long)st.st_size);
  FX_TRUE(complete(records, count, PRODUCER), "producer records overwritten or missing: the offset was not shared");
  FX_TRUE(complete(records, count, CONSUMER), "consumer records overwritten or missing: the offset was not shared");
  unlink(path);
  fx_finish();
}
