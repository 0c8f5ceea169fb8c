/* random: a container made at random from a seed, which checks after the restore that
 * everything it made is as it was.
 *
 *   random SEED [DIR]
 *
 * pid 1 runs 8 to 24 actions picked from SEED; a fork among them makes another process
 * (at most four), which goes on with actions of its own. Each action makes one piece of
 * state and remembers what it must look like: files (flags, offset, contents, dup'ed,
 * deleted, appended), pipes and unix socket pairs with bytes or datagrams waiting (and a
 * shut-down end), memory (private, shared, file, memfd; written before and after forks, so
 * pages are shared copy-on-write; read-only, advised), eventfd, timerfd, epoll, inotify,
 * signal actions, blocked and pending signals, an alternate signal stack, interval and
 * POSIX timers, limits, nice, affinity, cwd, umask, flock, TCP and UDP sockets, POSIX
 * message queues, threads. Files go in DIR (default $CKCONT_FIXTURE_DIR or /tmp).
 *
 * After SIGTERM each process forwards it to its children and waits for them (descendants
 * check first: what a process inherited it only looks at, what it made it may consume),
 * then checks its own. A child that finds a difference prints "FAIL random (pid N): ..."
 * and exits 1; pid 1 prints PASS or FAIL. The same seed makes the same container.
 */
#include "fix.h"
#include <fcntl.h>
#include <mqueue.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/file.h>
#include <sys/inotify.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/timerfd.h>
#include <sys/wait.h>
#include <time.h>

#define PAGE 4096
#define MAXITEMS 64
#define MAXPAGES 8

enum kind {
  K_FILE, K_PIPE, K_PAIR, K_MEM, K_EVENTFD, K_TIMERFD, K_EPOLL, K_INOTIFY, K_SIGNAL, K_ALTSTACK, K_ITIMER, K_PTIMER,
  K_RLIMIT, K_CWD, K_UMASK, K_NICE, K_AFFINITY, K_FLOCK, K_TCP, K_UDP, K_MQ, K_THREAD, K_FORK, NKINDS
};

struct item {
  int kind;
  int inherited;  /* made by an ancestor: looked at, never consumed */
  int frozen;     /* a shared mapping after a fork: nobody writes it any more */
  int gone;       /* not in this process (timers and threads after a fork) */
  int fd, fd2;
  int flags, flags2, fdflags;
  off_t pos;
  unsigned char data[200], data2[200];
  int len, len2, nmsgs, msglen[3], shut;
  unsigned char *addr;
  int pages, prot, shared, advice;
  unsigned char seeds[MAXPAGES], file_seeds[MAXPAGES];
  long value, value2;
  int num;
  char path[300];
  pthread_t thread;
};

static struct item items[MAXITEMS];
static int nitems;
static uint64_t rng;
static const char *dir;
static long seed_arg;
static pid_t children[4];
static int nchildren;
static int is_root = 1;
static volatile int *counters;  /* [0] processes made, [1] processes ready, [2] inotify read */
static char altstack[2][65536];

static uint64_t next_rand(void) {
  rng ^= rng << 13;
  rng ^= rng >> 7;
  rng ^= rng << 17;
  return rng;
}
static int pick(int n) { return (int)(next_rand() % (uint64_t)n); }
static void fill(unsigned char *to, int n) { for (int i = 0; i < n; i++) to[i] = (unsigned char)next_rand(); }
static unsigned char pattern(int seed, int i) { return seed ? (unsigned char)(seed * 131 + i * 7 + (i >> 8)) : 0; }
static struct item *new_item(int kind) {
  if (nitems == MAXITEMS) return NULL;
  struct item *it = &items[nitems++];
  memset(it, 0, sizeof *it);
  it->kind = kind;
  it->fd = it->fd2 = -1;
  return it;
}
static int fl(int fd) { return fcntl(fd, F_GETFL) & (O_ACCMODE | O_APPEND | O_NONBLOCK); }

/* A descriptor moved to a random number above 100, as programs dup2 to fixed numbers. */
static int renumber(int fd) {
  if (pick(3)) return fd;
  int to = 100 + pick(100);
  if (fcntl(to, F_GETFD) >= 0) return fd;
  FX_SYS(dup2(fd, to));
  close(fd);
  return to;
}

static void make_file(struct item *it) {
  snprintf(it->path, sizeof it->path, "%s/ckcont-random-%ld-%d-%d", dir, seed_arg, (int)getpid(), nitems);
  int fd = FX_SYS(open(it->path, O_RDWR | O_CREAT | O_TRUNC, 0600));
  it->len = 1 + pick(sizeof it->data);
  fill(it->data, it->len);
  if (write(fd, it->data, (size_t)it->len) != it->len) fx_setup_fail("write %s", it->path);
  int mode = pick(3);
  if (mode) {  /* reopened read-only, or write-only appending */
    close(fd);
    fd = FX_SYS(open(it->path, mode == 1 ? O_RDONLY : O_WRONLY | O_APPEND));
  }
  if (mode != 2) FX_SYS(lseek(fd, pick(it->len + 1), SEEK_SET));
  if (!pick(3)) FX_SYS(fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK));
  if (!pick(3)) FX_SYS(fcntl(fd, F_SETFD, FD_CLOEXEC));
  it->fd = renumber(fd);
  if (!pick(3)) it->fd2 = FX_SYS(dup(it->fd));
  if (!pick(4)) { unlink(it->path); it->path[0] = 0; }
  it->flags = fl(it->fd);
  it->fdflags = fcntl(it->fd, F_GETFD);
  it->pos = lseek(it->fd, 0, SEEK_CUR);
  it->value = mode;
}

