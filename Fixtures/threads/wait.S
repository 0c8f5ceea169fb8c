/* long futex_wait_keeping_registers(int *word, uint64_t seed)
 * Loads rbx, rbp, r12-r15 with seed+0..5, FUTEX_WAITs on *word while it is 0 (raw syscall,
 * so no C code can save and restore the registers around it), then returns 1 if all six
 * still hold their values, else 0. */
        .text
        .globl futex_wait_keeping_registers
        .type futex_wait_keeping_registers, @function
futex_wait_keeping_registers:
        push %rbx
        push %rbp
        push %r12
        push %r13
        push %r14
        push %r15
        mov %rdi, %r8           /* the word; syscall keeps r8 and r9 */
        mov %rsi, %r9           /* the seed */
        mov %r9, %rbx
        lea 1(%r9), %rbp
        lea 2(%r9), %r12
        lea 3(%r9), %r13
        lea 4(%r9), %r14
        lea 5(%r9), %r15
1:      mov $202, %eax          /* futex(word, FUTEX_WAIT, 0, NULL) */
        mov %r8, %rdi
        xor %esi, %esi
        xor %edx, %edx
        xor %r10d, %r10d
        syscall
        cmpl $0, (%r8)
        je 1b
        xor %eax, %eax
        cmp %r9, %rbx
        jne 2f
        lea 1(%r9), %rcx
        cmp %rcx, %rbp
        jne 2f
        lea 2(%r9), %rcx
        cmp %rcx, %r12
        jne 2f
        lea 3(%r9), %rcx
        cmp %rcx, %r13
        jne 2f
        lea 4(%r9), %rcx
        cmp %rcx, %r14
        jne 2f
        lea 5(%r9), %rcx
        cmp %rcx, %r15
        jne 2f
        mov $1, %eax
2:      pop %r15
        pop %r14
        pop %r13
        pop %r12
        pop %rbp
        pop %rbx
        ret
        .size futex_wait_keeping_registers, .-futex_wait_keeping_registers
        .section .note.GNU-stack,"",@progbits
