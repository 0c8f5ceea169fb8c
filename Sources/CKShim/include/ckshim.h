// ckshim: the few things ckcont must do in C.
//
// Swift cannot call variadic C functions (ptrace, prctl, ioctl, syscall), Glibc's Swift
// overlay hides the Linux-only declarations (clone3, pidfd_*, process_vm_readv, CLONE_*),
// and a child forked from the multi-threaded Swift process may run only raw system calls
// until it stops or execs. Each function here exists for one of those reasons.
#ifndef CKSHIM_H
#define CKSHIM_H

#include <stdint.h>
#include <stddef.h>
#include <sys/types.h>
#include <sys/uio.h>

// ---- ptrace (ptrace.c) ----
// Fixed-arity ptrace(2); returns the raw result (-1 with errno on failure).
long ck_ptrace(int request, pid_t pid, uintptr_t addr, uintptr_t data);

enum {
  CK_PTRACE_TRACEME = 0,
  CK_PTRACE_PEEKDATA = 2,
  CK_PTRACE_POKEDATA = 5,
  CK_PTRACE_CONT = 7,
  CK_PTRACE_KILL = 8,
  CK_PTRACE_SINGLESTEP = 9,
  CK_PTRACE_GETREGS = 12,
  CK_PTRACE_SETREGS = 13,
  CK_PTRACE_DETACH = 17,
  CK_PTRACE_SYSCALL = 24,
  CK_PTRACE_SETOPTIONS = 0x4200,
  CK_PTRACE_GETEVENTMSG = 0x4201,
  CK_PTRACE_GETSIGINFO = 0x4202,
  CK_PTRACE_GETREGSET = 0x4204,
  CK_PTRACE_SETREGSET = 0x4205,
  CK_PTRACE_SEIZE = 0x4206,
  CK_PTRACE_INTERRUPT = 0x4207,
  CK_PTRACE_LISTEN = 0x4208,
  CK_PTRACE_GETSIGMASK = 0x420a,
  CK_PTRACE_SETSIGMASK = 0x420b,
  CK_PTRACE_SECCOMP_GET_FILTER = 0x420c,
  CK_PTRACE_SECCOMP_GET_METADATA = 0x420d,
  CK_PTRACE_GET_RSEQ_CONFIGURATION = 0x420f,
  CK_PTRACE_GET_THREAD_AREA = 25,
  CK_PTRACE_SET_THREAD_AREA = 26,
};

// struct user_desc (asm/ldt.h): one GDT TLS entry of an i386 thread, its bit fields packed
// into `flags` as the kernel lays them out (seg_32bit bit 0, contents bits 1-2,
// read_exec_only 3, limit_in_pages 4, seg_not_present 5, useable 6, lm 7).
struct ck_user_desc {
  uint32_t entry_number;
  uint32_t base_addr;
  uint32_t limit;
  uint32_t flags;
};

// The code segment of i386 code (__USER32_CS): a thread seized with it runs 32-bit code.
enum { CK_I386_CODE_SEGMENT = 0x23 };

enum {
  CK_PTRACE_O_TRACESYSGOOD = 1,
  CK_PTRACE_O_TRACEFORK = 1 << 1,
  CK_PTRACE_O_TRACEVFORK = 1 << 2,
  CK_PTRACE_O_TRACECLONE = 1 << 3,
  CK_PTRACE_O_TRACEEXEC = 1 << 4,
  CK_PTRACE_O_TRACEEXIT = 1 << 6,
  CK_PTRACE_O_EXITKILL = 1 << 20,
  CK_PTRACE_O_SUSPEND_SECCOMP = 1 << 21,
  CK_PTRACE_EVENT_FORK = 1,
  CK_PTRACE_EVENT_CLONE = 3,
  CK_PTRACE_EVENT_EXIT = 6,
  CK_PTRACE_EVENT_STOP = 128,
};

// struct user_regs_struct of <sys/user.h> (x86_64), which Swift's Glibc module does not show.
struct ck_user_regs {
  uint64_t r15, r14, r13, r12, rbp, rbx, r11, r10, r9, r8, rax, rcx, rdx, rsi, rdi, orig_rax;
  uint64_t rip, cs, eflags, rsp, ss, fs_base, gs_base, ds, es, fs, gs;
};

