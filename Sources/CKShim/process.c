// Children of the (multi-threaded) Swift process. Between fork/clone and exit, a child
// runs raw system calls only: any libc call that takes a lock could deadlock on a lock
// another thread held at the time of the fork.
#include <linux/capability.h>
#include <linux/ioprio.h>
#include <linux/kcmp.h>
#include <linux/openat2.h>
#include <linux/sched.h>
#include <sched.h>
#include <signal.h>
#include <string.h>
#include <errno.h>
#include <fcntl.h>
#include <unistd.h>
#include <sys/prctl.h>
#include <sys/eventfd.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include "ckshim.h"

pid_t ck_spawn_idle_child(void) {
  pid_t pid = fork();
  if (pid == 0) {
    syscall(SYS_prctl, PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
    for (;;) syscall(SYS_pause);
  }
  return pid;
}

// clone3 with CLONE_INTO_CGROUP when cgroup_fd >= 0 and set_tid when set_tid_size > 0.
// Returns like the raw system call: 0 in the child.
static long clone3_into(uint64_t flags, int cgroup_fd, const pid_t *set_tid, size_t set_tid_size) {
  struct clone_args args;
  memset(&args, 0, sizeof args);
  args.flags = flags;
  args.exit_signal = SIGCHLD;
  if (cgroup_fd >= 0) {
    args.flags |= CLONE_INTO_CGROUP;
    args.cgroup = (uint64_t)cgroup_fd;
  }
  if (set_tid_size > 0) {
    args.set_tid = (uint64_t)(uintptr_t)set_tid;
    args.set_tid_size = set_tid_size;
  }
  return syscall(SYS_clone3, &args, sizeof args);
}

long ck_clone3_exit_child(uint64_t flags, int cgroup_fd, const pid_t *set_tid, size_t set_tid_size) {
  long pid = clone3_into(flags, cgroup_fd, set_tid, set_tid_size);
  if (pid == 0) syscall(SYS_exit_group, 0);
  return pid < 0 ? -errno : pid;
}

long ck_clone3_traced_child(uint64_t flags, const pid_t *set_tid, size_t set_tid_size) {
  long pid = clone3_into(flags, -1, set_tid, set_tid_size);
  if (pid == 0) {
    syscall(SYS_ptrace, PTRACE_TRACEME, 0, 0, 0);
    syscall(SYS_kill, syscall(SYS_getpid), SIGSTOP);
    // Only reached if the orchestrator let it run without reshaping it.
    syscall(SYS_exit_group, 127);
  }
  return pid < 0 ? -errno : pid;
}

int ck_pidfd_open(pid_t pid, unsigned int flags) { return (int)syscall(SYS_pidfd_open, pid, flags); }

int ck_pidfd_getfd(int pidfd, int targetfd, unsigned int flags) {
  return (int)syscall(SYS_pidfd_getfd, pidfd, targetfd, flags);
}

ssize_t ck_process_vm_readv(pid_t pid, const struct iovec *local, unsigned long liovcnt,
                            const struct iovec *remote, unsigned long riovcnt) {
  return process_vm_readv(pid, local, liovcnt, remote, riovcnt, 0);
}

ssize_t ck_process_vm_writev(pid_t pid, const struct iovec *local, unsigned long liovcnt,
                             const struct iovec *remote, unsigned long riovcnt) {
  return process_vm_writev(pid, local, liovcnt, remote, riovcnt, 0);
}

int ck_unshare(int flags) { return unshare(flags); }
int ck_setns(int fd, int nstype) { return setns(fd, nstype); }
int ck_memfd_create(const char *name, unsigned int flags) { return (int)syscall(SYS_memfd_create, name, flags); }
pid_t ck_gettid(void) { return (pid_t)syscall(SYS_gettid); }
int ck_tgkill(pid_t tgid, pid_t tid, int signal) { return (int)syscall(SYS_tgkill, tgid, tid, signal); }

int ck_kcmp_file(pid_t pid1, pid_t pid2, int fd1, int fd2) {
  return (int)syscall(SYS_kcmp, pid1, pid2, KCMP_FILE, fd1, fd2);
}

int ck_kcmp_epoll_target(pid_t pid1, pid_t pid2, int fd1, int epoll, int target, int offset) {
  // struct kcmp_epoll_slot: the epoll instance, the watched descriptor number, and which of
  // the watches of that number (in the order fdinfo lists them).
  struct { unsigned int efd, tfd, toff; } slot = {(unsigned)epoll, (unsigned)target, (unsigned)offset};
  return (int)syscall(SYS_kcmp, pid1, pid2, KCMP_EPOLL_TFD, fd1, (unsigned long)&slot);
}

int ck_open_by_handle(int mount_fd, int handle_type, const unsigned char *handle, unsigned int handle_bytes, int flags) {
  if (handle_bytes > MAX_HANDLE_SZ) {
    errno = EINVAL;
    return -1;
  }
  struct {
    struct file_handle head;
    unsigned char bytes[MAX_HANDLE_SZ];
  } h;
  h.head.handle_bytes = handle_bytes;
  h.head.handle_type = handle_type;
  memcpy(h.head.f_handle, handle, handle_bytes);
  return open_by_handle_at(mount_fd, &h.head, flags);
}

int ck_kcmp(pid_t pid1, pid_t pid2, int type) { return (int)syscall(SYS_kcmp, pid1, pid2, type, 0, 0); }

int ck_fallocate(int fd, int mode, int64_t offset, int64_t length) { return fallocate(fd, mode, offset, length); }

int ck_prctl(int option, unsigned long a2, unsigned long a3, unsigned long a4, unsigned long a5) {
  return prctl(option, a2, a3, a4, a5);
}

int ck_pipe2(int fds[2], int flags) { return pipe2(fds, flags); }

ssize_t ck_tee(int fd_in, int fd_out, size_t len, unsigned int flags) { return tee(fd_in, fd_out, len, flags); }

_Static_assert(CK_F_SETPIPE_SZ == F_SETPIPE_SZ, "F_SETPIPE_SZ");
_Static_assert(CK_F_GETPIPE_SZ == F_GETPIPE_SZ, "F_GETPIPE_SZ");
_Static_assert(CK_SPLICE_F_NONBLOCK == SPLICE_F_NONBLOCK, "SPLICE_F_NONBLOCK");

_Static_assert(CK_CLONE_NEWPID == CLONE_NEWPID, "CLONE_NEWPID");
_Static_assert(CK_CLONE_NEWNS == CLONE_NEWNS, "CLONE_NEWNS");
_Static_assert(CK_CLONE_NEWNET == CLONE_NEWNET, "CLONE_NEWNET");
_Static_assert(CK_CLONE_NEWUTS == CLONE_NEWUTS, "CLONE_NEWUTS");
_Static_assert(CK_CLONE_NEWIPC == CLONE_NEWIPC, "CLONE_NEWIPC");
_Static_assert(CK_CLONE_NEWUSER == CLONE_NEWUSER, "CLONE_NEWUSER");
_Static_assert(CK_CLONE_NEWCGROUP == CLONE_NEWCGROUP, "CLONE_NEWCGROUP");
_Static_assert(CK_CLONE_VM == CLONE_VM && CK_CLONE_FS == CLONE_FS && CK_CLONE_FILES == CLONE_FILES &&
                   CK_CLONE_SIGHAND == CLONE_SIGHAND && CK_CLONE_THREAD == CLONE_THREAD &&
                   CK_CLONE_SYSVSEM == CLONE_SYSVSEM && CK_CLONE_NEWTIME == CLONE_NEWTIME,
               "CLONE_*");
_Static_assert((int)CK_KCMP_FILE == KCMP_FILE && (int)CK_KCMP_VM == KCMP_VM && (int)CK_KCMP_FILES == KCMP_FILES &&
                   (int)CK_KCMP_FS == KCMP_FS && (int)CK_KCMP_EPOLL_TFD == KCMP_EPOLL_TFD,
               "KCMP_*");
_Static_assert((int)CK_EFD_SEMAPHORE == EFD_SEMAPHORE, "EFD_SEMAPHORE");

// Makes the calling thread's file-system ids `uid` and `gid` (setfsuid/setfsgid act on the
// thread alone) and raises its effective capabilities back to its permitted ones, which a
// change of fsuid away from 0 drops (CAP_CHOWN, CAP_DAC_OVERRIDE, CAP_FOWNER, CAP_MKNOD...).
// Files ckcont makes in a filesystem of a user namespace must be owned by an id the namespace
// maps, or the kernel refuses them (EOVERFLOW). 0 or -errno.
int ck_set_fs_ids(unsigned int uid, unsigned int gid) {
  syscall(SYS_setfsgid, gid);
  syscall(SYS_setfsuid, uid);
  if ((unsigned int)syscall(SYS_setfsuid, -1) != uid || (unsigned int)syscall(SYS_setfsgid, -1) != gid) return -EPERM;
  struct __user_cap_header_struct header = {.version = _LINUX_CAPABILITY_VERSION_3, .pid = 0};
  struct __user_cap_data_struct data[2];
  if (syscall(SYS_capget, &header, data) < 0) return -errno;
  data[0].effective = data[0].permitted;
  data[1].effective = data[1].permitted;
  return syscall(SYS_capset, &header, data) < 0 ? -errno : 0;
}

// openat2(2) (no glibc wrapper): `path` resolved as if `dirfd` were the root (RESOLVE_IN_ROOT:
// "..", absolute symlinks and absolute paths stay under it) and through no /proc magic link.
// The descriptor or -errno.
int ck_open_in_root(int dirfd, const char *path, int flags) {
  struct open_how how = {.flags = (unsigned long long)flags, .mode = 0, .resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS};
  long fd = syscall(SYS_openat2, dirfd, path, &how, sizeof(how));
  return fd < 0 ? -errno : (int)fd;
}

// A file handle of the file `fd` is open on, into `buffer`; 0 or -errno (-EOPNOTSUPP where
// the filesystem has no handles: an overlay without nfs_export, say).
union ck_handle_buffer {
  struct file_handle handle;
  char room[sizeof(struct file_handle) + MAX_HANDLE_SZ];
};
static int handle_of(int fd, union ck_handle_buffer *buffer) {
  buffer->handle.handle_bytes = MAX_HANDLE_SZ;
  int mount_id;
  return name_to_handle_at(fd, "", &buffer->handle, &mount_id, AT_EMPTY_PATH) < 0 ? -errno : 0;
}

// The file `fd` is open on, opened again by its file handle with `flags`: no path walk, so
// O_NOFOLLOW stays in the new description's flags even for a file only a /proc magic link
// names (deleted). The descriptor or -errno.
int ck_reopen_by_handle(int fd, int flags) {
  union ck_handle_buffer buffer;
  int found = handle_of(fd, &buffer);
  if (found < 0) return found;
  int opened = open_by_handle_at(fd, &buffer.handle, flags);
  return opened < 0 ? -errno : opened;
}

// Whether the filesystem of the file `fd` is open on gives file handles: 0, or -errno.
int ck_has_file_handle(int fd) {
  union ck_handle_buffer buffer;
  return handle_of(fd, &buffer);
}

int ck_ioprio_get(pid_t tid) {
  long priority = syscall(SYS_ioprio_get, IOPRIO_WHO_PROCESS, tid);
  return priority < 0 ? -errno : (int)priority;
}

int ck_ioprio_set(pid_t tid, int priority) {
  return syscall(SYS_ioprio_set, IOPRIO_WHO_PROCESS, tid, priority) < 0 ? -errno : 0;
}

// Linux.OpenFlags (Swift) mirrors these.
_Static_assert(O_PATH == 010000000 && O_NOATIME == 01000000 && (__O_TMPFILE & ~O_DIRECTORY) == 020000000,
               "O_PATH, O_NOATIME, __O_TMPFILE");
