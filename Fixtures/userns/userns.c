/* userns: a container in a user namespace of its own (started by `launch --userns`: ids
 * 0-65535 of the namespace are the host's 100000-165535).
 *
 *   userns [DIR]
 *
 * As root of the namespace it mounts a proc of its pid namespace on /proc and sets the
 * hostname (its mount and UTS namespaces belong to the user namespace), makes a file in DIR
 * (owned by the host's uid 100000), and forks a child that becomes uid and gid 1000 with the
 * supplementary group 1001 and waits.
 * After SIGTERM: still uid and gid 0 with the capabilities it had (every one of the
 * namespace's), the same uid_map and gid_map, the hostname; the file's owner is 0; the child
 * is uid 1000, gid 1000, groups 1001, without PR_SET_KEEPCAPS (asked through a pipe on
 * SIGUSR1); and it can still act as the namespace's root (set the hostname again).
 */
#include "fix.h"
#include <fcntl.h>
#include <grp.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>

static int answer_fd = -1;
static void on_usr1(int signal) {
  (void)signal;
  char keep = (char)('0' + prctl(PR_GET_KEEPCAPS, 0, 0, 0, 0));
  if (write(answer_fd, &keep, 1) != 1) _exit(3);
}

/* The value of `key` in /proc/<pid>/status ("self" for this process). */
static void status_line(const char *pid, const char *key, char *out, size_t size) {
  char path[64], line[512];
  snprintf(path, sizeof path, "/proc/%s/status", pid);
  out[0] = 0;
  FILE *file = fopen(path, "r");
  if (!file) return;
  while (fgets(line, sizeof line, file)) {
    if (!strncmp(line, key, strlen(key)) && line[strlen(key)] == ':') {
      snprintf(out, size, "%s", line + strlen(key) + 1);
      out[strcspn(out, "\n")] = 0;
      break;
    }
  }
  fclose(file);
}

static void read_map(const char *name, char *out, size_t size) {
  char path[64];
  snprintf(path, sizeof path, "/proc/self/%s", name);
  FILE *file = fopen(path, "r");
  unsigned inside = 0, outside = 0, count = 0;
  out[0] = 0;
  if (file && fscanf(file, "%u %u %u", &inside, &outside, &count) == 3) snprintf(out, size, "%u %u %u", inside, outside, count);
  if (file) fclose(file);
}

int main(int argc, char **argv) {
  fx_init("userns");
  fx_term_setup();
  char file[4096];
  snprintf(file, sizeof file, "%s/ckcont-userns-%ld-%d", fx_dir(argc > 1 ? argv[1] : NULL), (long)time(NULL), (int)getpid());
  int fd = FX_SYS(open(file, O_WRONLY | O_CREAT | O_EXCL, 0644));
  close(fd);
  FX_SYS(sethostname("userns-fixture", 14));
  FX_SYS(mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL));
  FX_SYS(mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL));
  int ready[2], answers[2];
  FX_SYS(pipe(ready));
  FX_SYS(pipe(answers));
  pid_t child = FX_SYS(fork());
  if (child == 0) {
    answer_fd = answers[1];
    struct sigaction sa = {.sa_handler = on_usr1};
    sigaction(SIGUSR1, &sa, NULL);
    gid_t group = 1001;
    if (setgroups(1, &group) < 0 || setresgid(1000, 1000, 1000) < 0 || setresuid(1000, 1000, 1000) < 0) _exit(2);
    close(ready[0]);
    if (write(ready[1], "x", 1) != 1) _exit(2);
    for (;;) pause();
  }
  char byte;
  if (read(ready[0], &byte, 1) != 1) fx_setup_fail("the child did not become uid 1000");
  char caps[64], uid_map[64], gid_map[64];
  status_line("self", "CapEff", caps, sizeof caps);
  read_map("uid_map", uid_map, sizeof uid_map);
  read_map("gid_map", gid_map, sizeof gid_map);
  if (strcmp(uid_map, "0 100000 65536")) fx_setup_fail("not started by launch --userns: uid_map %s", uid_map);

  fx_ready();
  fx_wait_term();

  FX_EQ("uid", 0, getuid());
  FX_EQ("gid", 0, getgid());
  char now[64];
  status_line("self", "CapEff", now, sizeof now);
  FX_TRUE(!strcmp(now, caps), "CapEff is %s, was %s", now, caps);
  read_map("uid_map", now, sizeof now);
  FX_TRUE(!strcmp(now, uid_map), "uid_map is %s, was %s", now, uid_map);
  read_map("gid_map", now, sizeof now);
  FX_TRUE(!strcmp(now, gid_map), "gid_map is %s, was %s", now, gid_map);
  char name[64] = "";
  gethostname(name, sizeof name);
  FX_TRUE(!strcmp(name, "userns-fixture"), "hostname is %s", name);
  struct stat st;
  FX_EQ("stat of the file", 0, stat(file, &st));
  FX_EQ("owner of the file", 0, st.st_uid);
  char pid[16], ids[128];
  snprintf(pid, sizeof pid, "%d", (int)child);
  status_line(pid, "Uid", ids, sizeof ids);
  FX_TRUE(!strcmp(ids, "\t1000\t1000\t1000\t1000"), "the child's uids are%s", ids);
  status_line(pid, "Gid", ids, sizeof ids);
  FX_TRUE(!strcmp(ids, "\t1000\t1000\t1000\t1000"), "the child's gids are%s", ids);
  status_line(pid, "Groups", ids, sizeof ids);
  FX_TRUE(!strcmp(ids, "\t1001 "), "the child's groups are%s", ids);
  kill(child, SIGUSR1);
  char keep = '?';
  FX_EQ("the child's answer", 1, read(answers[0], &keep, 1));
  FX_EQ("the child's PR_GET_KEEPCAPS", '0', keep);
  FX_EQ("sethostname again", 0, sethostname("userns-again", 12));

  kill(child, SIGKILL);
  waitpid(child, NULL, 0);
  unlink(file);
  fx_finish();
}