// PTRACE_GET_RSEQ_CONFIGURATION's result.
struct ck_rseq_configuration {
  uint64_t rseq_abi_pointer;
  uint32_t rseq_abi_size;
  uint32_t signature;
  uint32_t flags;
  uint32_t pad;
};

// PTRACE_GETREGSET / PTRACE_SETREGSET with an iovec: returns the raw result and stores the
// length the kernel used in *len.
long ck_ptrace_regset(int request, pid_t tid, int note_type, void *buffer, size_t *len);

enum { CK_NT_PRSTATUS = 1, CK_NT_X86_XSTATE = 0x202 };

// The address of `syscall; int3` in our text. A task forked from us has the same bytes at
// the same address until it unmaps them: the first remote syscalls of a restore run there.
uintptr_t ck_syscall_gadget(void);

// waitpid(2) status decoding: the macros are not importable into Swift.
int ck_wifexited(int status);
int ck_wexitstatus(int status);
int ck_wifsignaled(int status);
int ck_wtermsig(int status);
int ck_wifstopped(int status);
int ck_wstopsig(int status);
enum { CK_WALL = 0x40000000 };

// ---- processes (process.c) ----
// fork(2) a child that asks for SIGKILL when its parent dies and then only waits in
// pause(2). Used to probe ptrace and process_vm_readv on a task of our own.
pid_t ck_spawn_idle_child(void);

// clone3(2) a child into the cgroup v2 directory `cgroup_fd` (CLONE_INTO_CGROUP) with
// the extra clone `flags` and, when set_tid_size > 0, the pids of `set_tid`. The child
// exits at once with status 0. Returns the child's pid or -errno.
long ck_clone3_exit_child(uint64_t flags, int cgroup_fd, const pid_t *set_tid, size_t set_tid_size);

// clone3(2) the first task of a restore: in new namespaces (`flags`), in the caller's
// cgroups, with `set_tid` pids (innermost namespace first). The child asks to be traced and
// stops itself with SIGSTOP (ptrace makes a pid-namespace init honour it); everything it
// becomes is then done to it by remote system calls. Returns the pid in our namespace or
// -errno.
long ck_clone3_traced_child(uint64_t flags, const pid_t *set_tid, size_t set_tid_size);

// Opens `path` with `flags` resolved under `dirfd` as its root (openat2 RESOLVE_IN_ROOT |
// RESOLVE_NO_MAGICLINKS); the descriptor or -errno.
int ck_open_in_root(int dirfd, const char *path, int flags);
// The file `fd` is open on, opened again by its file handle with `flags` (O_NOFOLLOW kept);
// the descriptor or -errno.
int ck_reopen_by_handle(int fd, int flags);
// 0 when the filesystem of the file `fd` is open on gives file handles, else -errno.
int ck_has_file_handle(int fd);
// get_robust_list(2) of thread `tid`: its robust futex list head and length (0 or -errno).
int ck_get_robust_list(pid_t tid, unsigned long *head, unsigned long *length);
// The compat (i386) robust list of a thread: compat get_robust_list through `int $0x80`.
// Returns 0 or -errno.
int ck_get_compat_robust_list(pid_t tid, uint32_t *head, uint32_t *length);
// ioprio_get/ioprio_set(2) of thread `tid` (IOPRIO_WHO_PROCESS): the priority, 0 or -errno.
// In C: glibc has no wrapper and syscall(2) is variadic.
int ck_ioprio_get(pid_t tid);
int ck_ioprio_set(pid_t tid, int priority);
// Sets the calling thread's fsuid and fsgid and raises its effective capabilities to its
// permitted ones (0 or -errno).
int ck_set_fs_ids(unsigned int uid, unsigned int gid);
int ck_pidfd_open(pid_t pid, unsigned int flags);
int ck_pidfd_getfd(int pidfd, int targetfd, unsigned int flags);
ssize_t ck_process_vm_readv(pid_t pid, const struct iovec *local, unsigned long liovcnt,
                            const struct iovec *remote, unsigned long riovcnt);
// process_vm_writev(2): the writable scratch area of a task being dumped.
ssize_t ck_process_vm_writev(pid_t pid, const struct iovec *local, unsigned long liovcnt,
                             const struct iovec *remote, unsigned long riovcnt);
