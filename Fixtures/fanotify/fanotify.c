/* fanotify: a fanotify group comes back with its flags and marks, and reports events again.
 *
 *   fanotify [DIR]
 *
 * Before "ready": in DIR ($CKCONT_FIXTURE_DIR or /tmp) it makes a directory with the files
 * loud and quiet, and a group (FAN_CLASS_NOTIF, non-blocking, events opened read-only) that
 * marks the directory for FAN_OPEN of its children and ignores FAN_OPEN on quiet (an
 * ignored mask that survives modification). It reads what the setup queued.
 * After SIGTERM: opening quiet, then loud, yields one FAN_OPEN event, for loud (its event
 * descriptor names the file); the group's flags are as they were (fdinfo); a second mark
 * call that removes the ignored mask works. It removes what it made.
 */
#include "fix.h"
#include <fcntl.h>
#include <poll.h>
#include <sys/fanotify.h>
#include <time.h>

static int count_events(int fd, const char *expected_path, int *matching) {
  char buffer[4096];
  int events = 0;
  *matching = 0;
  ssize_t n;
  while ((n = read(fd, buffer, sizeof buffer)) > 0) {
    for (struct fanotify_event_metadata *event = (struct fanotify_event_metadata *)buffer; FAN_EVENT_OK(event, n);
         event = FAN_EVENT_NEXT(event, n)) {
      events++;
      if (event->fd >= 0) {
        char link[64], path[4096];
        snprintf(link, sizeof link, "/proc/self/fd/%d", event->fd);
        ssize_t length = readlink(link, path, sizeof path - 1);
        path[length < 0 ? 0 : length] = 0;
        if ((event->mask & FAN_OPEN) && !strcmp(path, expected_path)) (*matching)++;
        close(event->fd);
      }
    }
  }
  return events;
}

static void flags_line(int fd, char *out, size_t size) {
  char path[64];
  snprintf(path, sizeof path, "/proc/self/fdinfo/%d", fd);
  FILE *info = fopen(path, "r");
  if (!info) fx_setup_fail("open %s", path);
  out[0] = 0;
  char line[512];
  while (fgets(line, sizeof line, info))
    if (!strncmp(line, "fanotify flags:", 15)) snprintf(out, size, "%s", line);
  fclose(info);
}

int main(int argc, char **argv) {
  fx_init("fanotify");
  fx_term_setup();
  char top[4096], loud[4200], quiet[4200];
  struct timespec now;
  clock_gettime(CLOCK_REALTIME, &now);
  snprintf(top, sizeof top, "%s/ckcont-fanotify-%lld-%ld", fx_dir(argc > 1 ? argv[1] : NULL), (long long)now.tv_sec,
           now.tv_nsec);
  snprintf(loud, sizeof loud, "%s/loud", top);
  snprintf(quiet, sizeof quiet, "%s/quiet", top);
  FX_SYS(mkdir(top, 0700));
  close(FX_SYS(open(loud, O_CREAT | O_WRONLY, 0600)));
  close(FX_SYS(open(quiet, O_CREAT | O_WRONLY, 0600)));
  int fd = FX_SYS(fanotify_init(FAN_CLASS_NOTIF | FAN_NONBLOCK | FAN_CLOEXEC, O_RDONLY | O_LARGEFILE));
  FX_SYS(fanotify_mark(fd, FAN_MARK_ADD, FAN_OPEN | FAN_EVENT_ON_CHILD, AT_FDCWD, top));
  FX_SYS(fanotify_mark(fd, FAN_MARK_ADD | FAN_MARK_IGNORED_MASK | FAN_MARK_IGNORED_SURV_MODIFY, FAN_OPEN, AT_FDCWD,
                       quiet));
  int ignored;
  count_events(fd, loud, &ignored);
  char before[512];
  flags_line(fd, before, sizeof before);
  fx_ready();
  fx_wait_term();

  char after[512];
  flags_line(fd, after, sizeof after);
  FX_TRUE(!strcmp(before, after), "the group's flags were \"%s\", now \"%s\"", before, after);
  close(FX_SYS(open(quiet, O_RDONLY)));
  close(FX_SYS(open(loud, O_RDONLY)));
  struct pollfd p = {fd, POLLIN, 0};
  poll(&p, 1, 1000);
  int on_loud;
  int events = count_events(fd, loud, &on_loud);
  if (fx_flip()) on_loud = 0;
  FX_TRUE(on_loud == 1 && events == 1, "after the restore: %d events, %d of them FAN_OPEN of %s (one expected)", events,
          on_loud, loud);
  FX_SYS(fanotify_mark(fd, FAN_MARK_REMOVE | FAN_MARK_IGNORED_MASK, FAN_OPEN, AT_FDCWD, quiet));
  close(FX_SYS(open(quiet, O_RDONLY)));
  poll(&p, 1, 1000);
  events = count_events(fd, quiet, &on_loud);
  FX_TRUE(on_loud == 1, "quiet opened without its ignored mask: %d events, %d for it", events, on_loud);
  unlink(loud);
  unlink(quiet);
  rmdir(top);
  fx_finish();
}
