/* regs32: the regs fixture built for i386 (issue 17): the same cases, a raw `int $0x80`
 * (block32.S) blocked in the call the dump catches, every register checked after the restore
 * re-issued it. See ../regs/regs.c for the cases. */
#define REGS_NAME "regs32"
#include "../regs/regs.c"
