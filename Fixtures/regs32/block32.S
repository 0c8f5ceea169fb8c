/* long regs_block(long nr, long a1, long a2, long a3, long a4, struct regs_snap *out), i386
 *
 * Issues one raw `int $0x80` with nr in eax, a1-a4 in ebx, ecx, edx, esi, known constants in
 * edi and ebp and NSTK known dwords pushed; records the arguments before and every register
 * after, before touching the stack. In assembly so that no compiler saves or restores a
 * register around the call. struct regs_snap (regs.c, i386): esp_before, esp_after, a1, a2,
 * a3, a4, ebx, ecx, edx, esi, edi, ebp, stk[NSTK] (all 32-bit). Returns eax (-errno). */
#include "../regs/regs.h"
        .text
        .globl regs_block
        .type regs_block, @function
regs_block:
        push %ebp; push %ebx; push %esi; push %edi
        mov 40(%esp), %eax              /* out */
        mov 24(%esp), %ecx; mov %ecx, 8(%eax)
        mov 28(%esp), %ecx; mov %ecx, 12(%eax)
        mov 32(%esp), %ecx; mov %ecx, 16(%eax)
        mov 36(%esp), %ecx; mov %ecx, 20(%eax)
        .set i, NSTK - 1
        .rept NSTK                      /* stk[i] ends up at 4*i(%esp) */
        push $(STK32_VAL + i)
        .set i, i - 1
        .endr
        mov %esp, 0(%eax)               /* esp_before */
        mov 20+4*NSTK(%esp), %eax       /* nr and arguments */
        mov 24+4*NSTK(%esp), %ebx
        mov 28+4*NSTK(%esp), %ecx
        mov 32+4*NSTK(%esp), %edx
        mov 36+4*NSTK(%esp), %esi
        mov $EDI32_VAL, %edi
        mov $EBP32_VAL, %ebp
        int $0x80                       /* blocks here; the dump finds the task in this call */
        push %eax                       /* the result, while eax points at out */
        mov 44+4*NSTK(%esp), %eax
        mov %ebx, 24(%eax)
        mov %ecx, 28(%eax)
        mov %edx, 32(%eax)
        mov %esi, 36(%eax)
        mov %edi, 40(%eax)
        mov %ebp, 44(%eax)
        lea 4(%esp), %ecx
        mov %ecx, 4(%eax)               /* esp_after, without the result's push */
        .set i, 0
        .rept NSTK
        mov 4+4*i(%esp), %ecx
        mov %ecx, 48+4*i(%eax)
        .set i, i + 1
        .endr
        pop %eax
        add $4*NSTK, %esp
        pop %edi; pop %esi; pop %ebx; pop %ebp
        ret
        .size regs_block, .-regs_block
        .section .note.GNU-stack,"",@progbits