static void check_file(struct item *it) {
  FX_EQ("file flags", it->flags, fl(it->fd));
  FX_EQ("file fd flags", it->fdflags, fcntl(it->fd, F_GETFD));
  FX_EQ("file offset", (long)it->pos, (long)lseek(it->fd, 0, SEEK_CUR));
  if (it->fd2 >= 0) FX_EQ("dup'ed file offset", (long)it->pos, (long)lseek(it->fd2, 0, SEEK_CUR));
  struct stat st;
  FX_EQ("file size", it->len, fstat(it->fd, &st) == 0 ? (long)st.st_size : -1L);
  FX_EQ("file linked", it->path[0] ? 1 : 0, (long)st.st_nlink);
  if (it->value != 2) {
    unsigned char now[200];
    FX_TRUE(pread(it->fd, now, (size_t)it->len, 0) == it->len && !memcmp(now, it->data, (size_t)it->len), "file %s: contents differ",
            it->path);
  }
}

static void make_pipe(struct item *it) {
  int ends[2];
  FX_SYS(pipe(ends));
  if (!pick(3)) FX_SYS(fcntl(ends[0], F_SETFL, O_NONBLOCK));
  if (!pick(3)) FX_SYS(fcntl(ends[1], F_SETFL, O_NONBLOCK));
  it->len = pick(sizeof it->data);
  fill(it->data, it->len);
  if (it->len && write(ends[1], it->data, (size_t)it->len) != it->len) fx_setup_fail("write pipe");
  it->fd = renumber(ends[0]);
  if (pick(4)) it->fd2 = renumber(ends[1]); else close(ends[1]);
  it->flags = fl(it->fd);
  it->flags2 = it->fd2 >= 0 ? fl(it->fd2) : 0;
}

static void check_pipe(struct item *it) {
  FX_EQ("pipe read end flags", it->flags, fl(it->fd));
  if (it->fd2 >= 0) FX_EQ("pipe write end flags", it->flags2, fl(it->fd2));
  int waiting = -1;
  ioctl(it->fd, FIONREAD, &waiting);
  FX_EQ("bytes waiting in a pipe", it->len, waiting);
  if (it->inherited || waiting != it->len || !it->len) return;
  unsigned char now[200];
  FX_TRUE(read(it->fd, now, (size_t)it->len) == it->len && !memcmp(now, it->data, (size_t)it->len), "a pipe's bytes differ");
}

static void make_pair(struct item *it) {
  int types[] = {SOCK_STREAM, SOCK_DGRAM, SOCK_SEQPACKET};
  it->value = types[pick(3)];
  int ends[2];
  FX_SYS(socketpair(AF_UNIX, (int)it->value, 0, ends));
  if (it->value == SOCK_STREAM) {
    it->len = pick(sizeof it->data);
    fill(it->data, it->len);
    if (it->len && write(ends[0], it->data, (size_t)it->len) != it->len) fx_setup_fail("write pair");
    it->len2 = pick(sizeof it->data2);
    fill(it->data2, it->len2);
    if (it->len2 && write(ends[1], it->data2, (size_t)it->len2) != it->len2) fx_setup_fail("write pair");
    if (!pick(3)) { FX_SYS(shutdown(ends[0], SHUT_WR)); it->shut = 1; }
  } else {
    it->nmsgs = pick(4);
    int at = 0;
    for (int i = 0; i < it->nmsgs; i++) {
      it->msglen[i] = 1 + pick(60);
      fill(it->data + at, it->msglen[i]);
      if (send(ends[0], it->data + at, (size_t)it->msglen[i], 0) != it->msglen[i]) fx_setup_fail("send pair");
      at += it->msglen[i];
    }
  }
  it->fd = renumber(ends[0]);
  it->fd2 = renumber(ends[1]);
}

static void check_pair(struct item *it) {
  int type = -1;
  socklen_t length = sizeof type;
  getsockopt(it->fd2, SOL_SOCKET, SO_TYPE, &type, &length);
  FX_EQ("socket pair type", it->value, type);
  if (it->value == SOCK_STREAM) {
    int waiting = -1;
    ioctl(it->fd2, FIONREAD, &waiting);
    FX_EQ("bytes waiting in a socket pair", it->len, waiting);
    waiting = -1;
    ioctl(it->fd, FIONREAD, &waiting);
    FX_EQ("bytes waiting in the other end", it->len2, waiting);
    if (it->inherited) return;
    unsigned char now[200];
    if (it->len) FX_TRUE(recv(it->fd2, now, sizeof now, MSG_DONTWAIT) == it->len && !memcmp(now, it->data, (size_t)it->len), "a socket pair's bytes differ");
    if (it->len2) FX_TRUE(recv(it->fd, now, sizeof now, MSG_DONTWAIT) == it->len2 && !memcmp(now, it->data2, (size_t)it->len2), "the other end's bytes differ");
    if (it->shut) FX_EQ("end of stream after a shutdown", 0, recv(it->fd2, now, sizeof now, MSG_DONTWAIT));
    else FX_TRUE(recv(it->fd2, now, sizeof now, MSG_DONTWAIT) < 0 && errno == EAGAIN, "a socket pair end holds more, or was shut down");
  } else {
    if (it->inherited) return;
    int at = 0;
    for (int i = 0; i < it->nmsgs; i++) {
      unsigned char now[200];
      ssize_t got = recv(it->fd2, now, sizeof now, MSG_DONTWAIT);
      FX_TRUE(got == it->msglen[i] && !memcmp(now, it->data + at, (size_t)it->msglen[i]), "message %d of a socket pair differs", i);
      at += it->msglen[i];
    }
    unsigned char rest[8];
    FX_TRUE(recv(it->fd2, rest, sizeof rest, MSG_DONTWAIT) < 0, "a socket pair holds more messages");
  }
}

