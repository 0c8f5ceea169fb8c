/* propagation: mount propagation among the container's own mounts comes back.
 *
 *   propagation [DIR]
 *
 * In its mount namespace (made private first) under DIR/ckcont-propagation-<time>-<pid>: a
 * tmpfs `a` made shared, `b` a bind of it (a peer), `c` a bind of it made a slave of that
 * group, `u` a tmpfs made unbindable, and a tmpfs mounted at a/sub before "ready", which
 * propagation copied to b/sub and c/sub.
 * After SIGTERM: a, b and c show the same files; a/sub, b/sub and c/sub are one filesystem,
 * each mounted once; a tmpfs mounted at b/new shows in a/new and c/new; one mounted at c/own
 * does not show in a/own; u cannot be bound. Then everything is taken down.
 */
#include "fix.h"
#include <fcntl.h>
#include <sys/mount.h>
#include <time.h>

static char base[3000];

/* base/name. */
static const char *at(const char *name) { return fx_join(base, name); }

static dev_t device(const char *name) {
  struct stat st;
  return stat(at(name), &st) == 0 ? st.st_dev : 0;
}

/* How many mounts sit at `name` (lines of /proc/self/mountinfo with that mount point). */
static int mounts_at(const char *name) {
  FILE *file = fopen("/proc/self/mountinfo", "r");
  if (!file) return -1;
  char line[8192], point[4096];
  int count = 0;
  while (fgets(line, sizeof line, file))
    if (sscanf(line, "%*s %*s %*s %*s %4095s", point) == 1 && !strcmp(point, at(name))) count++;
  fclose(file);
  return count;
}

int main(int argc, char **argv) {
  fx_init("propagation");
  fx_term_setup();
  snprintf(base, sizeof base, "%s/ckcont-propagation-%ld-%d", fx_dir(argc > 1 ? argv[1] : NULL), (long)time(NULL), (int)getpid());
  FX_SYS(mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL));
  FX_SYS(mkdir(base, 0755));
  const char *dirs[] = {"a", "b", "c", "u", "v"};
  for (int i = 0; i < 5; i++) FX_SYS(mkdir(at(dirs[i]), 0755));
  FX_SYS(mount("tmpfs", at("a"), "tmpfs", 0, "size=1m"));
  FX_SYS(mkdir(at("a/sub"), 0755));
  FX_SYS(mkdir(at("a/new"), 0755));
  FX_SYS(mkdir(at("a/own"), 0755));
  int marker = FX_SYS(open(at("a/marker"), O_WRONLY | O_CREAT, 0644));
  close(marker);
  FX_SYS(mount(NULL, at("a"), NULL, MS_SHARED, NULL));
  FX_SYS(mount(at("a"), at("b"), NULL, MS_BIND, NULL));
  FX_SYS(mount(at("a"), at("c"), NULL, MS_BIND, NULL));
  FX_SYS(mount(NULL, at("c"), NULL, MS_SLAVE, NULL));
  FX_SYS(mount("tmpfs", at("u"), "tmpfs", 0, "size=64k"));
  FX_SYS(mount(NULL, at("u"), NULL, MS_UNBINDABLE, NULL));
  FX_SYS(mount("tmpfs", at("a/sub"), "tmpfs", 0, "size=64k"));

  fx_ready();
  fx_wait_term();

  FX_TRUE(device("b") == device("a") && device("c") == device("a") && access(at("c/marker"), F_OK) == 0, "a, b and c differ");
  FX_TRUE(device("a/sub") != device("a") && device("b/sub") == device("a/sub") && device("c/sub") == device("a/sub"),
          "a/sub did not propagate to b/sub and c/sub");
  FX_EQ("mounts at a/sub", 1, mounts_at("a/sub"));
  FX_EQ("mounts at b/sub", 1, mounts_at("b/sub"));
  FX_EQ("mounts at c/sub", 1, mounts_at("c/sub"));
  FX_EQ("mount at b/new", 0, mount("tmpfs", at("b/new"), "tmpfs", 0, "size=64k"));
  FX_TRUE(device("a/new") == device("b/new") && device("c/new") == device("b/new") && device("a/new") != device("a"),
          "a mount at b/new did not reach a/new and c/new");
  FX_EQ("mount at c/own", 0, mount("tmpfs", at("c/own"), "tmpfs", 0, "size=64k"));
  FX_TRUE(device("a/own") == device("a"), "a mount at the slave c reached its master a");
  FX_TRUE(mount(at("u"), at("v"), NULL, MS_BIND, NULL) < 0 && errno == EINVAL, "the unbindable u could be bound");

  const char *down[] = {"c/own", "b/new", "a/new", "c/new", "c/sub", "b/sub", "a/sub", "c", "b", "a", "u", "v"};
  for (int i = 0; i < 12; i++) umount2(at(down[i]), MNT_DETACH);
  for (int i = 0; i < 5; i++) rmdir(at(dirs[i]));
  rmdir(base);
  fx_finish();
}
