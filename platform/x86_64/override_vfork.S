/*
 * override_vfork.S - vfork() for a process whose malloc is XMM (x86_64).
 *
 * A vfork child runs on its parent thread's stack and TLS, but it is a task
 * of its own that the kernel did not register for rseq (rseq registration
 * is not inherited with CLONE_VM). Were it to allocate through the parent
 * thread's rseq area, it would run XMM's per-CPU critical sections without
 * their protection, on the slab of the CPU the parent last ran on, while
 * the parent's other threads use that slab: objects handed out twice.
 * POSIX leaves allocation in a vfork child undefined, but programs do it.
 *
 * So this vfork, like glibc's, makes the system call itself, having first
 * detached the thread from the per-CPU caches: its rseq area pointer is
 * cleared and re-attachment is refused, so the child's allocations go
 * through the parent thread's per-thread cache if it has one (the parent
 * thread is suspended until the child execs or exits, so nobody else
 * uses it), else to the central layer: a vfork child makes no cache of
 * its own (src/mem/thread_cache.c, take_cache).
 * When the parent resumes, it restores both values, which it kept in
 * registers: the child overwrites the stack below the caller's frame, so
 * nothing may be kept there across the call (glibc keeps the return
 * address in a register for the same reason).
 *
 * Not for control-flow enforcement (CET): no endbr64, no shadow-stack
 * handling of the child's return (glibc's own vfork has both). libxmm is
 * not built with -fcf-protection (Debian's default), so it does not claim
 * to be CET-compatible either.
 *
 * Only calls to vfork() itself come here. posix_spawn() and system() use
 * clone(CLONE_VM | CLONE_VFORK) inside glibc, and their child does not
 * allocate before it execs.
 */
    .text
    .globl vfork
    .type vfork, @function
    .p2align 4
vfork:
    .cfi_startproc
    popq %rdi                                   /* return address */
    .cfi_adjust_cfa_offset -8
    .cfi_register %rip, %rdi
    movq xmm_thread@gottpoff(%rip), %r9  /* xmm_thread.rseq_area: offset 0 */
    movq %fs:(%r9), %rdx                        /* the thread's rseq area */
    movq xmm_rseq_attach_refused@gottpoff(%rip), %r10
    movzbl %fs:(%r10), %r8d                     /* and its refusal flag */
    /* Detached before the call, so that no instant of the child (a signal
     * handler right after the system call) runs on the parent's area. */
    movq $0, %fs:(%r9)
    movb $1, %fs:(%r10)
    movl $58, %eax                              /* SYS_vfork */
    syscall
    pushq %rdi
    .cfi_adjust_cfa_offset 8
    .cfi_rel_offset %rip, 0
    testq %rax, %rax
    jnz 1f
    ret                                         /* the child: per-thread caches */
1:  /* The parent (or a failed call): the thread's own state back. */
    movq %rdx, %fs:(%r9)
    movb %r8b, %fs:(%r10)
    cmpq $-4095, %rax
    jae 2f
    ret
2:  negl %eax
    movl %eax, %edi
    jmp xmm_vfork_failed                        /* errno, -1; returns for us */
    .cfi_endproc
    .size vfork, .-vfork

    .section .note.GNU-stack, "", @progbits