// pipe2(2) and tee(2) are _GNU_SOURCE declarations Glibc's Swift overlay does not show.
int ck_pipe2(int fds[2], int flags);
ssize_t ck_tee(int fd_in, int fd_out, size_t len, unsigned int flags);
enum { CK_F_SETPIPE_SZ = 1031, CK_F_GETPIPE_SZ = 1032, CK_SPLICE_F_NONBLOCK = 2 };

// kcmp(2) KCMP_FILE: 0 when fd1 of pid1 and fd2 of pid2 are the same open file description.
int ck_kcmp_file(pid_t pid1, pid_t pid2, int fd1, int fd2);
// kcmp(KCMP_EPOLL_TFD): 0 when descriptor `fd1` of pid1 is the file of the `offset`-th watch
// of descriptor number `target` in epoll `epoll` of pid2.
int ck_kcmp_epoll_target(pid_t pid1, pid_t pid2, int fd1, int epoll, int target, int offset);
// kcmp(2) of a whole resource (CK_KCMP_VM, CK_KCMP_FILES, CK_KCMP_FS below): 0 when
// pid1 and pid2 share it.
int ck_kcmp(pid_t pid1, pid_t pid2, int type);
// open_by_handle_at(2) with a struct file_handle built from its parts (a flexible array
// member Swift cannot build): what an inotify watch's fdinfo names.
int ck_open_by_handle(int mount_fd, int handle_type, const unsigned char *handle, unsigned int handle_bytes, int flags);

// posix_spawn(3) of argv with stdin from in_fd (/dev/null for -1) and stdout/stderr onto out_fd/err_fd, every
// other descriptor closed (closefrom), default signal actions and an empty signal mask: a
// test's children must not inherit the runner's pipes or sockets. Returns the pid or -errno.
// `terminal` (or NULL): the path of a terminal that becomes the child's standard input and,
// in a session of its own, its controlling terminal.
pid_t ck_spawn(char *const argv[], char *const envp[], int in_fd, int out_fd, int err_fd, const char *terminal);

// fallocate(2), a _GNU_SOURCE declaration.
int ck_fallocate(int fd, int mode, int64_t offset, int64_t length);

// prctl(2), variadic in C.
int ck_prctl(int option, unsigned long a2, unsigned long a3, unsigned long a4, unsigned long a5);
enum { CK_PR_SET_CHILD_SUBREAPER = 36 };

// unshare(2) and setns(2) are hidden by Glibc's Swift overlay.
int ck_unshare(int flags);
int ck_setns(int fd, int nstype);
// tun/tap: TUNGETIFF (the device's name and flags; -EBADFD when attached to none),
// TUNSETIFF, and the settings below (TUNSET*/TUNGET*). Each returns 0 or -errno.
enum { CK_TUN_PERSIST = 1, CK_TUN_OWNER = 2, CK_TUN_GROUP = 3, CK_TUN_SNDBUF = 4, CK_TUN_VNETHDRSZ = 5 };
enum { CK_IFF_TUN = 0x0001, CK_IFF_TAP = 0x0002, CK_IFF_NO_PI = 0x1000, CK_IFF_VNET_HDR = 0x4000,
  CK_IFF_MULTI_QUEUE = 0x0100, CK_IFF_PERSIST = 0x0800 };
int ck_tun_get(int fd, char name[16], int *flags);
int ck_tun_attach(int fd, const char *name, int flags);
int ck_tun_set(int fd, int what, unsigned long value);
int ck_tun_get_int(int fd, int what, int *value);

// memfd_create(2), likewise hidden: a file in memory for a tool's input or output.
int ck_memfd_create(const char *name, unsigned int flags);
// gettid(2), likewise hidden: the calling thread's id.
pid_t ck_gettid(void);
// tgkill(2) from ckcont itself: -1 and errno on failure.
int ck_tgkill(pid_t tgid, pid_t tid, int signal);

enum {
  CK_CLONE_NEWTIME = 0x00000080,
  CK_CLONE_VM = 0x00000100,
  CK_CLONE_FS = 0x00000200,
  CK_CLONE_FILES = 0x00000400,
  CK_CLONE_SIGHAND = 0x00000800,
  CK_CLONE_THREAD = 0x00010000,
  CK_CLONE_SYSVSEM = 0x00040000,
  CK_CLONE_NEWNS = 0x00020000,
  CK_CLONE_NEWCGROUP = 0x02000000,
  CK_CLONE_NEWUTS = 0x04000000,
  CK_CLONE_NEWIPC = 0x08000000,
  CK_CLONE_NEWUSER = 0x10000000,
  CK_CLONE_NEWPID = 0x20000000,
  CK_CLONE_NEWNET = 0x40000000,
};

