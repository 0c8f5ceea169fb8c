// The values ckconstants.h copies for Swift, checked against the kernel's uapi headers (only
// those: glibc's clash with them). Those newer than the build's headers are checked where
// the headers have them.
#include <linux/capability.h>
#include <linux/eventpoll.h>
#include <linux/fanotify.h>
#include <linux/fcntl.h>
#include <linux/fs.h>
#include <linux/magic.h>
#include <linux/memfd.h>
#include <linux/mman.h>
#include <linux/prctl.h>
#include <asm/prctl.h>
#include <linux/rseq.h>
#include <linux/seccomp.h>
#include <linux/securebits.h>
#include <linux/signal.h>
#include <linux/timerfd.h>
#include "ckconstants.h"

#define CK_SAME(name) _Static_assert((long long)CK_##name == (long long)(name), #name)
CK_SAME(F_SETSIG);
CK_SAME(FAN_CLOEXEC);
CK_SAME(FAN_NONBLOCK);
CK_SAME(FAN_CLASS_CONTENT);
CK_SAME(FAN_CLASS_PRE_CONTENT);
CK_SAME(FAN_MARK_ADD);
CK_SAME(FAN_MARK_MOUNT);
CK_SAME(FAN_MARK_IGNORED_MASK);
CK_SAME(FAN_MARK_IGNORED_SURV_MODIFY);
CK_SAME(FAN_MARK_FILESYSTEM);
CK_SAME(FAN_MARK_EVICTABLE);
CK_SAME(FAN_MARK_IGNORE);
CK_SAME(F_GETSIG);
CK_SAME(F_SETOWN_EX);
CK_SAME(F_GETOWN_EX);
CK_SAME(F_OFD_SETLK);
CK_SAME(F_SETLEASE);
CK_SAME(F_ADD_SEALS);
CK_SAME(F_GET_SEALS);
CK_SAME(F_SEAL_SEAL);
CK_SAME(SEEK_DATA);
CK_SAME(SEEK_HOLE);
CK_SAME(MFD_CLOEXEC);
CK_SAME(MFD_ALLOW_SEALING);
CK_SAME(MREMAP_MAYMOVE);
CK_SAME(MREMAP_FIXED);
CK_SAME(MLOCK_ONFAULT);
#ifdef MAP_DROPPABLE
CK_SAME(MAP_DROPPABLE);
#endif
#ifdef MADV_GUARD_INSTALL
CK_SAME(MADV_GUARD_INSTALL);
#endif
CK_SAME(EPOLL_CTL_ADD);
CK_SAME(RSEQ_FLAG_UNREGISTER);
CK_SAME(SECCOMP_SET_MODE_FILTER);
CK_SAME(SECCOMP_FILTER_FLAG_TSYNC);
CK_SAME(TFD_IOC_SET_TICKS);
CK_SAME(PR_SET_MM_MAP);
CK_SAME(PR_CAP_AMBIENT_RAISE);
CK_SAME(SECBIT_KEEP_CAPS);
_Static_assert(CK_LINUX_CAPABILITY_VERSION_3 == _LINUX_CAPABILITY_VERSION_3, "_LINUX_CAPABILITY_VERSION_3");
CK_SAME(SS_AUTODISARM);
CK_SAME(HUGETLBFS_MAGIC);
#ifdef MQUEUE_MAGIC
CK_SAME(MQUEUE_MAGIC);
#endif
// CK_EFD_SEMAPHORE is checked in process.c: no uapi header has it.
CK_SAME(ARCH_MAP_VDSO_32);
