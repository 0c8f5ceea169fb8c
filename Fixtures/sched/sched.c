/* sched: a process's scheduling comes back: nice 7 under SCHED_BATCH, and a thread it
 * starts after the restore inherits them; its main thread pinned to the last CPU and a
 * sleeping thread pinned to CPU 0 keep their CPUs; and its prctl settings: transparent huge
 * pages off, a timer slack of 123456 ns, memory-deny-write-execute, KSM merging of all its
 * memory (PR_SET_MEMORY_MERGE, where the kernel has KSM). What each thread set for
 * itself alone comes back too: the main thread's I/O priority (best effort, level 3), and the
 * sleeping thread's SCHED_IDLE, nice 12, idle I/O class and timer slack of 777777 ns.
 * And two settings of the process beyond the scheduler: oom_score_adj 345, and the audit
 * login uid 1234 (set before the thread starts, which inherits it; its session id is the
 * kernel's to hand out and is not checked).
 */
#include "fix.h"
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>

#define IOPRIO_WHO_PROCESS 1
#define IOPRIO_VALUE(class, level) ((class) << 13 | (level))

static volatile pid_t sleeper_tid;
static volatile int asked, answered;
static volatile long sleeper_slack = -1, sleeper_loginuid = -1;
static long proc_number(const char *path);

static void *sleeper(void *arg) {
  (void)arg;
  cpu_set_t zero;
  CPU_ZERO(&zero);
  CPU_SET(0, &zero);
  struct sched_param none = {0};
  pid_t tid = (pid_t)syscall(SYS_gettid);
  if (sched_setaffinity(0, sizeof zero, &zero) == 0 && sched_setscheduler(0, SCHED_IDLE, &none) == 0 &&
      setpriority(PRIO_PROCESS, (id_t)tid, 12) == 0 &&
      syscall(SYS_ioprio_set, IOPRIO_WHO_PROCESS, 0, IOPRIO_VALUE(3 /* idle */, 0)) == 0 &&
      prctl(PR_SET_TIMERSLACK, 777777, 0, 0, 0) == 0)
    sleeper_tid = tid;
  /* Its timer slack only it can ask (/proc/<tid>/timerslack_ns is not in its task directory). */
  while (!asked) usleep(1000);
  sleeper_slack = prctl(PR_GET_TIMERSLACK, 0, 0, 0, 0);
  sleeper_loginuid = proc_number("/proc/thread-self/loginuid");
  answered = 1;
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

/* A number in a /proc file (-1 when unreadable). */
static long proc_number(const char *path) {
  char text[32] = "";
  int fd = open(path, O_RDONLY);
  if (fd < 0) return -1;
  ssize_t got = read(fd, text, sizeof text - 1);
  close(fd);
  return got > 0 ? strtol(text, NULL, 10) : -1;
}

static void proc_write(const char *path, const char *text) {
  int fd = FX_SYS(open(path, O_WRONLY));
  FX_SYS(write(fd, text, strlen(text)));
  close(fd);
}

int main(void) {
  fx_init("sched");
  fx_term_setup();
  proc_write("/proc/self/oom_score_adj", "345");
  proc_write("/proc/self/loginuid", "1234");
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
  if (sleeper_tid == 0) fx_setup_fail("the sleeping thread did not set itself up");
  FX_SYS(syscall(SYS_ioprio_set, IOPRIO_WHO_PROCESS, 0, IOPRIO_VALUE(2 /* best effort */, 3)));
  FX_SYS(prctl(PR_SET_THP_DISABLE, 1, 0, 0, 0));
  FX_SYS(prctl(PR_SET_TIMERSLACK, 123456, 0, 0, 0));
  FX_SYS(prctl(65 /* PR_SET_MDWE */, 1 /* PR_MDWE_REFUSE_EXEC_GAIN */, 0, 0, 0));
  int ksm = prctl(67 /* PR_SET_MEMORY_MERGE */, 1, 0, 0, 0) == 0;
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
  if (ksm) FX_EQ("PR_GET_MEMORY_MERGE", 1, prctl(68 /* PR_GET_MEMORY_MERGE */, 0, 0, 0, 0));
  FX_EQ("the main thread's I/O priority", IOPRIO_VALUE(2, 3), syscall(SYS_ioprio_get, IOPRIO_WHO_PROCESS, 0));
  FX_EQ("oom_score_adj", 345, proc_number("/proc/self/oom_score_adj"));
  FX_EQ("the main thread's loginuid", 1234, proc_number("/proc/thread-self/loginuid"));
  FX_EQ("the sleeping thread's policy", SCHED_IDLE, sched_getscheduler(sleeper_tid));
  errno = 0;
  FX_EQ("the sleeping thread's nice", 12, getpriority(PRIO_PROCESS, (id_t)sleeper_tid));
  FX_EQ("the sleeping thread's I/O priority", IOPRIO_VALUE(3, 0), syscall(SYS_ioprio_get, IOPRIO_WHO_PROCESS, sleeper_tid));
  asked = 1;
  for (int tries = 0; tries < 5000 && !answered; tries++) usleep(1000);
  FX_EQ("the sleeping thread's timer slack", 777777, sleeper_slack);
  FX_EQ("the sleeping thread's loginuid", 1234, sleeper_loginuid);
  int seen[2] = {-1, -1};
  pthread_t thread;
  if (pthread_create(&thread, NULL, probe, seen) == 0) pthread_join(thread, NULL);
  FX_EQ("a new thread's policy", SCHED_BATCH, seen[0]);
  FX_EQ("a new thread's nice", 7, seen[1]);
  fx_finish();
}