static void write_pages(struct item *it, int from, int count) {
  for (int p = from; p < from + count; p++) {
    it->seeds[p] = (unsigned char)(1 + pick(250));
    for (int i = 0; i < PAGE; i++) it->addr[p * PAGE + i] = pattern(it->seeds[p], i);
  }
}

static void make_mem(struct item *it) {
  it->pages = 1 + pick(MAXPAGES);
  int kind = pick(5);  /* anon private, anon shared, file private, file shared, memfd shared */
  it->shared = kind == 1 || kind == 3 || kind == 4;
  int fd = -1;
  if (kind >= 2) {
    if (kind == 4) {
      fd = FX_SYS(memfd_create("ckcont-random", 0));
    } else {
      snprintf(it->path, sizeof it->path, "%s/ckcont-random-%ld-%d-%d.map", dir, seed_arg, (int)getpid(), nitems);
      fd = FX_SYS(open(it->path, O_RDWR | O_CREAT | O_TRUNC, 0600));
    }
    unsigned char page[PAGE];
    for (int p = 0; p < it->pages; p++) {
      it->file_seeds[p] = (unsigned char)(1 + pick(250));
      for (int i = 0; i < PAGE; i++) page[i] = pattern(it->file_seeds[p], i);
      if (write(fd, page, PAGE) != PAGE) fx_setup_fail("write mapped file");
    }
    memcpy(it->seeds, it->file_seeds, sizeof it->seeds);
  }
  int flags = (it->shared ? MAP_SHARED : MAP_PRIVATE) | (fd < 0 ? MAP_ANONYMOUS : 0);
  it->addr = mmap(NULL, (size_t)it->pages * PAGE, PROT_READ | PROT_WRITE, flags, fd, 0);
  if (it->addr == MAP_FAILED) fx_setup_fail("mmap");
  if (fd >= 0) close(fd);
  it->value = kind;
  it->prot = PROT_READ | PROT_WRITE;
  int count = pick(it->pages + 1);
  write_pages(it, pick(it->pages - count + 1), count);
  if (!pick(4)) {
    it->advice = pick(2) ? MADV_RANDOM : MADV_SEQUENTIAL;
    FX_SYS(madvise(it->addr, (size_t)it->pages * PAGE, it->advice));
  }
}

/* Later actions write private pages again (after forks: copy on write) or make a mapping
 * read-only. Shared mappings are written only before any fork. */
static void touch_mem(void) {
  for (int n = 0; n < nitems; n++) {
    struct item *it = &items[n];
    if (it->kind != K_MEM || it->shared || it->frozen || it->prot != (PROT_READ | PROT_WRITE) || pick(3)) continue;
    if (!pick(4)) {
      FX_SYS(mprotect(it->addr, (size_t)it->pages * PAGE, PROT_READ));
      it->prot = PROT_READ;
    } else {
      write_pages(it, pick(it->pages), 1);
    }
  }
}

/* The VmFlags of the mapping that holds `at`: the kernel merges a new mapping with a
 * neighbour of the same kind, so one may not start where it was made. */
static void vm_flags_at(const void *at, char *out, size_t size) {
  FILE *f = fopen("/proc/self/smaps", "r");
  char line[512];
  int inside = 0;
  out[0] = 0;
  while (f && fgets(line, sizeof line, f)) {
    unsigned long start, end;
    if (sscanf(line, "%lx-%lx ", &start, &end) == 2 && strchr(line, '-') < strchr(line, ' ')) {
      inside = (unsigned long)at >= start && (unsigned long)at < end;
    } else if (inside && !strncmp(line, "VmFlags:", 8)) {
      line[strcspn(line, "\n")] = 0;
      snprintf(out, size, "%s", line + 8);
      break;
    }
  }
  if (f) fclose(f);
}

static void check_mem(struct item *it) {
  size_t bad = 0;
  for (int p = 0; p < it->pages; p++)
    for (int i = 0; i < PAGE; i++) bad += it->addr[p * PAGE + i] != pattern(it->seeds[p], i);
  if (fx_flip()) bad++;
  if (bad) fx_bad("mapping %p (kind %ld, %d pages): %zu bytes differ", (void *)it->addr, it->value, it->pages, bad);
  char vm[512];
  vm_flags_at(it->addr, vm, sizeof vm);
  FX_TRUE(strstr(vm, " rd") && (strstr(vm, " wr") != NULL) == (it->prot & PROT_WRITE ? 1 : 0), "mapping %p: VmFlags%s", (void *)it->addr, vm);
  FX_TRUE((strstr(vm, " sh") != NULL) == it->shared, "mapping %p: shared or not: VmFlags%s", (void *)it->addr, vm);
  if (it->advice) FX_TRUE(strstr(vm, it->advice == MADV_RANDOM ? " rr" : " sr") != NULL, "mapping %p lost its advice: VmFlags%s", (void *)it->addr, vm);
}

