/* seccomp: a process's seccomp filters come back, in every thread, and keep filtering.
 *
 *   seccomp [apart]
 *
 * Before "ready": no_new_privs, then filter A (uname fails with EPERM), a thread, then
 * filter B with SECCOMP_FILTER_FLAG_LOG and SECCOMP_FILTER_FLAG_TSYNC (times fails with
 * EACCES), so both threads have both. After SIGTERM, in both threads: uname fails with EPERM,
 * times with EACCES, getppid works, PR_GET_SECCOMP says filter mode, and /proc shows two
 * filters and no_new_privs.
 *
 * `apart`: a thread made before any filter, then filter A, a second thread, then each of the
 * main and the second thread adds a filter of its own without TSYNC: the main thread B (times
 * fails with EACCES), the second C (getpgid fails with EXDEV). After SIGTERM each thread is
 * filtered by A and its own filter only, and the first thread by none.
 */
#include "fix.h"
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <pthread.h>
#include <stddef.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/times.h>
#include <sys/utsname.h>

/* Fails system call `number` with `error`, allows everything else (x86_64 only). */
static void install(int number, int error, unsigned flags) {
  struct sock_filter program[] = {
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (unsigned)number, 0, 1),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (unsigned)error),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
  };
  struct sock_fprog fprog = {.len = sizeof program / sizeof program[0], .filter = program};
  FX_SYS(syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, flags, &fprog));
}

static const char *check(void) {
  struct utsname names;
  errno = 0;
  if (uname(&names) != -1 || errno != EPERM) return "uname was not refused with EPERM";
  struct tms t;
  errno = 0;
  if (syscall(SYS_times, &t) != -1 || errno != EACCES) return "times was not refused with EACCES";
  if (getppid() < 0) return "getppid failed";
  if (prctl(PR_GET_SECCOMP) != 2) return "PR_GET_SECCOMP is not filter mode";
  return NULL;
}

static char *read_status(void) {
  static char text[8192];
  FILE *file = fopen("/proc/self/status", "r");
  if (!file) return NULL;
  size_t n = fread(text, 1, sizeof text - 1, file);
  fclose(file);
  text[n] = 0;
  return text;
}

static volatile int go, started;
static const char *volatile thread_result = "the thread did not check";

static void *thread_main(void *unused) {
  (void)unused;
  started = 1;
  while (!go) usleep(1000);
  const char *problem = check();
  thread_result = problem ? problem : "";
  return NULL;
}

static volatile int apart_installed;

/* Whether system call `number` (with a zero argument) fails with `error` in this thread. */
static int refused(long number, int error) {
  struct tms t;
  errno = 0;
  long result = number == SYS_times ? syscall(number, &t) : syscall(number, 0);
  return result == -1 && errno == error;
}

static const char *check_apart(int main_thread) {
  struct utsname names;
  errno = 0;
  if (uname(&names) != -1 || errno != EPERM) return "uname was not refused with EPERM";
  if (refused(SYS_times, EACCES) != main_thread) return main_thread ? "times was not refused" : "times was refused";
  if (refused(SYS_getpgid, EXDEV) == main_thread) return main_thread ? "getpgid was refused" : "getpgid was not refused";
  return NULL;
}

static void *apart_thread(void *unused) {
  (void)unused;
  install(SYS_getpgid, EXDEV, 0);
  apart_installed = 1;
  while (!go) usleep(1000);
  const char *problem = check_apart(0);
  thread_result = problem ? problem : "";
  return NULL;
}

static volatile int unfiltered_started, unfiltered_go;
static const char *volatile unfiltered_result = "the unfiltered thread did not check";

static void *unfiltered_thread(void *unused) {
  (void)unused;
  unfiltered_started = 1;
  while (!unfiltered_go) usleep(1000);
  struct utsname names;
  unfiltered_result = uname(&names) != 0 ? "uname was refused" : refused(SYS_times, EACCES) ? "times was refused"
                    : refused(SYS_getpgid, EXDEV) ? "getpgid was refused" : prctl(PR_GET_SECCOMP) != 0 ? "it is in seccomp mode" : "";
  return NULL;
}

static int apart_mode(void) {
  FX_SYS(prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0));
  pthread_t unfiltered;
  if (pthread_create(&unfiltered, NULL, unfiltered_thread, NULL)) fx_setup_fail("pthread_create");
  while (!unfiltered_started) usleep(1000);
  install(SYS_uname, EPERM, 0);
  pthread_t thread;
  if (pthread_create(&thread, NULL, apart_thread, NULL)) fx_setup_fail("pthread_create");
  while (!apart_installed) usleep(1000);
  install(SYS_times, EACCES, 0);
  fx_ready();
  fx_wait_term();
  const char *problem = check_apart(1);
  FX_TRUE(problem == NULL, "main thread: %s", problem);
  go = 1;
  pthread_join(thread, NULL);
  FX_TRUE(!strcmp((const char *)thread_result, ""), "thread: %s", (const char *)thread_result);
  unfiltered_go = 1;
  pthread_join(unfiltered, NULL);
  FX_TRUE(!strcmp((const char *)unfiltered_result, ""), "the unfiltered thread: %s", (const char *)unfiltered_result);
  fx_finish();
}

int main(int argc, char **argv) {
  fx_init("seccomp");
  fx_term_setup();
  if (argc > 1 && !strcmp(argv[1], "apart")) return apart_mode();
  FX_SYS(prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0));
  install(SYS_uname, EPERM, 0);
  pthread_t thread;
  if (pthread_create(&thread, NULL, thread_main, NULL)) fx_setup_fail("pthread_create");
  install(SYS_times, EACCES, SECCOMP_FILTER_FLAG_LOG | SECCOMP_FILTER_FLAG_TSYNC);
  /* Ready only once the thread runs its own code: until then it has every signal blocked
     (pthread_create's), which a state snapshot would see change. */
  while (!started) usleep(1000);
  fx_ready();
  fx_wait_term();
  const char *problem = check();
  FX_TRUE(problem == NULL, "main thread: %s", problem);
  go = 1;
  pthread_join(thread, NULL);
  FX_TRUE(!strcmp((const char *)thread_result, ""), "thread: %s", (const char *)thread_result);
  char *status = read_status();
  FX_TRUE(status && strstr(status, "Seccomp_filters:\t2\n"), "/proc/self/status does not show two filters");
  FX_TRUE(status && strstr(status, "NoNewPrivs:\t1\n"), "/proc/self/status does not show no_new_privs");
  fx_finish();
}
