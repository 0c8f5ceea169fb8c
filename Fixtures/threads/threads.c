/* threads: a process of many threads, each with its own state, must come back whole.
 *
 *   threads [N=64]
 *
 * Odd threads count (a counter each, a nanosleep of 1 ms between increments); even threads
 * hold known values in the callee-saved registers rbx, rbp, r12-r15 while they block in a
 * raw FUTEX_WAIT issued from assembly. Every thread also keeps its own signal mask (it blocks
 * one real-time signal of its own), a __thread value and a name ("worker-<i>"), and remembers
 * its tid. After SIGTERM the main thread checks that the counters move again, opens the futex gate, joins every thread and checks what each one saw:
 * same tid, same TLS value, same mask, same name, registers intact.
 */
#include "fix.h"
#include <linux/futex.h>
#include <pthread.h>
#include <sys/syscall.h>
#include <time.h>

#define MAXT 256
static int nthreads = 64;
static volatile uint64_t counters[MAXT];
static volatile int stop_counting;
static int gate;
static __thread long tls_index = -1;

struct report { long tid_before, tid_after, tls, mask_ok, regs_ok; char comm[32]; };
static struct report reports[MAXT];
static volatile int started;

/* wait.S: FUTEX_WAIT on *word while it is 0 with seed+0..5 in rbx, rbp, r12-r15; 1 if they
 * survived. */
long futex_wait_keeping_registers(int *word, uint64_t seed);

static void *thread_main(void *arg) {
  long i = (long)arg;
  tls_index = i * 1000 + 7;
  sigset_t own;
  sigemptyset(&own);
  sigaddset(&own, SIGRTMIN + 2 + (int)(i % 20));
  pthread_sigmask(SIG_BLOCK, &own, NULL);
  struct report *r = &reports[i];
  r->tid_before = syscall(SYS_gettid);
  char name[16];
  snprintf(name, sizeof name, "worker-%ld", i);
  pthread_setname_np(pthread_self(), name);
  __atomic_fetch_add(&started, 1, __ATOMIC_SEQ_CST);
  if (i % 2) {
    struct timespec ms = {0, 1000000};
    while (!stop_counting) { counters[i]++; nanosleep(&ms, NULL); }
    r->regs_ok = 1;
  } else {
    r->regs_ok = futex_wait_keeping_registers(&gate, 0x5eed0000ULL + (uint64_t)i * 16);
  }
  r->tid_after = syscall(SYS_gettid);
  /* Its own name, as the thread sees it (thread-self: whatever the pid namespace). */
  FILE *f = fopen("/proc/thread-self/comm", "r");
  if (f && fgets(r->comm, sizeof r->comm, f)) r->comm[strcspn(r->comm, "\n")] = 0;
  if (f) fclose(f);
  r->tls = tls_index;
  sigset_t now;
  pthread_sigmask(SIG_BLOCK, NULL, &now);
  r->mask_ok = sigismember(&now, SIGRTMIN + 2 + (int)(i % 20)) == 1;
  return NULL;
}

int main(int argc, char **argv) {
  fx_init("threads");
  if (argc > 1) nthreads = atoi(argv[1]);
  if (nthreads < 1 || nthreads > MAXT) fx_setup_fail("thread count %d out of range", nthreads);
  fx_term_setup();
  pthread_t threads[MAXT];
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setstacksize(&attr, 64 << 10);
  for (long i = 0; i < nthreads; i++)
    if (pthread_create(&threads[i], &attr, thread_main, (void *)i)) fx_setup_fail("pthread_create");
  while (__atomic_load_n(&started, __ATOMIC_SEQ_CST) < nthreads) usleep(1000);
  usleep(20000);
  fx_ready();
  fx_wait_term();

  uint64_t before[MAXT];
  for (int i = 0; i < nthreads; i++) before[i] = counters[i];
  usleep(200000);
  for (int i = 1; i < nthreads; i += 2)
    FX_TRUE(counters[i] > before[i], "counting thread %d stopped (%lu)", i, (unsigned long)counters[i]);
  stop_counting = 1;
  __atomic_store_n(&gate, 1, __ATOMIC_SEQ_CST);
  syscall(SYS_futex, &gate, FUTEX_WAKE, INT32_MAX, NULL, NULL, 0);
  for (int i = 0; i < nthreads; i++) pthread_join(threads[i], NULL);
  for (int i = 0; i < nthreads; i++) {
    struct report *r = &reports[i];
    FX_EQ("thread tid", r->tid_before, r->tid_after);
    FX_EQ("thread TLS value", (long)i * 1000 + 7, r->tls);
    FX_TRUE(r->mask_ok, "thread %d lost its own signal mask", i);
    FX_TRUE(r->regs_ok, "thread %d: callee-saved registers changed across FUTEX_WAIT", i);
    char want[16];
    snprintf(want, sizeof want, "worker-%d", i);
    FX_TRUE(!strcmp(r->comm, want), "thread %d is named \"%s\"", i, r->comm);
  }
  FX_EQ("main thread TLS", -1, tls_index);
  fx_finish();
}
