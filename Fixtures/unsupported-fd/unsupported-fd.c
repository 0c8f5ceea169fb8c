/* unsupported-fd: holds an fd of a kind the engine is not expected to checkpoint, so a test can
 * check that the dump refuses cleanly, names the fd, and leaves the process running and
 * untouched (no --leave-running needed). The SIGTERM is then sent to this same, never
 * restored, process. It checks that the fd is still there, still the same kind (the
 * /proc/self/fd link is the same as before), and still works, then prints PASS.
 * usage: unsupported-fd [KIND]   KIND (default inotify):
 *   inotify   watches DIR (arg 2, $CKCONT_FIXTURE_DIR or /tmp). After: creating a file there yields IN_CREATE
 *   signalfd  for SIGUSR1 (blocked). After: raise(SIGUSR1) is read from it
 *   timerfd   CLOCK_MONOTONIC, every 10 ms. After: a read returns >= 1 expirations
 *   eventfd   counter 42. After: a read returns 42
 *   io_uring  io_uring_setup(4). After: the link only (exit 2 if io_uring is disabled)
 *   pidfd     pidfd_open(self). After: the link only
 *   deleted-exe /dev/null, run from a copy of this program in DIR that is then deleted (as an
 *             upgrade replaces a binary). After: the link
 *   seccomp-big /dev/null, and a seccomp filter of 4001 instructions (that allows everything),
 *             more than a restore installs. After: the link
 *   netns-address /dev/null, and a network namespace of its own whose loopback has an address
 *             besides 127.0.0.1 (10.9.9.9 on lo:1). After: the link
 *   fuse      /dev/fuse, a FUSE connection (not mounted): opened again it would be a new one.
 *             After: the link
 *   aio       /dev/null, and a kernel AIO context (io_setup(8)), whose ring is a mapping.
 *             After: the link, and io_destroy of the context succeeds
 *   netns-device /dev/null, and a network namespace of its own holding a device besides
 *             loopback (a persistent tun device, cktun0). After: the link
 *   pivot-root /dev/null, and a root filesystem of its own that the host does not see: an
 *             overlay mounted in the container's namespace (lower, upper and work dirs on a
 *             tmpfs there) on a directory made under DIR (which the caller removes: the host
 *             sees it as an empty directory), pivot_root into it. After: the link
 *   pid-proc  /dev/null, and a child that unshared pid and mount namespaces and forked a
 *             grandchild, pid 1 there, which mounted its own proc on /proc (unshare
 *             --mount-proc) and then moved to a mount namespace of its own: the proc its
 *             parent sees has no init to mount it again. After: the link
 *   subreaper-orphan /dev/null, and a child S (a subreaper in its own session) that holds an
 *             orphan M whose parent L made a session of its own, forked M and exited: M is in
 *             L's session, which the restore cannot give it under S. After: the link
 *   clone-vm  /dev/null, and a child made by clone(CLONE_VM) without CLONE_THREAD, sharing this
 *             address space (the child sleeps; it dies with this process). After: the link
 *   ctty      a new session whose controlling terminal is the pty slave DIR (arg 2), whose master
 *             the caller holds, outside the container (the fd is the slave).
 *             After: the link, and the session still has the terminal (TIOCGSID on it)
 *   tcp       an established TCP connection to itself over 127.0.0.1 (the fd is the client
 *             end) with more than 8 MiB unread at the server end (more than a dump keeps;
 *             both ends have forced buffers of 64 MiB). After: the link, every byte written,
 *             and a byte sent on it arrives at the other end (the dump that refused it took
 *             it back out of repair mode)
 *   unix      a unix datagram socketpair with a message waiting in the fd's end that carries a
 *             pipe's read end (SCM_RIGHTS) its sender closed since, which no process holds (kept
 *             only when a process holds it too, or when it is a file to open again). After: the
 *             link, the message and its descriptor, and a byte crosses the pair
 *   ebpf-filter a UDP socket with an eBPF program attached as its filter (SO_ATTACH_BPF), which
 *             the kernel cannot give back. After: the link, and the filter is still there
 *             (SO_ATTACH_BPF again succeeds only if the program loads; SO_GET_FILTER refuses)
 *   ping-waiting a ping socket (its namespace's ping_group_range opened) with the reply to
 *             its echo request waiting, which no one would send again. After: the link, and
 *             the reply reads
 *   hungup-tty the slave of a pseudo-terminal whose master was closed (hung up: every
 *             ioctl on it fails with EIO). After: the link, and a read says end of file
 *   pty-typed the master of a pseudo-terminal (its slave held too) into which "typed ahead\n"
 *             was written that nothing has read from the slave. After: the link, and the
 *             slave reads the line
 *   tcp-reset a TCP connection over 127.0.0.1 that its peer reset (SO_LINGER 0, closed): closed
 *             now, ECONNRESET or end of file to read. After: the link, and a read says so
 *   nofollow-overlay a file on an overlay (no file handles without nfs_export) opened
 *             O_RDWR|O_NOFOLLOW (as sem_open opens) and deleted; the overlay and its tmpfs are
 *             this process's, under DIR. After: a write reads back; the mounts and the
 *             directory are removed
 *   tcp-pending a TCP listener on 127.0.0.1 with a connection waiting to be accepted whose
 *             client already sent "request" (it waits in the embryo no descriptor reaches).
 *             After: the link, and the connection accepted reads "request"
 *   unix-dgram-unlinked a unix datagram socket connected to one bound to a path in DIR whose
 *             file was then unlinked, so that nothing can connect to that name again. After:
 *             the link, and a datagram sent without an address arrives
 *   unix-pending a unix listener (abstract name) with a connection waiting to be accepted whose
 *             client already sent "request" (the bytes wait where no descriptor reaches them).
 *             After: the link, and the connection accepted reads "request" */