// kcmp(2) types (linux/kcmp.h), for ck_kcmp.
enum { CK_KCMP_FILE = 0, CK_KCMP_VM = 1, CK_KCMP_FILES = 2, CK_KCMP_FS = 3, CK_KCMP_EPOLL_TFD = 7 };

// ---- constants (ckconstants.h, checked in constants.c) ----
#include "ckconstants.h"

// ---- memory probes (memory.c) ----
// The PAGEMAP_SCAN ioctl (Linux 6.7) on /proc/<pid>/pagemap: the header of Debian's
// linux-libc-dev predates it, so its ABI is mirrored here and checked by size.
struct ck_page_region {
  uint64_t start;
  uint64_t end;
  uint64_t categories;
};

struct ck_pm_scan_arg {
  uint64_t size;
  uint64_t flags;
  uint64_t start;
  uint64_t end;
  uint64_t walk_end;
  uint64_t vec;
  uint64_t vec_len;
  uint64_t max_pages;
  uint64_t category_inverted;
  uint64_t category_mask;
  uint64_t category_anyof_mask;
  uint64_t return_mask;
};

enum {
  CK_PAGE_IS_WPALLOWED = 1 << 0,
  CK_PAGE_IS_WRITTEN = 1 << 1,
  CK_PAGE_IS_FILE = 1 << 2,
  CK_PAGE_IS_PRESENT = 1 << 3,
  CK_PAGE_IS_SWAPPED = 1 << 4,
  CK_PAGE_IS_PFNZERO = 1 << 5,
  CK_PAGE_IS_HUGE = 1 << 6,
  CK_PAGE_IS_SOFT_DIRTY = 1 << 7,
  CK_PAGE_IS_GUARD = 1 << 8,  // a guard region's page (MADV_GUARD_INSTALL), Linux 6.14+
  CK_PM_SCAN_WP_MATCHING = 1 << 0,
  CK_PM_SCAN_CHECK_WPASYNC = 1 << 1,
};

// ioctl(fd, PAGEMAP_SCAN, arg): returns the number of regions filled or -1/errno.
long ck_pagemap_scan(int pagemap_fd, struct ck_pm_scan_arg *arg);

// userfaultfd(2) then UFFDIO_API asking for `features`; on success returns the fd and
// stores the features the kernel granted; on failure returns -errno.
int ck_userfaultfd_api(int flags, uint64_t features, uint64_t *granted);

// Dirty tracking of another process's address space through its userfaultfd (taken with
// pidfd_getfd): UFFDIO_API with `features` (WP_ASYNC, WP_UNPOPULATED), UFFDIO_REGISTER of a
// range in write-protect mode, UFFDIO_WRITEPROTECT of a range. Each returns 0 or -errno.
int ck_uffd_api_features(int uffd, uint64_t features);
int ck_uffd_register_wp(int uffd, uint64_t start, uint64_t length);
int ck_uffd_writeprotect(int uffd, uint64_t start, uint64_t length);

// A userfaultfd of another process's address space (taken with pidfd_getfd), for restore:
// after UFFDIO_API (ck_uffd_api_features), UFFDIO_REGISTER of [start, start+length) for
// missing pages. 0 or -errno.
int ck_uffd_register_missing(int uffd, uint64_t start, uint64_t length);
// UFFDIO_COPY of `length` bytes from `source` (in this process) to `destination` (in the
// registered address space), into fresh pages that are not cleared first; loops over
// partial copies. 0 or -errno.
int ck_uffd_copy(int uffd, uint64_t destination, const void *source, uint64_t length);

enum {
  CK_UFFD_USER_MODE_ONLY = 1,
  CK_UFFD_FEATURE_WP_UNPOPULATED = 1 << 13,
  CK_UFFD_FEATURE_WP_ASYNC = 1 << 15,
};

