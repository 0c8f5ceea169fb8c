/* pid-nested: a pid namespace below the container's, with an init, a grandchild and threads.
 *
 *   pid-nested          (shape a) the container's pid 1 forks S, which unshares a pid
 *                       namespace and forks I, its init (as `unshare -pf` run inside);
 *   pid-nested init [proc]  (shape b) this process is already that init (`unshare -fp`
 *                       holds it); with `proc`, unshare mounted a proc of its namespace
 *                       (--mount-proc): /proc/self must be 1 after the restore, 2 for G.
 *   pid-nested mount-proc  shape a with a mount namespace of S's and a proc I mounts on /proc
 *                       there (`unshare -pf --mount-proc` run inside): after the restore
 *                       /proc/self is 1 for I and 2 for G, /proc/1/status is I's.
 *
 * I starts a thread and forks G (pid 2 there); a pipe runs between I and G, another from G
 * straight up to the container's init (bytes wait in it across the dump), one from the init
 * down to I. After SIGTERM (to the container's init, or to I in shape b): every process's
 * NSpid below the host level, getpid() and getppid() are as before in every namespace, the
 * thread's too; the waiting bytes arrive; G answers I over its pipe and exits, I reaps it with
 * wait(); a child forked after the restore gets pid 3 in the inner namespace.
 */
#include "fix.h"
#include <pthread.h>
#include <sched.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <sys/mount.h>

/* The NSpid entries below the host's (the host's pid is the restore's to choose). */
static void nspid(const char *status_path, char *out, size_t size) {
  FILE *f = fopen(status_path, "r");
  char line[256];
  out[0] = 0;
  while (f && fgets(line, sizeof line, f)) {
    if (strncmp(line, "NSpid:", 6)) continue;
    char *rest = strchr(line + 7, '\t');
    snprintf(out, size, "%s", rest ? rest + 1 : "");
  }
  if (f) fclose(f);
}

static void own_nspid(char *out, size_t size) {
  nspid("/proc/thread-self/status", out, size);
}

struct ids { char ns[128]; pid_t pid, ppid, tid; };

static void take(struct ids *ids) {
  own_nspid(ids->ns, sizeof ids->ns);
  ids->pid = getpid();
  ids->ppid = getppid();
  ids->tid = (pid_t)syscall(SYS_gettid);
}

static void compare(const char *who, const struct ids *before) {
  struct ids now;
  take(&now);
  FX_TRUE(!strcmp(now.ns, before->ns), "%s: NSpid %s, was %s", who, now.ns, before->ns);
  FX_EQ("getpid", before->pid, now.pid);
  FX_EQ("getppid", before->ppid, now.ppid);
  FX_EQ("gettid", before->tid, now.tid);
}

static int mount_proc, check_proc;

/* With mount-proc (or `init proc`): /proc shows this namespace, where this process is `pid`. */
static int proc_shows(pid_t pid) {
  if (!check_proc) return 1;
  char self[32] = "", want[32];
  ssize_t n = readlink("/proc/self", self, sizeof self - 1);
  if (n > 0) self[n] = 0;
  snprintf(want, sizeof want, "%d", (int)pid);
  return !strcmp(self, want);
}

static struct ids thread_ids;
static int thread_ask[2], thread_answer[2];

static void *thread_main(void *unused) {
  (void)unused;
  take(&thread_ids);
  char byte;
  if (write(thread_answer[1], "r", 1) != 1 || read(thread_ask[0], &byte, 1) != 1) return NULL;
  struct ids now;
  take(&now);
  char ok = !strcmp(now.ns, thread_ids.ns) && now.tid == thread_ids.tid && now.pid == thread_ids.pid ? 'y' : 'n';
  if (write(thread_answer[1], &ok, 1) != 1) return NULL;
  return NULL;
}

/* G: the grandchild. It says hello upward, then answers I's check and exits. */
static void grandchild(int ask, int answer, int up) {
  struct ids before;
  take(&before);
  if (up >= 0) fx_write(up, "from-G\n", 7);
  char byte;
  if (write(answer, "r", 1) != 1 || read(ask, &byte, 1) != 1) _exit(2);
  struct ids now;
  take(&now);
  char ok = !strcmp(now.ns, before.ns) && now.pid == before.pid && now.ppid == 1 && before.ppid == 1 && proc_shows(now.pid) ? 'y' : 'n';
  _exit(write(answer, &ok, 1) == 1 ? 0 : 2);
}

static struct ids init_ids;
static pid_t g;
static int g_ask[2], g_answer[2];

/* I, pid 1 of the inner namespace: a thread, and G. */
static void init_setup(int up) {
  /* First: every id is read through the proc the process sees from now on. */
  if (mount_proc) FX_SYS(mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL));
  take(&init_ids);
  if (init_ids.pid != 1) fx_setup_fail("not pid 1 of a pid namespace (pid %d)", (int)init_ids.pid);
  FX_SYS(pipe(thread_ask));
  FX_SYS(pipe(thread_answer));
  pthread_t thread;
  if (pthread_create(&thread, NULL, thread_main, NULL)) fx_setup_fail("pthread_create");
  char byte;
  if (read(thread_answer[0], &byte, 1) != 1) fx_setup_fail("the thread did not start");
  FX_SYS(pipe(g_ask));
  FX_SYS(pipe(g_answer));
  g = FX_SYS(fork());
  if (g == 0) grandchild(g_ask[0], g_answer[1], up);
  if (read(g_answer[0], &byte, 1) != 1) fx_setup_fail("G did not start");
}