static void fdinfo_line(int fd, const char *key, char *out, size_t size) {
  char path[64], line[256];
  snprintf(path, sizeof path, "/proc/self/fdinfo/%d", fd);
  FILE *f = fopen(path, "r");
  out[0] = 0;
  while (f && fgets(line, sizeof line, f)) {
    if (!strncmp(line, key, strlen(key))) {
      size_t n = strlen(out);
      snprintf(out + n, size - n, "%s", line);
    }
  }
  if (f) fclose(f);
}

static void make_eventfd(struct item *it) {
  it->value = 1 + pick(1000);
  it->fd = renumber(FX_SYS(eventfd((unsigned)it->value, pick(2) ? EFD_NONBLOCK : 0)));
  it->flags = fl(it->fd);
}

static void check_eventfd(struct item *it) {
  FX_EQ("eventfd flags", it->flags, fl(it->fd));
  char line[256], want[64];
  fdinfo_line(it->fd, "eventfd-count:", line, sizeof line);
  snprintf(want, sizeof want, "eventfd-count: %16lx\n", it->value);
  FX_TRUE(!strcmp(line, want), "eventfd: %s, expected %s", line, want);
  if (it->inherited) return;
  uint64_t count = 0;
  FX_EQ("eventfd count read", it->value, read(it->fd, &count, 8) == 8 ? (long)count : -1L);
}

static void make_timerfd(struct item *it) {
  it->fd = renumber(FX_SYS(timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK)));
  it->value = 50 + pick(100);
  struct itimerspec spec = {{it->value, 0}, {it->value, 0}};
  FX_SYS(timerfd_settime(it->fd, 0, &spec, NULL));
}

static void check_timerfd(struct item *it) {
  struct itimerspec now;
  FX_EQ("timerfd interval", it->value, timerfd_gettime(it->fd, &now) == 0 ? (long)now.it_interval.tv_sec : -1L);
  FX_TRUE(now.it_value.tv_sec <= it->value && (now.it_value.tv_sec || now.it_value.tv_nsec), "timerfd: %ld s left of %ld", (long)now.it_value.tv_sec, it->value);
}

static void make_epoll(struct item *it) {
  it->fd = renumber(FX_SYS(epoll_create1(pick(2) ? EPOLL_CLOEXEC : 0)));
  for (int n = 0; n < nitems && it->len < 3; n++) {
    struct item *target = &items[n];
    if (target->kind != K_PIPE && target->kind != K_EVENTFD && target->kind != K_PAIR) continue;
    if (pick(2)) continue;
    struct epoll_event event = {.events = EPOLLIN | (pick(2) ? EPOLLET : 0), .data.u64 = (uint64_t)n};
    FX_SYS(epoll_ctl(it->fd, EPOLL_CTL_ADD, target->fd, &event));
    it->data[it->len++] = (unsigned char)n;
  }
  it->fdflags = fcntl(it->fd, F_GETFD);
}