// Post-copy (lazy migration): the events of a userfaultfd whose missing pages ckcont fills
// as they are touched. struct uffd_msg is a union; this is it flattened.
struct ck_uffd_event {
  uint8_t kind;      // CK_UFFD_EVENT_*
  uint64_t address;  // PAGEFAULT: the address touched
  uint64_t from, to, length;  // REMAP: the range moved
  uint64_t start, end;        // REMOVE, UNMAP: the range dropped
  int32_t ufd;       // FORK: the child's userfaultfd, now a descriptor of this process
};
// Reads one event: 1 when read, 0 when none waits (EAGAIN), -errno on failure.
int ck_uffd_read_event(int uffd, struct ck_uffd_event *event);
// UFFDIO_ZEROPAGE of one page (a page that never held data), waking its faulting threads;
// a page already there is only woken (UFFDIO_WAKE). 0 or -errno.
int ck_uffd_zeropage(int uffd, uint64_t address);
// UFFDIO_WAKE of one page. 0 or -errno.
int ck_uffd_wake(int uffd, uint64_t address);
// As ck_uffd_copy, but gives up with -EAGAIN while the address space changes (a fork,
// mremap, madvise or munmap whose event is not read yet: the copy waits for the reader,
// which is the caller), `*done` bytes copied so far.
int ck_uffd_copy_nowait(int uffd, uint64_t destination, const void *source, uint64_t length, uint64_t *done);
// ppoll for at most `nanoseconds` (negative: no limit), without a signal mask: poll's
// milliseconds are too coarse for the lazy pages' pause between faults, and ppoll is GNU
// (Glibc's module hides it).
struct pollfd;
int ck_poll_for(struct pollfd *fds, unsigned long count, long long nanoseconds);

// The guard of a lazy migration's receiver: a forked child that keeps a copy of every
// descriptor sent over *control (ck_send_fd: the restored processes' userfaultfds, so that
// their missing pages stay missing if the receiver dies), takes a message "c" + the cgroup
// directory to kill, and on the end of the stream before a message "d" kills that cgroup.
// Returns its pid or -errno.
pid_t ck_spawn_lazy_guard(int *control);

enum {
  CK_UFFD_EVENT_PAGEFAULT = 0x12,
  CK_UFFD_EVENT_FORK = 0x13,
  CK_UFFD_EVENT_REMAP = 0x14,
  CK_UFFD_EVENT_REMOVE = 0x15,
  CK_UFFD_EVENT_UNMAP = 0x16,
  // UFFD_FEATURE_EVENT_FORK | EVENT_REMAP | EVENT_REMOVE | EVENT_UNMAP: what a process does
  // with memory not yet filled (fork it, move it, drop it) is told before it takes effect.
  CK_UFFD_FEATURES_NONCOOPERATIVE = (1 << 1) | (1 << 2) | (1 << 3) | (1 << 6),
};

// ---- interruption (signals.c) ----
// Handlers for SIGINT, SIGTERM and SIGHUP that only record the signal, so a dump or restore
// can unwind through its cleanup. A signal handler must be a C function.
void ck_install_interrupt_handlers(void);
// The signal received since installation, or 0.
int ck_interrupting_signal(void);

