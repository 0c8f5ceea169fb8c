/* sched: a process's scheduling comes back: nice 7 under SCHED_BATCH, and a thread it
 * starts after the restore inherits them; its main thread pinned to the last CPU and a
 * sleeping thread pinned to CPU 0 keep their CPUs; and its prctl settings: transparent huge
 * pages off, a timer slack of 123456 ns, memory-deny-write-execute.
 */
#include "fix.h"
#include <pthread.h>
#include <sched.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>

static volatile pid_t sleeper_tid;

static void *sleeper(void *arg) {
  (void)arg;
  cpu_set_t zero;
  CPU_ZERO(&zero);
  CPU_SET(0, &zero);
  if (sched_setaffinity(0, sizeof zero, &zero) == 0) sleeper_tid = (pid_t)syscall(SYS_gettid);
  for (;;) pause();
  return NULL;
}

/* The one CPU thread `tid` may run on, -1 when it may run on several. */
static int only_cpu(pid_t tid) {
  cpu_set_t set;
  if (sched_getaffinity(tid, sizeof set, &set) < 0 || CPU_COUNT(&set) != 1) return -1;
  for (int cpu = 0; cpu < CPU_SETSIZE; cpu++)
    if (CPU_ISSET(cpu, &set)) return cpu;
  return -1;
}

static void *probe(void *arg) {
  int *out = arg;
  out[0] = sched_getscheduler(0);
  errno = 0;
  out[1] = getpriority(PRIO_PROCESS, 0);
  return NULL;
}

int main(void) {
  fx_init("sched");
  fx_term_setup();
  struct sched_param none = {0};
  FX_SYS(sched_setscheduler(0, SCHED_BATCH, &none));
  FX_SYS(setpriority(PRIO_PROCESS, 0, 7));
  int last = (int)sysconf(_SC_NPROCESSORS_ONLN) - 1;
  cpu_set_t pinned;
  CPU_ZERO(&pinned);
  CPU_SET(last, &pinned);
  FX_SYS(sched_setaffinity(0, sizeof pinned, &pinned));
  pthread_t worker;
  if (pthread_create(&worker, NULL, sleeper, NULL) != 0) fx_setup_fail("pthread_create");
  for (int tries = 0; tries < 5000 && sleeper_tid == 0; tries++) usleep(1000);
  if (sleeper_tid == 0) fx_setup_fail("the sleeping thread did not pin itself");
  FX_SYS(prctl(PR_SET_THP_DISABLE, 1, 0, 0, 0));
  FX_SYS(prctl(PR_SET_TIMERSLACK, 123456, 0, 0, 0));
  FX_SYS(prctl(65 /* PR_SET_MDWE */, 1 /* PR_MDWE_REFUSE_EXEC_GAIN */, 0, 0, 0));
  fx_ready();
  fx_wait_term();
  FX_EQ("policy", SCHED_BATCH, sched_getscheduler(0));
  errno = 0;
  FX_EQ("nice", 7, getpriority(PRIO_PROCESS, 0));
  FX_EQ("the main thread's CPU", last, only_cpu(0));
  FX_EQ("the sleeping thread's CPU", 0, only_cpu(sleeper_tid));
  FX_EQ("PR_GET_THP_DISABLE", 1, prctl(PR_GET_THP_DISABLE, 0, 0, 0, 0));
  FX_EQ("PR_GET_TIMERSLACK", 123456, prctl(PR_GET_TIMERSLACK, 0, 0, 0, 0));
  FX_EQ("PR_GET_MDWE", 1, prctl(66 /* PR_GET_MDWE */, 0, 0, 0, 0));
  int seen[2] = {-1, -1};
  pthread_t thread;
  if (pthread_create(&thread, NULL, probe, seen) == 0) pthread_join(thread, NULL);
  FX_EQ("a new thread's policy", SCHED_BATCH, seen[0]);
  FX_EQ("a new thread's nice", 7, seen[1]);
  fx_finish();
}