/* "tfd: N events: E data: D  pos:P ino:I sdev:S": what is state, without pos/ino/sdev. */
static int by_text(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* ... sorted: the kernel lists the targets in the order of their files' addresses. */
static void strip_ino(char *text) {
  char out[1024] = "";
  char *lines[16];
  int count = 0;
  for (char *line = strtok(text, "\n"); line && count < 16; line = strtok(NULL, "\n")) {
    char *cut = strstr(line, " pos:");
    if (cut) *cut = 0;
    lines[count++] = line;
  }
  qsort(lines, (size_t)count, sizeof lines[0], by_text);
  for (int i = 0; i < count; i++) {
    strncat(out, lines[i], sizeof out - strlen(out) - 2);
    strcat(out, "\n");
  }
  strcpy(text, out);
}

/* The targets of an epoll as fdinfo shows them, without what is no state. */
static void epoll_targets(int fd, char *out, size_t size) {
  char text[1024];
  fdinfo_line(fd, "tfd:", text, sizeof text);
  strip_ino(text);
  snprintf(out, size, "%s", text);
}

static void check_epoll(struct item *it) {
  char now[300];
  epoll_targets(it->fd, now, sizeof now);
  FX_TRUE(!strcmp(now, it->path), "epoll targets: %s, were %s", now, it->path);
  FX_EQ("epoll fd flags", it->fdflags, fcntl(it->fd, F_GETFD));
}

static void make_inotify(struct item *it) {
  it->fd = renumber(FX_SYS(inotify_init1(IN_NONBLOCK)));
  it->value = IN_CREATE | (pick(2) ? IN_DELETE : 0) | (pick(2) ? IN_MODIFY : 0);
  FX_SYS(inotify_add_watch(it->fd, dir, (uint32_t)it->value));
}

static void drain_inotify(void) {
  char events[4096];
  for (int n = 0; n < nitems; n++)
    if (items[n].kind == K_INOTIFY)
      while (read(items[n].fd, events, sizeof events) > 0) {}
}

static void check_inotify(struct item *it) {
  char line[256], want[32];
  fdinfo_line(it->fd, "inotify wd:", line, sizeof line);
  snprintf(want, sizeof want, "mask:%lx ", it->value);
  FX_TRUE(strstr(line, want) != NULL, "inotify watch: %s, expected %s", line, want);
}

static const int signals_pool[] = {SIGUSR1, SIGUSR2, SIGHUP, SIGWINCH, SIGURG, 35, 36, 40};
static void on_signal(int s) { (void)s; }
static void on_info(int s, siginfo_t *i, void *c) { (void)s; (void)i; (void)c; }

static void make_signal(struct item *it) {
  it->num = signals_pool[pick(8)];
  for (int n = 0; n < nitems - 1; n++) if (items[n].kind == K_SIGNAL && items[n].num == it->num) { it->gone = 1; return; }
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  int action = pick(3);
  if (action == 0) sa.sa_handler = SIG_IGN;
  else if (action == 1) sa.sa_handler = on_signal;
  else { sa.sa_sigaction = on_info; sa.sa_flags = SA_SIGINFO; }
  sa.sa_flags |= (pick(2) ? SA_RESTART : 0) | (pick(2) ? SA_NODEFER : 0);
  sigaddset(&sa.sa_mask, signals_pool[pick(8)]);
  FX_SYS(sigaction(it->num, &sa, NULL));
  it->value = (long)(uintptr_t)sa.sa_handler;
  it->flags = sa.sa_flags;
  it->len = pick(2);  /* blocked */
  it->len2 = it->len && action && pick(2);  /* and pending */
  if (it->len) {
    sigset_t m;
    sigemptyset(&m);
    sigaddset(&m, it->num);
    FX_SYS(sigprocmask(SIG_BLOCK, &m, NULL));
  }
  if (it->len2) FX_SYS(syscall(SYS_tgkill, getpid(), syscall(SYS_gettid), it->num));
}

static void check_signal(struct item *it) {
  struct sigaction now;
  FX_SYS(sigaction(it->num, NULL, &now));
  FX_EQ("signal handler", it->value, (long)(uintptr_t)now.sa_handler);
  FX_EQ("signal flags", it->flags, now.sa_flags & ~0x04000000 /* SA_RESTORER */);
  sigset_t mask, pending;
  sigprocmask(SIG_SETMASK, NULL, &mask);
  sigpending(&pending);
  FX_EQ("signal blocked", it->len, sigismember(&mask, it->num));
  FX_EQ("signal pending", it->len2, sigismember(&pending, it->num));
}

static void make_altstack(struct item *it) {
  stack_t stack = {.ss_sp = altstack[pick(2)], .ss_size = 16384 + (size_t)pick(4) * 8192, .ss_flags = 0};
  FX_SYS(sigaltstack(&stack, NULL));
  it->addr = stack.ss_sp;
  it->value = (long)stack.ss_size;
  for (int n = 0; n < nitems - 1; n++) if (items[n].kind == K_ALTSTACK) items[n].gone = 1;
}

static void check_altstack(struct item *it) {
  stack_t now;
  FX_SYS(sigaltstack(NULL, &now));
  FX_TRUE(now.ss_sp == it->addr && (long)now.ss_size == it->value && now.ss_flags == 0, "alternate stack %p/%zu, was %p/%ld", now.ss_sp,
          now.ss_size, (void *)it->addr, it->value);
}

static void make_itimer(struct item *it) {
  it->num = pick(2) ? ITIMER_VIRTUAL : ITIMER_PROF;
  it->value = 100 + pick(100);
  struct itimerval value = {{it->value, 0}, {it->value, 0}};
  for (int n = 0; n < nitems - 1; n++) if (items[n].kind == K_ITIMER && items[n].num == it->num) items[n].gone = 1;
  FX_SYS(setitimer(it->num, &value, NULL));
}

static void check_itimer(struct item *it) {
  struct itimerval now;
  FX_EQ("interval timer", it->value, getitimer(it->num, &now) == 0 ? (long)now.it_interval.tv_sec : -1L);
}

static void make_ptimer(struct item *it) {
  struct sigevent event = {.sigev_notify = SIGEV_NONE};
  timer_t id;
  FX_SYS(timer_create(pick(2) ? CLOCK_MONOTONIC : CLOCK_REALTIME, &event, &id));
  it->value = 100 + pick(100);
  struct itimerspec spec = {{it->value, 0}, {it->value, 0}};
  FX_SYS(timer_settime(id, 0, &spec, NULL));
  it->addr = (unsigned char *)id;
}

static void check_ptimer(struct item *it) {
  struct itimerspec now;
  FX_EQ("POSIX timer interval", it->value, timer_gettime((timer_t)it->addr, &now) == 0 ? (long)now.it_interval.tv_sec : -1L);
}

static void make_rlimit(struct item *it) {
  int resources[] = {RLIMIT_NOFILE, RLIMIT_CORE, RLIMIT_STACK, RLIMIT_MSGQUEUE};
  it->num = resources[pick(4)];
  struct rlimit limit;
  FX_SYS(getrlimit(it->num, &limit));
  rlim_t soft = it->num == RLIMIT_NOFILE ? 1000 + (rlim_t)pick(500) : it->num == RLIMIT_STACK ? (8 << 20) + (rlim_t)pick(64) * 4096
                                                               : (rlim_t)(65536 + pick(1 << 20));
  if (limit.rlim_max != RLIM_INFINITY && soft > limit.rlim_max) soft = limit.rlim_max;
  limit.rlim_cur = soft;
  FX_SYS(setrlimit(it->num, &limit));
  it->value = (long)limit.rlim_cur;
  it->value2 = (long)limit.rlim_max;
  for (int n = 0; n < nitems - 1; n++) if (items[n].kind == K_RLIMIT && items[n].num == it->num) items[n].gone = 1;
}

static void check_rlimit(struct item *it) {
  struct rlimit now;
  FX_SYS(getrlimit(it->num, &now));
  FX_EQ("soft limit", it->value, (long)now.rlim_cur);
  FX_EQ("hard limit", it->value2, (long)now.rlim_max);
}

static void make_flock(struct item *it) {
  snprintf(it->path, sizeof it->path, "%s/ckcont-random-%ld-%d-%d.lock", dir, seed_arg, (int)getpid(), nitems);
  it->fd = renumber(FX_SYS(open(it->path, O_RDWR | O_CREAT | O_TRUNC, 0600)));
  it->value = pick(2) ? LOCK_EX : LOCK_SH;
  FX_SYS(flock(it->fd, (int)it->value));
}

static void check_flock(struct item *it) {
  pid_t checker = fork();
  if (checker == 0) {
    int fd = open(it->path, O_RDWR);
    _exit(fd >= 0 && flock(fd, LOCK_EX | LOCK_NB) < 0 && errno == EWOULDBLOCK ? 0 : 1);
  }
  int status = -1;
  waitpid(checker, &status, 0);
  FX_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0, "the flock on %s is gone", it->path);
}

