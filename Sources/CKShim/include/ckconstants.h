// ckconstants.h: values ckcont hands the kernel, mostly in remote calls, that Glibc's Swift
// overlay does not show: _GNU_SOURCE declarations, linux/ headers it leaves out, macros
// built with _IOW. Plain numbers with no includes, so that constants.c can check them
// against the kernel's uapi headers, which clash with glibc's; those newer than the build's
// headers (noted) are checked where the headers have them.
#ifndef CKCONSTANTS_H
#define CKCONSTANTS_H

enum {
  // fcntl(2): commands and seals.
  CK_F_SETSIG = 10,
  CK_F_GETSIG = 11,
  CK_F_SETOWN_EX = 15,
  CK_F_GETOWN_EX = 16,
  CK_F_OFD_SETLK = 37,
  CK_F_SETLEASE = 1024,
  CK_F_ADD_SEALS = 1033,
  CK_F_GET_SEALS = 1034,
  CK_F_SEAL_SEAL = 1,
  CK_SEEK_DATA = 3,
  CK_SEEK_HOLE = 4,
  // memfd_create(2), mremap(2), mlock2(2), mmap(2), madvise(2).
  CK_MFD_CLOEXEC = 1,
  CK_MFD_ALLOW_SEALING = 2,
  CK_MREMAP_MAYMOVE = 1,
  CK_MREMAP_FIXED = 2,
  CK_MLOCK_ONFAULT = 1,
  CK_MAP_DROPPABLE = 0x08,        // Linux 6.11
  CK_MADV_GUARD_INSTALL = 102,    // Linux 6.14
  // arch_prctl(2): map the 32-bit vDSO (an i386 task's, at restore).
  CK_ARCH_MAP_VDSO_32 = 0x2002,
  // eventfd(2), epoll_ctl(2), rseq(2), seccomp(2), ioctl(2) of a timerfd.
  CK_EFD_SEMAPHORE = 1,
  CK_EPOLL_CTL_ADD = 1,
  CK_RSEQ_FLAG_UNREGISTER = 1,
  CK_SECCOMP_SET_MODE_FILTER = 1,
  CK_SECCOMP_FILTER_FLAG_TSYNC = 1,
  CK_TFD_IOC_SET_TICKS = 0x40085400,
  // fanotify_init(2), fanotify_mark(2) (linux/fanotify.h): the classes, the flags a
  // descriptor's own flags replace, the kinds of mark and the ignore masks.
  CK_FAN_CLOEXEC = 0x1,
  CK_FAN_NONBLOCK = 0x2,
  CK_FAN_CLASS_CONTENT = 0x4,
  CK_FAN_CLASS_PRE_CONTENT = 0x8,
  CK_FAN_MARK_ADD = 0x1,
  CK_FAN_MARK_MOUNT = 0x10,
  CK_FAN_MARK_IGNORED_MASK = 0x20,
  CK_FAN_MARK_IGNORED_SURV_MODIFY = 0x40,
  CK_FAN_MARK_FILESYSTEM = 0x100,
  CK_FAN_MARK_EVICTABLE = 0x200,
  CK_FAN_MARK_IGNORE = 0x400,
  // prctl(2) sub-options, capabilities (linux/prctl.h, linux/securebits.h, linux/capability.h).
  CK_PR_SET_MM_MAP = 14,
  CK_PR_CAP_AMBIENT_RAISE = 2,
  CK_SECBIT_NO_SETUID_FIXUP = 0x4,
  CK_SECBIT_KEEP_CAPS = 0x10,
  CK_LINUX_CAPABILITY_VERSION_3 = 0x20080522,
  // statfs(2) f_type: POSIX message queues (the kernel's include/linux/magic.h, not uapi).
  CK_MQUEUE_MAGIC = 0x19800202,
};
// Above INT_MAX, so not enum constants: sigaltstack's SS_AUTODISARM (linux/signal.h) and
// hugetlbfs's f_type (linux/magic.h).
#define CK_SS_AUTODISARM 0x80000000u
#define CK_HUGETLBFS_MAGIC 0x958458f6u

#endif
