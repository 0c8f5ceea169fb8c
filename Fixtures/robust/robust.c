/* robust: a robust mutex shared between processes still reports its owner's death.
 *
 *   robust
 *
 * A process-shared robust mutex lives in shared anonymous memory; a child locks it and waits.
 * After SIGTERM the parent kills the child: the kernel walks the child's robust futex list
 * (set_robust_list, which glibc registers for each thread) and marks the mutex's owner dead,
 * so the parent's lock returns EOWNERDEAD at once instead of waiting forever.
 */
#include "fix.h"
#include <pthread.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>

int main(void) {
  fx_init("robust");
  fx_term_setup();
  pthread_mutex_t *mutex = mmap(NULL, sizeof *mutex, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (mutex == MAP_FAILED) fx_setup_fail("mmap");
  pthread_mutexattr_t attributes;
  pthread_mutexattr_init(&attributes);
  pthread_mutexattr_setpshared(&attributes, PTHREAD_PROCESS_SHARED);
  pthread_mutexattr_setrobust(&attributes, PTHREAD_MUTEX_ROBUST);
  if (pthread_mutex_init(mutex, &attributes) != 0) fx_setup_fail("pthread_mutex_init");
  int ready[2];
  FX_SYS(pipe(ready));
  pid_t child = FX_SYS(fork());
  if (child == 0) {
    if (pthread_mutex_lock(mutex) != 0 || write(ready[1], "l", 1) != 1) _exit(2);
    for (;;) pause();
  }
  char byte;
  if (read(ready[0], &byte, 1) != 1) fx_setup_fail("the child did not lock the mutex");

  fx_ready();
  fx_wait_term();

  kill(child, SIGKILL);
  waitpid(child, NULL, 0);
  struct timespec deadline;
  clock_gettime(CLOCK_REALTIME, &deadline);
  deadline.tv_sec += 3;
  int result = pthread_mutex_timedlock(mutex, &deadline);
  if (fx_flip()) result = ETIMEDOUT;
  FX_TRUE(result == EOWNERDEAD, "locking the mutex of the dead child gave %d (%s), not EOWNERDEAD", result, strerror(result));
  if (result == EOWNERDEAD) {
    pthread_mutex_consistent(mutex);
    pthread_mutex_unlock(mutex);
  }
  fx_finish();
}