static int port_of(int fd) {
  struct sockaddr_in address;
  socklen_t length = sizeof address;
  return getsockname(fd, (struct sockaddr *)&address, &length) == 0 ? ntohs(address.sin_port) : -1;
}

static void make_inet(struct item *it) {
  int tcp = it->kind == K_TCP;
  int fd = FX_SYS(socket(AF_INET, tcp ? SOCK_STREAM : SOCK_DGRAM, 0));
  int one = 1;
  if (pick(2)) FX_SYS(setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one));
  struct sockaddr_in address = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  FX_SYS(bind(fd, (struct sockaddr *)&address, sizeof address));
  if (tcp) FX_SYS(listen(fd, 1 + pick(16)));
  it->fd = renumber(fd);
  it->num = port_of(it->fd);
  it->flags = fl(it->fd);
}

static void check_inet(struct item *it) {
  FX_EQ("socket port", it->num, port_of(it->fd));
  FX_EQ("socket flags", it->flags, fl(it->fd));
  if (it->kind != K_TCP || it->inherited) return;
  int client = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in address = {.sin_family = AF_INET, .sin_port = htons((uint16_t)it->num), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  FX_EQ("connect to the listener", 0, connect(client, (struct sockaddr *)&address, sizeof address));
  struct pollfd waiting = {.fd = it->fd, .events = POLLIN};
  FX_EQ("the listener sees the client", 1, poll(&waiting, 1, 2000));
  int served = accept(it->fd, NULL, NULL);
  FX_TRUE(served >= 0, "accept: %s", strerror(errno));
  close(served);
  close(client);
}

static void make_mq(struct item *it) {
  snprintf(it->path, sizeof it->path, "/ckcont-random-%ld-%d-%d", seed_arg, (int)getpid(), nitems);
  struct mq_attr attr = {.mq_maxmsg = 4, .mq_msgsize = 64};
  mq_unlink(it->path);  /* one a killed run left */
  mqd_t q = mq_open(it->path, O_RDWR | O_CREAT | O_EXCL | (pick(2) ? O_NONBLOCK : 0), 0600, &attr);
  if (q < 0) fx_setup_fail("mq_open %s", it->path);
  it->fd = renumber(q);
  it->nmsgs = pick(4);
  int at = 0;
  for (int i = 0; i < it->nmsgs; i++) {
    it->msglen[i] = 1 + pick(60);
    fill(it->data + at, it->msglen[i]);
    it->data2[i] = (unsigned char)(i == 0 ? 5 : 1);  /* priorities: the first goes first either way */
    FX_SYS(mq_send(it->fd, (char *)it->data + at, (size_t)it->msglen[i], it->data2[i]));
    at += it->msglen[i];
  }
  it->flags = fl(it->fd);
}

static void check_mq(struct item *it) {
  struct mq_attr attr;
  FX_SYS(mq_getattr(it->fd, &attr));
  FX_EQ("messages waiting in a queue", it->nmsgs, attr.mq_curmsgs);
  FX_EQ("queue flags", it->flags, fl(it->fd));
  if (it->inherited) return;
  int at = 0;
  for (int i = 0; i < it->nmsgs; i++) {
    char now[64];
    unsigned priority = 0;
    struct timespec soon = {0, 0};
    ssize_t got = mq_timedreceive(it->fd, now, sizeof now, &priority, &soon);
    FX_TRUE(got == it->msglen[i] && !memcmp(now, it->data + at, (size_t)got) && priority == it->data2[i], "message %d of %s differs", i, it->path);
    at += it->msglen[i];
  }
}

/* A thread names itself (pthread_setname_np of another thread goes through /proc by its
 * tid, which a proc of another pid namespace does not know), then sleeps. */
static void *sleeper(void *name) {
  prctl(PR_SET_NAME, name);
  __atomic_store_n(&((char *)name)[31], 1, __ATOMIC_SEQ_CST);
  for (;;) pause();
  return NULL;
}

static void make_thread(struct item *it) {
  snprintf(it->path, 16, "rnd-%d", pick(1000));
  if (pthread_create(&it->thread, NULL, sleeper, it->path)) fx_setup_fail("pthread_create");
  while (!__atomic_load_n(&it->path[31], __ATOMIC_SEQ_CST)) usleep(100);
}

#include <dirent.h>
/* Whether a thread of this process is named `name` (/proc/self/task lists the host's ids). */
static int thread_named(const char *name) {
  DIR *tasks = opendir("/proc/self/task");
  int found = 0;
  for (struct dirent *entry; tasks && (entry = readdir(tasks));) {
    if (entry->d_name[0] == '.') continue;
    char path[300], comm[32] = "";
    snprintf(path, sizeof path, "/proc/self/task/%s/comm", entry->d_name);
    FILE *f = fopen(path, "r");
    if (f && fgets(comm, sizeof comm, f)) comm[strcspn(comm, "\n")] = 0;
    if (f) fclose(f);
    if (!strcmp(comm, name)) found = 1;
  }
  if (tasks) closedir(tasks);
  return found;
}

static void check_threads(void) {
  int expected = 1;
  for (int n = 0; n < nitems; n++) {
    struct item *it = &items[n];
    if (it->kind != K_THREAD || it->gone) continue;
    expected++;
    FX_TRUE(thread_named(it->path), "no thread is named %s", it->path);
  }
  char line[128];
  long threads = -1;
  FILE *f = fopen("/proc/self/status", "r");
  while (f && fgets(line, sizeof line, f)) if (!strncmp(line, "Threads:", 8)) threads = atol(line + 8);
  if (f) fclose(f);
  FX_EQ("threads", expected, threads);
}

/* A new process: it inherits everything made so far, which it only looks at. */
static void do_fork(int index) {
  if (nchildren == 4 || counters[0] >= 4) return;
  __atomic_add_fetch(&counters[0], 1, __ATOMIC_SEQ_CST);
  pid_t child = FX_SYS(fork());
  if (child) {
    children[nchildren++] = child;
    return;
  }
  is_root = 0;
  nchildren = 0;
  rng = rng * 6364136223846793005ULL + (uint64_t)index + 1;
  for (int n = 0; n < nitems; n++) {
    struct item *it = &items[n];
    it->inherited = 1;
    /* Not inherited by fork: pending signals, timers, threads. */
    if (it->kind == K_SIGNAL) it->len2 = 0;
    if (it->kind == K_ITIMER || it->kind == K_PTIMER || it->kind == K_THREAD) it->gone = 1;
    /* Shared mappings are written before any fork only. */
    if (it->kind == K_MEM && it->shared) it->frozen = 1;
  }
}

static void act(int step) {
  int kind = pick(NKINDS);
  if (kind == K_FORK) { do_fork(step); return; }
  if (kind == K_CWD || kind == K_UMASK || kind == K_NICE || kind == K_AFFINITY) {
    struct item *it = new_item(kind);
    if (!it) return;
    for (int n = 0; n < nitems - 1; n++) if (items[n].kind == kind) items[n].gone = 1;
    if (kind == K_CWD) { FX_SYS(chdir(pick(2) ? dir : "/")); it->path[0] = 0; if (!getcwd(it->path, sizeof it->path)) fx_setup_fail("getcwd"); }
    if (kind == K_UMASK) { it->value = pick(0100); umask((mode_t)it->value); }
    if (kind == K_NICE) { it->value = 1 + pick(10); FX_SYS(setpriority(PRIO_PROCESS, 0, (int)it->value)); }
    if (kind == K_AFFINITY) {
      cpu_set_t set;
      FX_SYS(sched_getaffinity(0, sizeof set, &set));
      int cpus = CPU_COUNT(&set), which = pick(cpus + 1);
      if (which < cpus) { int n = 0; for (int c = 0; c < CPU_SETSIZE; c++) if (CPU_ISSET(c, &set) && n++ != which) CPU_CLR(c, &set); }
      FX_SYS(sched_setaffinity(0, sizeof set, &set));
      it->value = CPU_COUNT(&set);
      memcpy(it->data, &set, sizeof it->data < sizeof set ? sizeof it->data : sizeof set);
    }
    return;
  }
  struct item *it = new_item(kind);
  if (!it) return;
  switch (kind) {
  case K_FILE: make_file(it); break;
  case K_PIPE: make_pipe(it); break;
  case K_PAIR: make_pair(it); break;
  case K_MEM: make_mem(it); break;
  case K_EVENTFD: make_eventfd(it); break;
  case K_TIMERFD: make_timerfd(it); break;
  case K_EPOLL: make_epoll(it); epoll_targets(it->fd, it->path, sizeof it->path); break;
  case K_INOTIFY: make_inotify(it); break;
  case K_SIGNAL: make_signal(it); break;
  case K_ALTSTACK: make_altstack(it); break;
  case K_ITIMER: make_itimer(it); break;
  case K_PTIMER: make_ptimer(it); break;
  case K_RLIMIT: make_rlimit(it); break;
  case K_FLOCK: make_flock(it); break;
  case K_TCP: case K_UDP: make_inet(it); break;
  case K_MQ: make_mq(it); break;
  case K_THREAD: make_thread(it); break;
  }
}

static void check(struct item *it) {
  if (it->gone) return;
  switch (it->kind) {
  case K_FILE: check_file(it); break;
  case K_PIPE: check_pipe(it); break;
  case K_PAIR: check_pair(it); break;
  case K_MEM: check_mem(it); break;
  case K_EVENTFD: check_eventfd(it); break;
  case K_TIMERFD: check_timerfd(it); break;
  case K_EPOLL: check_epoll(it); break;
  case K_INOTIFY: check_inotify(it); break;
  case K_SIGNAL: check_signal(it); break;
  case K_ALTSTACK: check_altstack(it); break;
  case K_ITIMER: check_itimer(it); break;
  case K_PTIMER: check_ptimer(it); break;
  case K_RLIMIT: check_rlimit(it); break;
  case K_FLOCK: check_flock(it); break;
  case K_TCP: case K_UDP: check_inet(it); break;
  case K_MQ: check_mq(it); break;
  case K_CWD: { char now[300] = ""; FX_TRUE(getcwd(now, sizeof now) && !strcmp(now, it->path), "cwd %s, was %s", now, it->path); break; }
  case K_UMASK: { mode_t now = umask(0); umask(now); FX_EQ("umask", it->value, (long)now); break; }
  case K_NICE: errno = 0; FX_EQ("nice", it->value, getpriority(PRIO_PROCESS, 0)); break;
  case K_AFFINITY: {
    cpu_set_t now;
    sched_getaffinity(0, sizeof now, &now);
    FX_TRUE(!memcmp(&now, it->data, sizeof it->data < sizeof now ? sizeof it->data : sizeof now), "CPU affinity changed (%d CPUs, was %ld)", CPU_COUNT(&now), it->value);
    break;
  }
  default: break;
  }
}

static void cleanup(void) {
  for (int n = 0; n < nitems; n++) {
    struct item *it = &items[n];
    if (it->inherited) continue;
    if ((it->kind == K_FILE || it->kind == K_FLOCK || it->kind == K_MEM) && it->path[0]) unlink(it->path);
    if (it->kind == K_MQ) mq_unlink(it->path);
  }
}

int main(int argc, char **argv) {
  fx_init("random");
  if (argc < 2) { errno = EINVAL; fx_setup_fail("usage: random SEED [DIR]"); }
  seed_arg = atol(argv[1]);
  /* A directory of its own: the inotify watches on it see only what this container does. */
  /* Made anew (mkdtemp): the pid is 1 in a pid namespace of its own, and a run that was
   * killed leaves its directory behind. */
  static char own_dir[4096];
  snprintf(own_dir, sizeof own_dir, "%s/ckcont-random-%ld-XXXXXX", fx_dir(argc > 2 ? argv[2] : NULL), seed_arg);
  if (!mkdtemp(own_dir)) fx_setup_fail("mkdtemp %s", own_dir);
  FX_SYS(chmod(own_dir, 0755));
  dir = own_dir;
  rng = 0x9e3779b97f4a7c15ULL ^ (uint64_t)seed_arg * 0xbf58476d1ce4e5b9ULL;
  if (!rng) rng = 1;
  fx_term_setup();
  counters = mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (counters == MAP_FAILED) fx_setup_fail("mmap");
  counters[0] = 1;
  int steps = 8 + pick(17);
  for (int step = 0; step < steps; step++) {
    act(step);
    touch_mem();
  }
  __atomic_add_fetch(&counters[1], 1, __ATOMIC_SEQ_CST);
  /* Once every process has made its items, no file is made any more: read the inotify
   * events they caused, as a watcher would (events left waiting make the dump refuse). */
  for (int i = 0; i < 5000 && counters[1] < counters[0]; i++) usleep(1000);
  drain_inotify();
  __atomic_add_fetch(&counters[2], 1, __ATOMIC_SEQ_CST);
  if (is_root) {
    for (int i = 0; i < 5000 && counters[2] < counters[0]; i++) usleep(1000);
    if (counters[2] < counters[0]) fx_setup_fail("%d of %d processes got ready", counters[2], counters[0]);
    fx_ready();
  }
  fx_wait_term();
  for (int i = 0; i < nchildren; i++) kill(children[i], SIGTERM);
  for (int i = 0; i < nchildren; i++) {
    int status = -1;
    while (waitpid(children[i], &status, 0) < 0 && errno == EINTR) {}
    FX_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0, "process %d ended with status %#x", (int)children[i], status);
  }
  for (int n = 0; n < nitems; n++) check(&items[n]);
  check_threads();
  cleanup();
  if (is_root) {
    /* Whatever is left in its own directory (socket paths, files of processes killed). */
    DIR *left = opendir(dir);
    for (struct dirent *entry; left && (entry = readdir(left));)
      if (strcmp(entry->d_name, ".") && strcmp(entry->d_name, "..")) unlink(fx_join(dir, entry->d_name));
    if (left) closedir(left);
    rmdir(dir);
  }
  if (!is_root) {
    if (fx_nbad) fx_print("FAIL random (pid %d): %s", (int)getpid(), fx_msg);
    _exit(fx_nbad ? 1 : 0);
  }
  fx_finish();
}