// ---- sockets (sockets.c) ----
struct ck_socket_facts {
  int family, type, protocol, listening;
  // TCP: tcp_info.tcpi_state; a listener's backlog and connections waiting to be accepted.
  int tcp_state, backlog;
  // A listener: connections not yet accepted; any other socket: bytes (or the next
  // datagram's) waiting to be read (SIOCINQ).
  int waiting;
  unsigned char address[128];  // getsockname; address_length 0 when it failed
  unsigned int address_length;
  unsigned char peer[128];  // getpeername; peer_length 0 when not connected
  unsigned int peer_length;
  // A unix socket's SO_PEERCRED (pid in ckcont's pid namespace); pid 0 and uid/gid ~0 when
  // it carries none.
  int peer_pid;
  unsigned int peer_uid, peer_gid;
};
// Fills `facts` for socket `fd`; 0 or -errno.
int ck_socket_facts(int fd, struct ck_socket_facts *facts);
// A NETLINK_SOCK_DIAG socket in the network namespace `netns_fd` (-1: ckcont's own), made
// on a thread of its own (setns changes the calling thread). The fd, or -errno.
int ck_sock_diag_socket(int netns_fd);
// Sends `fd` over unix socket `socket` with SCM_RIGHTS (0 or -errno).
int ck_send_fd(int socket, int fd);
// ---- pseudo-terminals (tty.c) ----
enum { CK_TERMIOS2_SIZE = 44 };
struct ck_pty_facts {
  int index;             // TIOCGPTN (a master's), else -1
  int locked, packet;    // TIOCGPTLCK, TIOCGPKT (a master's)
  int session;           // TIOCGSID: the session it is the terminal of (0: none), in ckcont's pids
  int foreground;        // TIOCGPGRP: its foreground process group (0: none)
  int readable;          // FIONREAD: bytes waiting to be read through this side
  unsigned short window[4];  // rows, columns, x and y pixels
  unsigned char termios[CK_TERMIOS2_SIZE];  // struct termios2
};
// Reads the state of the terminal behind `fd` (`master`: a pty master, whose index, lock and
// packet mode are read too); 0 or -errno.
int ck_pty_facts(int fd, int master, struct ck_pty_facts *facts);
// Unlocks a new master (TIOCSPTLCK 0) and tells its index; 0 or -errno.
int ck_pty_open_master(int fd, int *index);
// Sets termios, window size and packet mode of the terminal behind `master`; 0 or -errno.
int ck_pty_apply(int master, const struct ck_pty_facts *facts);
// TIOCSPTLCK; 0 or -errno.
int ck_pty_lock(int master, int locked);
// Bytes typed into the terminal of `master` that wait to be read from its slave (whole
// lines in canonical mode), and in `devpts` the device of its devpts instance; 0 (and 0)
// when no slave can be opened to ask through (a locked master).
int ck_pty_typed_ahead(int master, unsigned long long *devpts);
// Reads what waits to be read from `master` (the programs' output) into `buffer`; returns
// the bytes read, and in `error` 0 or the -errno that stopped it (-E2BIG: more than
// `capacity` waited).
size_t ck_pty_take_output(int master, void *buffer, size_t capacity, int *error);
// What waits to be read from terminal descriptor `fd` (FIONREAD), or -errno.
int ck_pty_readable(int fd);
// Writes `bytes` into the slave of `master` with output processing off (they had it once),
// so that they wait in the master again; 0 or -errno.
int ck_pty_put_output(int master, const void *bytes, size_t length);

enum { CK_UNIX_ICONS = 256 };
// A unix socket as sock_diag tells it (which a descriptor alone does not: its peer).
struct ck_unix_diag {
  unsigned int type, state;
  unsigned char name[108];  // sun_path bytes (a leading NUL: an abstract name)
  unsigned int name_length;  // 0: unbound
  unsigned int peer;  // the peer's inode, 0 for none
  // A listener: connections waiting and the backlog; else bytes to read and bytes sent.
  unsigned int receive_queue, send_queue;
  // The kernel's sk_shutdown: 1 receiving shut down, 2 sending (shutdown(2) of this end,
  // or of the peer's other direction).
  unsigned int shutdown;
  // A socket bound to a path: the inode of the socket file bind(2) made (0: none).
  unsigned int file_inode;
  // A listener: the inodes of the clients whose connections wait to be accepted, in the
  // order accept(2) takes them (0: a client gone since), the first CK_UNIX_ICONS of
  // `icon_count`.
  unsigned int icons[CK_UNIX_ICONS];
  unsigned int icon_count;
};
// Asks about the unix socket with `inode`; 0, -ENOENT when there is none, or -errno.
int ck_unix_diag(int diag_fd, unsigned int inode, struct ck_unix_diag *out);

