/* inotify: an inotify instance comes back with its watches, each under its own watch
 * descriptor (a removed one leaves a gap), and reports events again.
 *
 *   inotify [DIR] [waiting]
 *
 * Before "ready": in DIR ($CKCONT_FIXTURE_DIR or /tmp) it makes directories a and b and a file
 * b/gone, watches a for IN_CREATE (wd 1), /etc (wd 2, removed again), b for IN_DELETE (wd 3).
 * After SIGTERM: creating a/new yields IN_CREATE on wd 1, deleting b/gone IN_DELETE on wd 3,
 * and watching a again gives back wd 1. It removes what it made.
 * With "waiting", an IN_CREATE of a/early is left unread before "ready"; after SIGTERM it
 * says whether that event was still there ("waiting event kept") or not ("waiting event
 * lost": a dump with --drop-inotify-events).
 */
#include "fix.h"
#include <fcntl.h>
#include <poll.h>
#include <sys/inotify.h>
#include <time.h>

int main(int argc, char **argv) {
  fx_init("inotify");
  fx_term_setup();
  char top[4096], a[4200], b[4200], gone[4300], made[4300], early[4300];
  int waiting = argc > 2 && !strcmp(argv[2], "waiting");
  struct timespec now;
  clock_gettime(CLOCK_REALTIME, &now);
  snprintf(top, sizeof top, "%s/ckcont-inotify-%lld-%ld", fx_dir(argc > 1 ? argv[1] : NULL), (long long)now.tv_sec, now.tv_nsec);
  snprintf(a, sizeof a, "%s/a", top);
  snprintf(b, sizeof b, "%s/b", top);
  snprintf(gone, sizeof gone, "%s/gone", b);
  snprintf(made, sizeof made, "%s/new", a);
  snprintf(early, sizeof early, "%s/early", a);
  FX_SYS(mkdir(top, 0700));
  FX_SYS(mkdir(a, 0700));
  FX_SYS(mkdir(b, 0700));
  close(FX_SYS(open(gone, O_CREAT | O_WRONLY, 0600)));
  int fd = FX_SYS(inotify_init1(IN_NONBLOCK | IN_CLOEXEC));
  int wa = FX_SYS(inotify_add_watch(fd, a, IN_CREATE));
  int we = FX_SYS(inotify_add_watch(fd, "/etc", IN_MODIFY));
  FX_SYS(inotify_rm_watch(fd, we));
  int wb = FX_SYS(inotify_add_watch(fd, b, IN_DELETE));
  /* Drain the IN_IGNORED the removal queued. */
  char events[4096];
  while (read(fd, events, sizeof events) > 0) {}
  if (waiting) close(FX_SYS(open(early, O_CREAT | O_WRONLY, 0600)));
  fx_ready();
  fx_wait_term();

  close(FX_SYS(open(made, O_CREAT | O_WRONLY, 0600)));
  FX_SYS(unlink(gone));
  struct pollfd p = {fd, POLLIN, 0};
  poll(&p, 1, 1000);
  ssize_t n = read(fd, events, sizeof events);
  int saw_create = 0, saw_delete = 0, saw_early = 0;
  for (char *at = events; n > 0 && at < events + n;) {
    struct inotify_event *event = (struct inotify_event *)at;
    if (event->wd == wa && (event->mask & IN_CREATE) && event->len && !strcmp(event->name, "early")) saw_early = 1;
    else if (event->wd == wa && (event->mask & IN_CREATE)) saw_create = 1;
    if (event->wd == wb && (event->mask & IN_DELETE)) saw_delete = 1;
    at += sizeof *event + event->len;
  }
  FX_TRUE(saw_create, "no IN_CREATE on wd %d after the restore", wa);
  FX_TRUE(saw_delete, "no IN_DELETE on wd %d after the restore", wb);
  FX_EQ("watch descriptors", (1 << 8) | 3, (wa << 8) | wb);
  FX_EQ("watching a again gives its wd", wa, inotify_add_watch(fd, a, IN_CREATE));
  if (waiting) fx_print("waiting event %s", saw_early ? "kept" : "lost");
  FX_TRUE(waiting || !saw_early, "an event no one made");
  unlink(made);
  unlink(early);
  rmdir(a);
  rmdir(b);
  rmdir(top);
  fx_finish();
}
