/* mqueue: POSIX message queues of the container's IPC namespace come back with their
 * attributes, mode and waiting messages, in order.
 *
 * pid 1 makes /ckcont-mq-<pid> (mode 0640, 8 messages of up to 128 bytes) holding "low"
 * (priority 1), "high" (5) and "low again" (1), open read-write and, a second time,
 * read-only and non-blocking; and /ckcont-mq-gone-<pid>, unlinked while open, holding
 * "orphan". After SIGTERM: the attributes, mode and flags are as they were, the messages
 * come out as "high", "low", "low again", the unlinked queue still gives "orphan" and its name
 * is free.
 */
#include "fix.h"
#include <fcntl.h>
#include <mqueue.h>

int main(void) {
  fx_init("mqueue");
  fx_term_setup();
  char name[64], gone[64];
  snprintf(name, sizeof name, "/ckcont-mq-%d", (int)getpid());
  snprintf(gone, sizeof gone, "/ckcont-mq-gone-%d", (int)getpid());
  mq_unlink(name);
  mq_unlink(gone);
  mode_t old = umask(0);
  struct mq_attr attr = {.mq_maxmsg = 8, .mq_msgsize = 128};
  mqd_t queue = mq_open(name, O_CREAT | O_EXCL | O_RDWR, 0640, &attr);
  if (queue < 0) fx_setup_fail("mq_open %s", name);
  umask(old);
  FX_SYS(mq_send(queue, "low", 3, 1));
  FX_SYS(mq_send(queue, "high", 4, 5));
  FX_SYS(mq_send(queue, "low again", 9, 1));
  mqd_t reader = mq_open(name, O_RDONLY | O_NONBLOCK);
  if (reader < 0) fx_setup_fail("mq_open %s read-only", name);
  mqd_t orphan = mq_open(gone, O_CREAT | O_EXCL | O_RDWR, 0600, &attr);
  if (orphan < 0) fx_setup_fail("mq_open %s", gone);
  FX_SYS(mq_send(orphan, "orphan", 6, 0));
  FX_SYS(mq_unlink(gone));
  fx_ready();
  fx_wait_term();

  struct mq_attr now;
  FX_EQ("mq_getattr", 0, mq_getattr(queue, &now));
  FX_EQ("maximum messages", 8, now.mq_maxmsg);
  FX_EQ("message size", 128, now.mq_msgsize);
  FX_EQ("messages waiting", 3, now.mq_curmsgs);
  struct stat st;
  FX_EQ("fstat of the queue", 0, fstat(queue, &st));
  FX_EQ("mode of the queue", 0640, st.st_mode & 0777);
  FX_EQ("mq_getattr of the reader", 0, mq_getattr(reader, &now));
  FX_EQ("the reader is non-blocking", O_NONBLOCK, now.mq_flags & O_NONBLOCK);
  const char *order[] = {"high", "low", "low again"};
  unsigned priorities[] = {5, 1, 1};
  for (int i = 0; i < 3; i++) {
    char text[129] = "";
    unsigned priority = 99;
    ssize_t n = mq_receive(reader, text, sizeof text, &priority);
    if (n >= 0) text[n] = 0;
    if (fx_flip()) text[0] ^= 1;
    FX_TRUE(n == (ssize_t)strlen(order[i]) && !strcmp(text, order[i]) && priority == priorities[i],
            "message %d: \"%s\" (priority %u), expected \"%s\" (%u)", i, text, priority, order[i], priorities[i]);
  }
  char text[129] = "";
  FX_TRUE(mq_receive(reader, text, sizeof text, NULL) < 0 && errno == EAGAIN, "a fourth message came out");
  ssize_t n = mq_receive(orphan, text, sizeof text, NULL);
  FX_TRUE(n == 6 && !memcmp(text, "orphan", 6), "the unlinked queue lost its message (%zd)", n);
  FX_TRUE(mq_open(gone, O_RDONLY) < 0 && errno == ENOENT, "the unlinked queue has a name again");
  mq_unlink(name);
  fx_finish();
}