// ---- packet sockets (sockets.c) ----
enum { CK_PACKET_MEMBERSHIPS = 16 };
struct ck_packet_membership {
  int index;             // the link, by index in the socket's namespace
  unsigned int count;    // how many times it was added
  unsigned short type;   // PACKET_MR_*
  unsigned short length; // of address
  unsigned char address[32];
};
struct ck_packet_diag {
  unsigned int type;      // SOCK_RAW or SOCK_DGRAM
  unsigned int protocol;  // the ethertype it receives, host order (0: none)
  int index;              // the link it is bound to (0: every link)
  unsigned int version, reserve, copy_threshold, timestamp, flags;  // packet_diag_info
  int rings;              // an RX or TX ring is set up (mmap(2)ed by the program)
  int fanout;             // in a fanout group (its PACKET_FANOUT value in `fanout_value`)
  unsigned int fanout_value;
  int memberships;        // how many in `membership`, -1: more than CK_PACKET_MEMBERSHIPS
  struct ck_packet_membership membership[CK_PACKET_MEMBERSHIPS];
};
// What packet_diag says of the packet socket of `inode`, asked through `diag_fd` (a
// NETLINK_SOCK_DIAG socket of its namespace, used by no one else meanwhile: packet_diag
// answers only dumps, in several messages). 0, -ENOENT (not found) or -errno.
int ck_packet_diag(int diag_fd, unsigned int inode, struct ck_packet_diag *out);

// Announces `address` of the link `ifindex` with MAC `mac` where it is now: a gratuitous ARP
// (IPv4) or an unsolicited neighbour advertisement (IPv6). The socket it sent on, for the
// caller to close (closing a packet socket waits out an RCU grace period), or -errno.
int ck_announce_ipv4(int ifindex, const unsigned char mac[6], const unsigned char address[4]);
int ck_announce_ipv6(int ifindex, const unsigned char mac[6], const unsigned char address[16]);

// The messages waiting in a datagram or seqpacket socket, peeked one after another (with
// SO_PEEK_OFF, put back as it was) into `buffer`, their lengths into `lengths`. 0, -E2BIG
// (more than fit), -EBADMSG (one carries descriptors or credentials), or -errno. With
// `senders` (room for `max_messages` struct sockaddr_un, 110 bytes each), each message's
// sender address and its length too. A stream's waiting bytes come in pieces that end where
// descriptors are attached. Descriptors in flight (SCM_RIGHTS) come as ckcont's own copies
// (close-on-exec) into `fds` (at most `max_fds`, else -E2BIG), how many per message into
// `fd_counts`; the caller closes them.
int ck_peek_messages(int fd, void *buffer, size_t capacity, unsigned int *lengths, int max_messages, int *count,
                     void *senders, unsigned int *sender_lengths, int *fds, int max_fds, unsigned int *fd_counts);
// Sends `count` bytes with `fd_count` (1...253) descriptors attached (SCM_RIGHTS), without
// waiting: the bytes sent or -errno.
long ck_send_with_fds(int socket, const void *bytes, size_t count, const int *fds, int fd_count);

// An established TCP connection as TCP_REPAIR shows it (CRIU's tcp_stream): both queues'
// sequence numbers and bytes, the options negotiated, the timestamp and the window.
struct ck_tcp_state {
  unsigned int send_seq, receive_seq;
  unsigned int send_length, receive_length;
  unsigned int options;  // tcpi_options: TCPI_OPT_TIMESTAMPS 1, SACK 2, WSCALE 4
  unsigned int send_wscale, receive_wscale, mss, timestamp;
  unsigned int window[5];  // struct tcp_repair_window
  int state;               // tcpi_state: TCP_ESTABLISHED, or a closing one (FIN_WAIT1...)
};
// Puts socket `fd` into repair mode (it stays there: ck_tcp_repair_off takes it out) and
// reads its state; each queue's bytes (up to `capacity`) into its buffer. 0 or -errno
// (-E2BIG: a queue holds more than `capacity`). A FIN sent or received is left out of the
// sequence numbers (and of rcv_wup): the restore makes the connection without it, then
// sends it again.
int ck_tcp_repair_dump(int fd, struct ck_tcp_state *state, void *send_buffer, void *receive_buffer, size_t capacity);
// Takes socket `fd` out of repair mode and gives it SO_REUSEADDR back if it had it: the
// kernel clears it on the way out, and a connection without it that lingers after its process
// closed it (FIN_WAIT, LAST_ACK) keeps a new listener from binding the port.
int ck_tcp_repair_off(int fd, int reuse_address);
// TCP segments the socket `fd` has sent (tcp_info.tcpi_segs_out): none for a socket never
// connected. -errno on failure.
long ck_tcp_segments_out(int fd);
// tcp_info.tcpi_state of socket `fd` (TCP_ESTABLISHED, TCP_CLOSE_WAIT...), or -errno.
int ck_tcp_state_of(int fd);
// tcp_info.tcpi_bytes_acked of socket `fd`: the bytes it sent that its peer acknowledged,
// its SYN counted as one (1 for a client that sent nothing). -errno.
long long ck_tcp_bytes_acked(int fd);
// The classic BPF filter of socket `fd`: its length in instructions in `count`, the
// instructions (8 bytes each) when `capacity` instructions hold them; 0 or -errno.
int ck_socket_filter(int fd, void *instructions, unsigned int capacity, unsigned int *count);
// Attaches classic BPF `instructions` to socket `fd` (SO_ATTACH_FILTER); 0 or -errno.
int ck_attach_socket_filter(int fd, const void *instructions, unsigned int count);

