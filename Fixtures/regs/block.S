/* long regs_block(long nr, long a1, long a2, long a3, long a4, struct regs_snap *out)
 *
 * Issues one raw `syscall` with known constants in rbx, rbp, r12-r15, r8 and r9, with NSTK
 * known qwords pushed on the stack and NRZ known qwords in the red zone below rsp (the
 * kernel builds signal frames below the red zone, so nothing may change them). When the call
 * returns, it stores all of them in *out before touching the stack. Written in assembly so no
 * compiler can save or restore a register around the syscall: whatever the registers hold
 * afterwards comes from the kernel, and after a restore from the checkpoint engine.
 * struct regs_snap: rsp_before, rsp_after, rbx, rbp, r12, r13, r14, r15, r8, r9,
 *                   stk[NSTK], rz[NRZ], rdi, rsi, rdx, r10  (all 64-bit; the last four
 *                   are the arguments, which the kernel preserves as well).
 * The return value is the raw rax (-errno on failure). */
#include "regs.h"
        .text
        .globl regs_block
        .type regs_block, @function
regs_block:
        push %rbx; push %rbp; push %r12; push %r13; push %r14; push %r15
        push %r9                        /* out: at 8*NSTK(%rsp) while blocked */
        .set i, NSTK - 1
        .rept NSTK                      /* stk[i] ends up at 8*i(%rsp) */
        movabs $(STK_VAL + i), %rax
        push %rax
        .set i, i - 1
        .endr
        mov %rsp, 0(%r9)                /* rsp_before */
        .set i, 0
        .rept NRZ                       /* rz[i] at -8*(i+1)(%rsp) */
        movabs $(RZ_VAL + i), %rax
        mov %rax, -8-8*i(%rsp)
        .set i, i + 1
        .endr
        mov %rdi, %rax                  /* syscall number and arguments */
        mov %rsi, %rdi
        mov %rdx, %rsi
        mov %rcx, %rdx
        mov %r8, %r10
        movabs $RBX_VAL, %rbx
        movabs $RBP_VAL, %rbp
        movabs $R12_VAL, %r12
        movabs $R13_VAL, %r13
        movabs $R14_VAL, %r14
        movabs $R15_VAL, %r15
        movabs $R8_VAL, %r8
        movabs $R9_VAL, %r9
        syscall                         /* blocks here; the dump finds the task in this call */
        mov 8*NSTK(%rsp), %rcx          /* out (rcx is clobbered by syscall anyway) */
        mov %rsp, 8(%rcx)
        mov %rbx, 16(%rcx)
        mov %rbp, 24(%rcx)
        mov %r12, 32(%rcx)
        mov %r13, 40(%rcx)
        mov %r14, 48(%rcx)
        mov %r15, 56(%rcx)
        mov %r8, 64(%rcx)
        mov %r9, 72(%rcx)
        mov %rdi, 80+8*NSTK+8*NRZ(%rcx)
        mov %rsi, 88+8*NSTK+8*NRZ(%rcx)
        mov %rdx, 96+8*NSTK+8*NRZ(%rcx)
        mov %r10, 104+8*NSTK+8*NRZ(%rcx)
        .set i, 0
        .rept NSTK
        mov 8*i(%rsp), %rdx
        mov %rdx, 80+8*i(%rcx)
        .set i, i + 1
        .endr
        .set i, 0
        .rept NRZ
        mov -8-8*i(%rsp), %rdx
        mov %rdx, 80+8*NSTK+8*i(%rcx)
        .set i, i + 1
        .endr
        add $8*(NSTK+1), %rsp
        pop %r15; pop %r14; pop %r13; pop %r12; pop %rbp; pop %rbx
        ret
        .size regs_block, .-regs_block
        .section .note.GNU-stack,"",@progbits