#include "fix.h"
#include <fcntl.h>
#include <sys/inotify.h>
#include <sys/un.h>
#include <linux/if_tun.h>
#include <net/if.h>
#include <sys/ioctl.h>
#include <sys/signalfd.h>
#include <sys/timerfd.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <linux/io_uring.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <linux/bpf.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <sys/mount.h>
#include <time.h>
#include <linux/aio_abi.h>

static char link0[256];
static char overlay_root[4096]; /* nofollow-overlay: the tmpfs under DIR holding the overlay */
static int other = -1;  /* tcp, unix: the other end of the connection */
static aio_context_t aio_context;  /* aio: the context io_setup made */
#define TCP_WAITING (24 << 20)
static size_t tcp_sent;  /* tcp: the bytes written, waiting in the connection */

/* The child of clone-vm: sleeps until its parent dies. */
static int sharing_child(void *arg) {
  (void)arg;
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  for (;;) pause();
  return 0;
}
static void fdlink(int fd, char *out, size_t n) {
  char p[64]; snprintf(p, sizeof p, "/proc/self/fd/%d", fd);
  ssize_t r = readlink(p, out, n - 1);
  out[r < 0 ? 0 : r] = 0;
}

int main(int argc, char **argv) {
  fx_init("unsupported-fd");
  fx_term_setup();
  const char *kind = argc > 1 ? argv[1] : "inotify";
  const char *dir = fx_dir(argc > 2 ? argv[2] : NULL);
  char path[4096]; snprintf(path, sizeof path, "%s/ckcont-unsupported-fd-XXXXXX", dir);
  int fd = -1;
  if (!strcmp(kind, "inotify")) {
    fd = FX_SYS(inotify_init1(IN_NONBLOCK));
    FX_SYS(inotify_add_watch(fd, dir, IN_CREATE));
  } else if (!strcmp(kind, "signalfd")) {
    sigset_t m; sigemptyset(&m); sigaddset(&m, SIGUSR1);
    FX_SYS(sigprocmask(SIG_BLOCK, &m, NULL));
    fd = FX_SYS(signalfd(-1, &m, SFD_NONBLOCK));
  } else if (!strcmp(kind, "timerfd")) {
    fd = FX_SYS(timerfd_create(CLOCK_MONOTONIC, 0));
    struct itimerspec it = {{0, 10000000}, {0, 10000000}};
    FX_SYS(timerfd_settime(fd, 0, &it, NULL));
  } else if (!strcmp(kind, "eventfd")) {
    fd = FX_SYS(eventfd(42, EFD_NONBLOCK));
  } else if (!strcmp(kind, "io_uring")) {
    struct io_uring_params p; memset(&p, 0, sizeof p);
    fd = FX_SYS(syscall(SYS_io_uring_setup, 4, &p));
  } else if (!strcmp(kind, "pidfd")) {
    fd = FX_SYS(syscall(SYS_pidfd_open, getpid(), 0));
  } else if (!strcmp(kind, "deleted-exe")) {
    if (!getenv("CKCONT_DELETED_EXE")) {
      /* Copy this program, run the copy (which deletes itself), in this same process. */
      int from = FX_SYS(open("/proc/self/exe", O_RDONLY));
      int to = FX_SYS(mkstemp(path));
      char block[65536];
      for (ssize_t n; (n = read(from, block, sizeof block)) > 0;)
        if (write(to, block, (size_t)n) != n) fx_setup_fail("copy to %s", path);
      FX_SYS(fchmod(to, 0755));
      close(to);
      close(from);
      setenv("CKCONT_DELETED_EXE", path, 1);
      execv(path, argv);
      fx_setup_fail("execv %s", path);
    }
    FX_SYS(unlink(getenv("CKCONT_DELETED_EXE")));
    fd = FX_SYS(open("/dev/null", O_RDWR));
  } else if (!strcmp(kind, "seccomp-big")) {
    fd = FX_SYS(open("/dev/null", O_RDWR));
    static struct sock_filter program[4001];
    for (int i = 0; i < 4000; i++) program[i] = (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS, 0);
    program[4000] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW);
    struct sock_fprog fprog = {.len = 4001, .filter = program};
    FX_SYS(prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0));
    FX_SYS(syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &fprog));
  } else if (!strcmp(kind, "netns-address")) {
    fd = FX_SYS(open("/dev/null", O_RDWR));
    FX_SYS(unshare(CLONE_NEWNET));
    int control = FX_SYS(socket(AF_INET, SOCK_DGRAM, 0));
    struct ifreq request;
    memset(&request, 0, sizeof request);
    snprintf(request.ifr_name, sizeof request.ifr_name, "lo");
    FX_SYS(ioctl(control, SIOCGIFFLAGS, &request));
    request.ifr_flags |= IFF_UP;
    FX_SYS(ioctl(control, SIOCSIFFLAGS, &request));
    memset(&request, 0, sizeof request);
    snprintf(request.ifr_name, sizeof request.ifr_name, "lo:1");
    struct sockaddr_in *address = (struct sockaddr_in *)&request.ifr_addr;
    address->sin_family = AF_INET;
    address->sin_addr.s_addr = inet_addr("10.9.9.9");
    FX_SYS(ioctl(control, SIOCSIFADDR, &request));
    close(control);
  } else if (!strcmp(kind, "netns-device")) {
    fd = FX_SYS(open("/dev/null", O_RDWR));
    FX_SYS(unshare(CLONE_NEWNET));
    int tun = FX_SYS(open("/dev/net/tun", O_RDWR));
    struct ifreq request;
    memset(&request, 0, sizeof request);
    request.ifr_flags = IFF_TUN | IFF_NO_PI;
    snprintf(request.ifr_name, sizeof request.ifr_name, "cktun0");
    FX_SYS(ioctl(tun, TUNSETIFF, &request));
    FX_SYS(ioctl(tun, TUNSETPERSIST, 1));
    close(tun);
  } else if (!strcmp(kind, "aio")) {
    fd = FX_SYS(open("/dev/null", O_RDWR));
    FX_SYS(syscall(SYS_io_setup, 8, &aio_context));
  } else if (!strcmp(kind, "fuse")) {
    /* A FUSE connection not mounted yet: opened again it would be another one. */
    fd = FX_SYS(open("/dev/fuse", O_RDWR));
  } else if (!strcmp(kind, "pivot-root")) {
    fd = FX_SYS(open("/dev/null", O_RDWR));
    char root[4096], old[4400];
    snprintf(root, sizeof root, "%s/ckcont-pivot-%d-%ld", dir, (int)getpid(), (long)time(NULL));
    FX_SYS(mkdir(root, 0755));
    FX_SYS(mount("tmpfs", root, "tmpfs", 0, "size=1m"));
    char layers[12400], merged[4200];
    snprintf(layers, sizeof layers, "lowerdir=%s/lower,upperdir=%s/upper,workdir=%s/work", root, root, root);
    const char *parts[] = {"lower", "upper", "work", "merged"};
    for (int i = 0; i < 4; i++) {
      snprintf(merged, sizeof merged, "%s/%s", root, parts[i]);
      FX_SYS(mkdir(merged, 0755));
    }
    FX_SYS(mount("overlay", merged, "overlay", 0, layers));
    snprintf(old, sizeof old, "%s/old", merged);
    FX_SYS(mkdir(old, 0755));
    FX_SYS(syscall(SYS_pivot_root, merged, old));
    FX_SYS(chdir("/"));
  } else if (!strcmp(kind, "nofollow-overlay")) {
    snprintf(overlay_root, sizeof overlay_root, "%s/ckcont-overlay-%d-%ld", dir, (int)getpid(), (long)time(NULL));
    FX_SYS(mkdir(overlay_root, 0755));
    FX_SYS(mount("tmpfs", overlay_root, "tmpfs", 0, "size=1m"));
    char layers[12400], part[4200];
    snprintf(layers, sizeof layers, "lowerdir=%s/lower,upperdir=%s/upper,workdir=%s/work", overlay_root, overlay_root,
             overlay_root);
    const char *parts[] = {"lower", "upper", "work", "merged"};
    for (int i = 0; i < 4; i++) {
      snprintf(part, sizeof part, "%s/%s", overlay_root, parts[i]);
      FX_SYS(mkdir(part, 0755));
    }
    FX_SYS(mount("overlay", part, "overlay", 0, layers));
    char file[4300];
    snprintf(file, sizeof file, "%s/semaphore", part);
    fd = FX_SYS(open(file, O_RDWR | O_CREAT | O_NOFOLLOW, 0600));
    FX_SYS(unlink(file));
  } else if (!strcmp(kind, "pid-proc")) {
    fd = FX_SYS(open("/dev/null", O_RDWR));
    int ready[2];
    FX_SYS(pipe(ready));
    if (FX_SYS(fork()) == 0) {
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (unshare(CLONE_NEWPID | CLONE_NEWNS) < 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0) _exit(2);
      if (fork() == 0) {
        if (mount("proc", "/proc", "proc", 0, NULL) < 0 || unshare(CLONE_NEWNS) < 0 || write(ready[1], "u", 1) != 1) _exit(2);
        sharing_child(NULL);
      }
      sharing_child(NULL);
    }
    char u;
    if (read(ready[0], &u, 1) != 1) fx_setup_fail("the pid child with its proc");
  } else if (!strcmp(kind, "subreaper-orphan")) {
    fd = FX_SYS(open("/dev/null", O_RDWR));
    int ready[2];
    FX_SYS(pipe(ready));
    if (FX_SYS(fork()) == 0) {
      /* S: a subreaper in a session of its own. L, a daemon in its own session, forks M and
       * exits: M falls to S, not to the init, and stays in L's session. */
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (setsid() < 0 || prctl(PR_SET_CHILD_SUBREAPER, 1) < 0) _exit(2);
      pid_t leader = fork();
      if (leader == 0) {
        if (setsid() < 0) _exit(2);
        if (fork() == 0) {
          if (write(ready[1], "m", 1) != 1) _exit(2);
          for (;;) pause();
        }
        _exit(0);
      }
      if (waitpid(leader, NULL, 0) != leader) _exit(2);
      sharing_child(NULL);
    }
    char m;
    if (read(ready[0], &m, 1) != 1) fx_setup_fail("the orphan of the subreaper");
  } else if (!strcmp(kind, "clone-vm")) {
    fd = FX_SYS(open("/dev/null", O_RDWR));
    static char stack[64 << 10];
    FX_SYS(clone(sharing_child, stack + sizeof stack, CLONE_VM | SIGCHLD, NULL));
  } else if (!strcmp(kind, "ctty")) {
    if (getsid(0) != getpid()) FX_SYS(setsid());
    fd = FX_SYS(open(dir, O_RDWR));   /* without O_NOCTTY: becomes the terminal */
    FX_SYS(ioctl(fd, TIOCSCTTY, 0));
  } else if (!strcmp(kind, "tcp")) {
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t n = sizeof a;
    int listener = FX_SYS(socket(AF_INET, SOCK_STREAM, 0));
    FX_SYS(bind(listener, (struct sockaddr *)&a, sizeof a));
    FX_SYS(listen(listener, 1));
    FX_SYS(getsockname(listener, (struct sockaddr *)&a, &n));
    /* Buffers far beyond the default, so that more than ckcont keeps (8 MiB) waits. */
    int big = 64 << 20;
    FX_SYS(setsockopt(listener, SOL_SOCKET, SO_RCVBUFFORCE, &big, sizeof big));
    fd = FX_SYS(socket(AF_INET, SOCK_STREAM, 0));
    FX_SYS(setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &big, sizeof big));
    FX_SYS(connect(fd, (struct sockaddr *)&a, sizeof a));
    other = FX_SYS(accept(listener, NULL, NULL));
    close(listener);
    static char block[TCP_WAITING];
    int flags = FX_SYS(fcntl(fd, F_GETFL));
    FX_SYS(fcntl(fd, F_SETFL, flags | O_NONBLOCK));
    for (ssize_t n; tcp_sent < sizeof block && (n = write(fd, block + tcp_sent, sizeof block - tcp_sent)) > 0;) tcp_sent += (size_t)n;
    FX_SYS(fcntl(fd, F_SETFL, flags));
    /* On loopback the bytes cross at once; a slow machine gets two seconds. */
    int waiting = 0;
    for (int i = 0; i < 200 && waiting <= (8 << 20); i++) {
      usleep(10000);
      FX_SYS(ioctl(other, FIONREAD, &waiting));
    }
    if (waiting <= (8 << 20)) { errno = ENOBUFS; fx_setup_fail("only %d bytes wait at the receiver", waiting); }
  } else if (!strcmp(kind, "unix")) {
    int pair[2];
    FX_SYS(socketpair(AF_UNIX, SOCK_DGRAM, 0, pair));
    fd = pair[0];
    other = pair[1];
    int ends[2];
    FX_SYS(pipe(ends));
    close(ends[1]);
    int passed = ends[0];
    char control[CMSG_SPACE(sizeof(int))] = {0};
    struct iovec vector = {"waiting", 7};
    struct msghdr message = {.msg_iov = &vector, .msg_iovlen = 1, .msg_control = control, .msg_controllen = sizeof control};
    struct cmsghdr *header = CMSG_FIRSTHDR(&message);
    header->cmsg_level = SOL_SOCKET;
    header->cmsg_type = SCM_RIGHTS;
    header->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(header), &passed, sizeof(int));
    FX_SYS(sendmsg(other, &message, 0));
    close(passed);
  } else if (!strcmp(kind, "ebpf-filter")) {
    fd = FX_SYS(socket(AF_INET, SOCK_DGRAM, 0));
    /* r0 = -1 (keep the whole packet); exit */
    struct bpf_insn program[] = {
        {.code = BPF_ALU64 | BPF_MOV | BPF_K, .dst_reg = 0, .imm = -1},
        {.code = BPF_JMP | BPF_EXIT},
    };
    union bpf_attr load = {0};
    load.prog_type = BPF_PROG_TYPE_SOCKET_FILTER;
    load.insns = (uint64_t)(uintptr_t)program;
    load.insn_cnt = 2;
    load.license = (uint64_t)(uintptr_t)"GPL";
    int loaded = FX_SYS(syscall(SYS_bpf, BPF_PROG_LOAD, &load, sizeof load));
    FX_SYS(setsockopt(fd, SOL_SOCKET, SO_ATTACH_BPF, &loaded, sizeof loaded));
    close(loaded);
  } else if (!strcmp(kind, "ping-waiting")) {
    int range = FX_SYS(open("/proc/sys/net/ipv4/ping_group_range", O_WRONLY));
    FX_SYS(write(range, "0 2147483647", 12));
    close(range);
    fd = FX_SYS(socket(AF_INET, SOCK_DGRAM, IPPROTO_ICMP));
    struct sockaddr_in to = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    unsigned char request[8] = {8 /* echo request */};
    FX_SYS(sendto(fd, request, sizeof request, 0, (struct sockaddr *)&to, sizeof to));
    usleep(20000);
  } else if (!strcmp(kind, "tcp-reset")) {
    int listener = FX_SYS(socket(AF_INET, SOCK_STREAM, 0));
    struct sockaddr_in at = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    FX_SYS(bind(listener, (struct sockaddr *)&at, sizeof at));
    FX_SYS(listen(listener, 1));
    socklen_t length = sizeof at;
    FX_SYS(getsockname(listener, (struct sockaddr *)&at, &length));
    fd = FX_SYS(socket(AF_INET, SOCK_STREAM, 0));
    FX_SYS(connect(fd, (struct sockaddr *)&at, sizeof at));
    int accepted = FX_SYS(accept(listener, NULL, NULL));
    struct linger abort_it = {.l_onoff = 1, .l_linger = 0};
    FX_SYS(setsockopt(accepted, SOL_SOCKET, SO_LINGER, &abort_it, sizeof abort_it));
    close(accepted);
    close(listener);
    usleep(20000);
  } else if (!strcmp(kind, "unix-pending")) {
    struct sockaddr_un name = {.sun_family = AF_UNIX};
    int length = snprintf(name.sun_path + 1, sizeof name.sun_path - 1, "ckcont-unsupported-%d", (int)getpid());
    socklen_t size = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + length);
    fd = FX_SYS(socket(AF_UNIX, SOCK_STREAM, 0));
    FX_SYS(bind(fd, (struct sockaddr *)&name, size));
    FX_SYS(listen(fd, 2));
    other = FX_SYS(socket(AF_UNIX, SOCK_STREAM, 0));
    FX_SYS(connect(other, (struct sockaddr *)&name, size));
    FX_SYS(send(other, "request", 7, 0));
  } else if (!strcmp(kind, "tcp-pending")) {
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t n = sizeof a;
    fd = FX_SYS(socket(AF_INET, SOCK_STREAM, 0));
    FX_SYS(bind(fd, (struct sockaddr *)&a, sizeof a));
    FX_SYS(listen(fd, 2));
    FX_SYS(getsockname(fd, (struct sockaddr *)&a, &n));
    other = FX_SYS(socket(AF_INET, SOCK_STREAM, 0));
    FX_SYS(connect(other, (struct sockaddr *)&a, sizeof a));
    FX_SYS(send(other, "request", 7, 0));
    usleep(20000);
  } else if (!strcmp(kind, "unix-dgram-unlinked")) {
    struct sockaddr_un name = {.sun_family = AF_UNIX};
    snprintf(name.sun_path, sizeof name.sun_path, "%s/ckcont-unsupported-dgram-%d.sock", dir, (int)getpid());
    unlink(name.sun_path);
    other = FX_SYS(socket(AF_UNIX, SOCK_DGRAM, 0));
    FX_SYS(bind(other, (struct sockaddr *)&name, sizeof name));
    fd = FX_SYS(socket(AF_UNIX, SOCK_DGRAM, 0));
    FX_SYS(connect(fd, (struct sockaddr *)&name, sizeof name));
    FX_SYS(unlink(name.sun_path));
  } else if (!strcmp(kind, "pty-typed")) {
    fd = FX_SYS(posix_openpt(O_RDWR | O_NOCTTY));
    FX_SYS(unlockpt(fd));
    other = FX_SYS(open(ptsname(fd), O_RDWR | O_NOCTTY));
    FX_SYS(write(fd, "typed ahead\n", 12));
    usleep(20000);
  } else if (!strcmp(kind, "hungup-tty")) {
    int master = FX_SYS(posix_openpt(O_RDWR | O_NOCTTY));
    FX_SYS(unlockpt(master));
    fd = FX_SYS(open(ptsname(master), O_RDWR | O_NOCTTY));
    close(master);
  } else { errno = EINVAL; fx_setup_fail("usage: unsupported-fd [inotify|signalfd|timerfd|eventfd|io_uring|aio|pidfd|deleted-exe|seccomp-big|netns-address|netns-device|pivot-root|pid-proc|clone-vm|ctty|tcp|unix|ebpf-filter|ping-waiting|hungup-tty|pty-typed|tcp-reset|unix-dgram-unlinked|tcp-pending] [DIR]"); }
  fdlink(fd, link0, sizeof link0);

  fx_ready();
  fx_wait_term();

  char now[256]; fdlink(fd, now, sizeof now);
  if (fx_flip()) now[0] ^= 1;
  FX_TRUE(!strcmp(link0, now), "fd %d: expected \"%s\", now \"%s\"", fd, link0, now);
  union { struct inotify_event ev; struct signalfd_siginfo si; uint64_t u; char b[4096]; } u;
  memset(&u, 0, sizeof u);
  if (!strcmp(kind, "inotify")) {
    int f = mkstemp(path);                       /* the event to be seen */
    if (f < 0) fx_setup_fail("create %s", path);
    close(f); unlink(path);
    ssize_t n = read(fd, &u, sizeof u);
    FX_TRUE(n >= (ssize_t)sizeof u.ev && (u.ev.mask & IN_CREATE), "inotify: no IN_CREATE event (read %zd, mask %#x)", n, u.ev.mask);
  } else if (!strcmp(kind, "signalfd")) {
    raise(SIGUSR1);
    ssize_t n = read(fd, &u, sizeof u.si);
    FX_TRUE(n == sizeof u.si && u.si.ssi_signo == SIGUSR1, "signalfd: read %zd, signo %u", n, u.si.ssi_signo);
  } else if (!strcmp(kind, "timerfd")) {
    ssize_t n = read(fd, &u.u, 8);
    FX_TRUE(n == 8 && u.u >= 1, "timerfd: read %zd, expirations %llu", n, (unsigned long long)u.u);
  } else if (!strcmp(kind, "aio")) {
    FX_TRUE(syscall(SYS_io_destroy, aio_context) == 0, "aio: io_destroy of the context: %s", strerror(errno));
  } else if (!strcmp(kind, "eventfd")) {
    ssize_t n = read(fd, &u.u, 8);
    FX_TRUE(n == 8 && u.u == 42, "eventfd: read %zd, value %llu", n, (unsigned long long)u.u);
  } else if (!strcmp(kind, "tcp") || !strcmp(kind, "unix")) {
    if (!strcmp(kind, "tcp")) {
      size_t waiting = 0;
      for (ssize_t r; waiting < tcp_sent && (r = read(other, u.b, sizeof u.b)) > 0;) waiting += (size_t)r;
      FX_TRUE(waiting == tcp_sent, "tcp: %zu of the %zu bytes waiting arrived", waiting, tcp_sent);
    }
    ssize_t n = write(fd, "x", 1);
    FX_TRUE(n == 1 && read(other, u.b, 1) == 1 && u.b[0] == 'x', "%s: a byte did not cross the connection", kind);
    if (!strcmp(kind, "unix")) {
      char control[CMSG_SPACE(sizeof(int))];
      struct iovec vector = {u.b, sizeof u.b};
      struct msghdr message = {.msg_iov = &vector, .msg_iovlen = 1, .msg_control = control, .msg_controllen = sizeof control};
      ssize_t got = recvmsg(fd, &message, 0);
      FX_TRUE(got == 7 && CMSG_FIRSTHDR(&message) != NULL, "unix: the waiting message or its descriptor is gone");
    }
  } else if (!strcmp(kind, "nofollow-overlay")) {
    char got[8] = "";
    FX_TRUE(pwrite(fd, "sem", 3, 0) == 3 && pread(fd, got, 3, 0) == 3 && !memcmp(got, "sem", 3),
            "nofollow-overlay: the deleted file no longer reads back what was written");
    char merged[4200];
    snprintf(merged, sizeof merged, "%s/merged", overlay_root);
    close(fd);
    umount2(merged, MNT_DETACH);
    umount2(overlay_root, MNT_DETACH);
    rmdir(overlay_root);
  } else if (!strcmp(kind, "unix-pending") || !strcmp(kind, "tcp-pending")) {
    int accepted = accept(fd, NULL, NULL);
    ssize_t got = accepted < 0 ? -1 : recv(accepted, u.b, sizeof u.b, MSG_DONTWAIT);
    FX_TRUE(got == 7 && !memcmp(u.b, "request", 7), "%s: the waiting connection read %zd bytes", kind, got);
  } else if (!strcmp(kind, "unix-dgram-unlinked")) {
    ssize_t got = send(fd, "x", 1, 0) == 1 ? recv(other, u.b, sizeof u.b, MSG_DONTWAIT) : -1;
    FX_TRUE(got == 1 && u.b[0] == 'x', "unix-dgram-unlinked: a datagram did not arrive (%zd)", got);
  } else if (!strcmp(kind, "tcp-reset")) {
    ssize_t got = read(fd, u.b, 1);
    FX_TRUE(got == 0 || (got < 0 && errno == ECONNRESET), "tcp-reset: a read got %zd (%s)", got, strerror(errno));
  } else if (!strcmp(kind, "pty-typed")) {
    ssize_t got = read(other, u.b, sizeof u.b);
    FX_TRUE(got == 12 && !memcmp(u.b, "typed ahead\n", 12), "pty-typed: the slave read %zd bytes", got);
  } else if (!strcmp(kind, "hungup-tty")) {
    FX_EQ("a read of the hung-up terminal", 0, read(fd, u.b, 1));
  } else if (!strcmp(kind, "ping-waiting")) {
    ssize_t got = recv(fd, u.b, sizeof u.b, MSG_DONTWAIT);
    FX_TRUE(got == 8 && u.b[0] == 0, "ping-waiting: the reply is gone (%zd bytes)", got);
  } else if (!strcmp(kind, "ebpf-filter")) {
    socklen_t length = 0;
    FX_TRUE(getsockopt(fd, SOL_SOCKET, SO_GET_FILTER, NULL, &length) < 0 && errno == EACCES,
            "ebpf-filter: SO_GET_FILTER no longer refuses: the filter is gone");
  } else if (!strcmp(kind, "ctty")) {
    pid_t sid = 0;
    int tty = open("/dev/tty", O_RDWR);
    FX_TRUE(tty >= 0 && ioctl(tty, TIOCGSID, &sid) == 0 && sid == getsid(0), "ctty: the session lost its terminal");
  }
  fx_finish();
}