static void init_check(void) {
  compare("I", &init_ids);
  FX_TRUE(proc_shows(1), "I's /proc does not show its pid namespace");
  FX_EQ("I's ppid in its namespace", 0, getppid());
  char byte = 'c';
  FX_TRUE(write(thread_ask[1], &byte, 1) == 1 && read(thread_answer[0], &byte, 1) == 1 && byte == 'y', "the thread's ids changed");
  byte = 'c';
  FX_TRUE(write(g_ask[1], &byte, 1) == 1 && read(g_answer[0], &byte, 1) == 1 && byte == 'y', "G's ids changed");
  int status = 0;
  FX_EQ("wait() reaps G", g, wait(&status));
  FX_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0, "G exited with status 0x%x", status);
  pid_t n = fork();
  if (n == 0) {
    struct ids mine;
    take(&mine);
    /* As many levels as I's, its parent I (pid 1). */
    int levels = 0, init_levels = 0;
    for (char *c = mine.ns; *c; c++) levels += *c == '\t';
    for (char *c = init_ids.ns; *c; c++) init_levels += *c == '\t';
    _exit(mine.pid > 1 && mine.ppid == 1 && levels == init_levels ? 0 : 1);
  }
  FX_TRUE(n > 1, "a child forked after the restore got pid %d", (int)n);
  FX_EQ("wait() reaps it", n, waitpid(n, &status, 0));
  FX_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0, "the new child is not in the inner namespace (status 0x%x)", status);
}

int main(int argc, char **argv) {
  fx_init("pid-nested");
  if (argc > 1 && !strcmp(argv[1], "init")) {
    check_proc = argc > 2 && !strcmp(argv[2], "proc");
    fx_term_setup();
    init_setup(-1);
    fx_ready();
    fx_wait_term();
    init_check();
    fx_finish();
  }
  mount_proc = check_proc = argc > 1 && !strcmp(argv[1], "mount-proc");
  fx_term_setup();
  struct ids mine;
  take(&mine);
  int down[2], up[2], report[2], ready[2];
  FX_SYS(pipe(down));
  FX_SYS(pipe(up));
  FX_SYS(pipe(report));
  FX_SYS(pipe(ready));
  pid_t s = FX_SYS(fork());
  if (s == 0) {
    struct ids before;
    take(&before);
    if (unshare(CLONE_NEWPID | (mount_proc ? CLONE_NEWNS : 0)) < 0) _exit(2);
    if (mount_proc && mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0) _exit(2);
    pid_t i = fork();
    if (i < 0) _exit(2);
    if (i == 0) {
      /* I: its verdict goes up the report pipe, a line starting PASS or FAIL. */
      init_setup(up[1]);
      if (write(ready[1], "r", 1) != 1) _exit(2);
      char byte;
      if (read(down[0], &byte, 1) != 1) _exit(2);
      init_check();
      char line[2300];
      int n = snprintf(line, sizeof line, "%s %s\n", fx_nbad ? "FAIL" : "PASS", fx_nbad ? fx_msg : "inner");
      fx_write(report[1], line, (size_t)n);
      _exit(fx_nbad ? 1 : 0);
    }
    int status = 0;
    while (waitpid(i, &status, 0) < 0 && errno == EINTR) {}
    struct ids now;
    take(&now);
    /* With mount-proc, S sees the inner proc, where it has no entry: its getpid() only. */
    int same = mount_proc || !strcmp(now.ns, before.ns);
    _exit(WIFEXITED(status) && WEXITSTATUS(status) == 0 && same && now.pid == before.pid ? 0 : 1);
  }
  char byte;
  if (read(ready[0], &byte, 1) != 1) fx_setup_fail("the inner init did not start");
  fx_ready();
  fx_wait_term();
  compare("the container's init", &mine);
  char from_g[8] = "";
  FX_TRUE(read(up[0], from_g, 7) == 7 && !memcmp(from_g, "from-G\n", 7), "the bytes G left in the pipe are gone: %.7s", from_g);
  FX_TRUE(write(down[1], "c", 1) == 1, "the pipe down to the inner init is broken");
  char verdict[2300] = "";
  ssize_t got = read(report[0], verdict, sizeof verdict - 1);
  FX_TRUE(got > 4 && !strncmp(verdict, "PASS", 4), "inner namespace: %s", got > 0 ? verdict : "no report");
  int status = 0;
  FX_EQ("wait() reaps S", s, waitpid(s, &status, 0));
  FX_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0, "S (the namespace's maker) exited with status 0x%x", status);
  fx_finish();
}
