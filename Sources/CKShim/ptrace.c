// ptrace(2) and waitpid status macros: variadic or macro-only in C, so Swift needs these.
#include <sys/ptrace.h>
#include <sys/wait.h>
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
_Static_assert(CK_PTRACE_EVENT_STOP == PTRACE_EVENT_STOP, "PTRACE_EVENT_STOP");