// ---- cpu (cpu.c) ----
// XCR0: the XSAVE state components the OS enabled on this CPU (xgetbv(0)).
uint64_t ck_xgetbv0(void);
// CPUID leaf 0xD sub-leaf 0 EBX: the XSAVE area size for the components XCR0 enables.
uint32_t ck_xsave_size(void);
// sched_{get,set}affinity and sched_getcpu: Glibc's Swift overlay hides them (_GNU_SOURCE).
// The mask is `words` 64-bit words, CPU n at bit n % 64 of word n / 64. -1 and errno on error.
int ck_sched_getaffinity(pid_t tid, uint64_t *mask, size_t words);
int ck_sched_setaffinity(pid_t tid, const uint64_t *mask, size_t words);
int ck_sched_getcpu(void);

// ---- SysV IPC (ipc.c) ----
// semctl(2) is variadic, and the ipc structs differ from one libc to another: these
// wrappers pass ckcont only the fields it saves. Each returns -1 with errno on failure.
enum { CK_IPC_SHM = 0, CK_IPC_SEM = 1, CK_IPC_MSG = 2 };
struct ck_ipc_perm {
  int32_t key;
  uint32_t uid;
  uint32_t gid;
  uint32_t mode;
  // shm: the segment's size; sem: the number of semaphores; msg: the queue's byte limit.
  uint64_t size;
  // msg: the number of messages waiting.
  uint64_t count;
};
// IPC_STAT of object `id` of `kind`.
int ck_ipc_stat(int kind, int id, struct ck_ipc_perm *perm);
// IPC_SET of its uid, gid, the low 9 bits of its mode and (msg) its byte limit.
int ck_ipc_set(int kind, int id, const struct ck_ipc_perm *perm);
// shmget/semget/msgget with IPC_CREAT|IPC_EXCL (key 0 is IPC_PRIVATE); the new id.
int ck_ipc_create(int kind, int32_t key, uint64_t size, uint32_t mode);
int ck_ipc_remove(int kind, int id);
// shmat read-only (or read-write) anywhere; NULL on failure.
void *ck_shm_attach(int id, int writable);
int ck_shm_detach(const void *address);
// GETALL / SETALL of a semaphore set.
int ck_sem_getall(int id, uint16_t *values);
int ck_sem_setall(int id, const uint16_t *values);
// The message at `index` of the queue, copied without taking it (msgrcv MSG_COPY): its
// size, with its type in *type and its text in `text`.
long ck_msg_copy(int id, long index, long *type, void *text, size_t capacity);
// msgsnd without waiting.
int ck_msg_send(int id, long type, const void *text, size_t size);

// ---- POSIX message queues (ipc.c) ----
// statfs(2)'s f_type of `path` (the filesystem's magic number), or -errno.
long ck_fs_magic(const char *path);
struct ck_mq_attr {
  long flags;
  long max_messages;
  long message_size;
  long current;
};
// The queue behind `fd` of process `pid` (opened again through /proc): its attributes, and every
// message waiting (texts one after another in `buffer`, lengths and priorities apart), taken
// in order and sent back at once so that the queue is as it was. 0 or -errno (-E2BIG: more
// than `capacity` bytes or `max_messages` messages).
int ck_mq_capture(pid_t pid, int fd, struct ck_mq_attr *attr, void *buffer, size_t capacity, uint32_t *lengths,
                  uint32_t *priorities, int max_messages, int *count);
// Sends `count` messages (texts back to back in `buffer`) to the queue open at `fd`, without
// waiting. 0 or -errno.
int ck_mq_fill(int fd, const void *buffer, const uint32_t *lengths, const uint32_t *priorities, int count);

#endif
