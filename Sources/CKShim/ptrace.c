// ptrace(2) and waitpid status macros: variadic or macro-only in C, so Swift needs these.
#include <errno.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/user.h>
#include <sys/wait.h>
#include <asm/ldt.h>
#include "ckshim.h"

long ck_ptrace(int request, pid_t pid, uintptr_t addr, uintptr_t data) {
  return ptrace((enum __ptrace_request)request, pid, (void *)addr, (void *)data);
}

int ck_wifexited(int status) { return WIFEXITED(status); }
int ck_wexitstatus(int status) { return WEXITSTATUS(status); }
int ck_wifsignaled(int status) { return WIFSIGNALED(status); }
int ck_wtermsig(int status) { return WTERMSIG(status); }
int ck_wifstopped(int status) { return WIFSTOPPED(status); }
int ck_wstopsig(int status) { return WSTOPSIG(status); }

_Static_assert(CK_WALL == __WALL, "__WALL");
_Static_assert(CK_PTRACE_SEIZE == PTRACE_SEIZE, "PTRACE_SEIZE");
_Static_assert(CK_PTRACE_INTERRUPT == PTRACE_INTERRUPT, "PTRACE_INTERRUPT");
_Static_assert(CK_PTRACE_GETSIGMASK == PTRACE_GETSIGMASK, "PTRACE_GETSIGMASK");
_Static_assert(CK_PTRACE_O_EXITKILL == PTRACE_O_EXITKILL, "PTRACE_O_EXITKILL");
_Static_assert(CK_PTRACE_O_SUSPEND_SECCOMP == PTRACE_O_SUSPEND_SECCOMP, "PTRACE_O_SUSPEND_SECCOMP");
_Static_assert(CK_PTRACE_SECCOMP_GET_FILTER == PTRACE_SECCOMP_GET_FILTER, "PTRACE_SECCOMP_GET_FILTER");
_Static_assert(CK_PTRACE_SECCOMP_GET_METADATA == PTRACE_SECCOMP_GET_METADATA, "PTRACE_SECCOMP_GET_METADATA");
_Static_assert(CK_PTRACE_EVENT_STOP == PTRACE_EVENT_STOP, "PTRACE_EVENT_STOP");

long ck_ptrace_regset(int request, pid_t tid, int note_type, void *buffer, size_t *len) {
  struct iovec iov = {buffer, *len};
  long result = ptrace((enum __ptrace_request)request, tid, (void *)(uintptr_t)note_type, &iov);
  *len = iov.iov_len;
  return result;
}

// syscall; int3 -- see ckshim.h. In its own section-less global asm so the compiler never
// touches it.
extern char ck_gadget_bytes[];
__asm__(".text\n.globl ck_gadget_bytes\nck_gadget_bytes:\n\tsyscall\n\tint3\n");
uintptr_t ck_syscall_gadget(void) { return (uintptr_t)ck_gadget_bytes; }

_Static_assert(sizeof(struct ck_user_regs) == sizeof(struct user_regs_struct), "user_regs_struct");
_Static_assert(CK_PTRACE_GET_THREAD_AREA == PTRACE_GET_THREAD_AREA, "PTRACE_GET_THREAD_AREA");
_Static_assert(CK_PTRACE_SET_THREAD_AREA == PTRACE_SET_THREAD_AREA, "PTRACE_SET_THREAD_AREA");
_Static_assert(sizeof(struct ck_user_desc) == sizeof(struct user_desc), "struct user_desc");
_Static_assert(__builtin_offsetof(struct ck_user_regs, orig_rax) == __builtin_offsetof(struct user_regs_struct, orig_rax), "orig_rax");
_Static_assert(__builtin_offsetof(struct ck_user_regs, fs_base) == __builtin_offsetof(struct user_regs_struct, fs_base), "fs_base");
_Static_assert(__builtin_offsetof(struct ck_user_regs, gs) == __builtin_offsetof(struct user_regs_struct, gs), "gs");
_Static_assert(sizeof(struct ck_rseq_configuration) == 24, "ptrace_rseq_configuration");

// get_robust_list(2) of thread `tid` (no glibc wrapper): the head of its robust futex list,
// which only the thread itself can set again. 0 or -errno.
int ck_get_robust_list(pid_t tid, unsigned long *head, unsigned long *length) {
  size_t size = 0;
  void *pointer = NULL;
  if (syscall(SYS_get_robust_list, tid, &pointer, &size) < 0) return -errno;
  *head = (unsigned long)pointer;
  *length = size;
  return 0;
}
