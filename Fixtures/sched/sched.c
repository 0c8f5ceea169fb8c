/* sched: a process's scheduling comes back: nice 7 under SCHED_BATCH, and a thread it
 * starts after the restore inherits them.
 */
#include "fix.h"
#include <pthread.h>
#include <sched.h>
#include <sys/resource.h>

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
  fx_ready();
  fx_wait_term();
  FX_EQ("policy", SCHED_BATCH, sched_getscheduler(0));
  errno = 0;
  FX_EQ("nice", 7, getpriority(PRIO_PROCESS, 0));
  int seen[2] = {-1, -1};
  pthread_t thread;
  if (pthread_create(&thread, NULL, probe, seen) == 0) pthread_join(thread, NULL);
  FX_EQ("a new thread's policy", SCHED_BATCH, seen[0]);
  FX_EQ("a new thread's nice", 7, seen[1]);
  fx_finish();
}
