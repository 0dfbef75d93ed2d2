/*
 * rseq_percpu.h - per-CPU slab operations as restartable sequences (x86_64).
 *
 * A slab is one CPU's (or one concurrency id's) cache: 512 KiB of 8-byte
 * words laid out as
 *
 *   word 0              the slab's NUMA node (every object in it is of it)
 *   words 1..127        one header per bin (a size class, or a small
 *                       class's remote bin: src/mem/cpu_cache.h; the
 *                       operations below call it `size_class`):
 *                         bits  0-31 current  (word index of the first empty slot)
 *                         bits 32-47 end      (one past the last slot)
 *                         bits 48-63 begin    (first slot)
 *                       a locked header has begin 0xffff and end 0: every
 *                       pop sees it empty and every push full
 *   words 128..65534    the slots of every class, back to back (the last
 *                       word is unused: `end` is a 16-bit index)
 *
 * A slab is all zero until its first use (xmm_rseq_set_up_slab, below):
 * a zero header reads as empty to every pop and as full to every push.
 *
 * Each operation below is one critical section: it reads the CPU number
 * from the thread's rseq area, finds the slab, does its work in registers
 * and thread-private memory, and commits with one 32-bit store of
 * `current`. If the kernel preempts, migrates or signals the thread inside
 * the section, it resumes at the abort handler, which counts the restart
 * and starts over on whatever CPU it now runs on. No lock, no atomic
 * read-modify-write, no fence.
 *
 * `current` is a 32-bit field (its top half always 0), read with a 32-bit
 * load and committed with a 32-bit store: each operation's load of it
 * takes the value the previous one stored, a dependency from one malloc
 * or free to the next, and on AMD EPYC (Zen 3) that chain ran slower
 * through 16-bit stores and loads than through 32-bit ones (docs/design.md,
 * "The path of a malloc", gives the measurements). `end` and `begin` are
 * read with 16-bit loads of bytes no store of `current` touches, so
 * neither waits for it (a load that spans a narrower recent store would
 * stall).
 *
 * Contract shared by all: `index` points at the area's cpu_id (or mm_cid)
 * field of the calling thread's registered rseq area `area`; `slabs` is the
 * base of the slab array, or for the single-object pop and pushes the
 * variable that holds it (read as a memory operand, so that it takes no
 * register: held in one, it cost the free path a saved callee-saved
 * register); `size_class` < 128.
 */
#ifndef XMM_RSEQ_PERCPU_H
#define XMM_RSEQ_PERCPU_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A slab: word 0 is its node, word c the header of class c (current: 32
 * bits, end and begin: 16 bits each), slots from word XMM_SLAB_FIRST_SLOT. Nothing else:
 * the hit paths write the header's line and one slot's, no counter. */
#define XMM_SLAB_SHIFT 19
#define XMM_SLAB_WORDS ((size_t)1 << (XMM_SLAB_SHIFT - 3))
#define XMM_SLAB_FIRST_SLOT 128
#define XMM_SLAB_END_SHIFT 32
#define XMM_SLAB_BEGIN_SHIFT 48
#define XMM_SLAB_CURRENT_MASK 0xffffffffu
#define XMM_SLAB_LOCKED_BITS ((uint64_t)0xffff << XMM_SLAB_BEGIN_SHIFT)
/* Header index of a class's remote bin, less the class (src/mem/cpu_cache.h
 * checks it against the layout it plans). */
#define XMM_SLAB_REMOTE_OFFSET 97

#define XMM_RSEQ_STR_(x) #x
#define XMM_RSEQ_STR(x) XMM_RSEQ_STR_(x)

/* Restarts of aborted sections (statistics). Aborts are rare (preemption,
 * migration, signals), so the abort handler can afford a locked add. */
extern uint64_t xmm_rseq_restart_count __attribute__((visibility("hidden")));

/* The descriptor of the section between labels 1 (start) and 2 (commit
 * done), with its abort handler at 4, preceded by the signature the kernel
 * checks (0x53053053, encoded after a ud1 prefix as the kernel's rseq
 * selftests do on x86, so that disassemblers see one invalid
 * instruction). Label 3 is the descriptor; label 0 arms the section by
 * storing its address into area->rseq_cs (offset 8).
 *
 * The abort handler jumps back to 0, not 1: the kernel clears rseq_cs
 * when it aborts a section, so a restart that skipped the arming store
 * would run unprotected, and a second preemption inside it could commit a
 * stale `current` (an object handed out twice). */
#define XMM_RSEQ_DESCRIPTOR                                                    \
    ".pushsection __rseq_cs, \"aw\"\n\t"                                       \
    ".balign 32\n\t"                                                           \
    "3:\n\t"                                                                   \
    ".long 0x0, 0x0\n\t"                                                       \
    ".quad 1f, (2f - 1f), 4f\n\t"                                              \
    ".popsection\n\t"                                                          \
    ".pushsection __rseq_cs_ptr_array, \"aw\"\n\t"                             \
    ".quad 3b\n\t"                                                             \
    ".popsection\n\t"                                                          \
    "0:\n\t"                                                                   \
    "leaq 3b(%%rip), %%rax\n\t"                                                \
    "movq %%rax, 8(%[area])\n\t"

#define XMM_RSEQ_ABORT_HANDLER                                                 \
    ".pushsection __rseq_failure, \"ax\"\n\t"                                  \
    ".byte 0x0f, 0xb9, 0x3d\n\t"                                               \
    ".long 0x53053053\n\t"                                                     \
    "4:\n\t"                                                                   \
    "lock incq xmm_rseq_restart_count(%%rip)\n\t"                              \
    "jmp 0b\n\t"                                                               \
    ".popsection\n\t"

/* rax = this CPU's slab. */
#define XMM_RSEQ_FIND_SLAB                                                     \
    "movl (%[index]), %%eax\n\t"                                               \
    "shlq $" XMM_RSEQ_STR(XMM_SLAB_SHIFT) ", %%rax\n\t"                        \
    "addq %[slabs], %%rax\n\t"

/* Pops one object of `size_class` from this CPU's slab; NULL if empty.
 * 9 instructions in the section on a hit (11 with the arming store), and
 * one conditional branch after it in the caller.
 *
 * No `asm goto`: gcc 12.2 at -O1 miscompiles `asm goto` with an output
 * operand (the empty label returned the caller's stale register: malloc
 * handed out a stack or code address). The result leaves through ordinary
 * outputs instead: `hit` is the carry flag (a flag output operand), set by
 * the `begin < current` comparison and kept to the end of the section,
 * since mov, dec and inc leave CF alone; an empty slab jumps to label 2,
 * the end of the section, with CF clear. This costs the hit path nothing
 * over the `asm goto` version but the one branch on CF, where zeroing the
 * object first and testing it would add an xor and a test.
 * `object` is written only on a hit, and a slot never holds NULL: the
 * __builtin_unreachable below lets the caller's NULL test fold into the
 * branch on CF. A restart begins at label 0 and recomputes both outputs. */
static inline __attribute__((always_inline)) void *
xmm_rseq_pop(void *area, const uint32_t *index, char *const *slabs, size_t size_class)
{
    void *object;
    bool hit;
    /* The object is returned in rax, as the caller returns it (malloc:
     * no move after the section); rax is also the descriptor's scratch,
     * so the slab is in rdx. `begin` is compared in memory with the low
     * half of `current` (indexes are below 2^16). */
    __asm__ __volatile__(XMM_RSEQ_DESCRIPTOR
                         "1:\n\t"
                         "movl (%[index]), %%edx\n\t"
                         "shlq $" XMM_RSEQ_STR(XMM_SLAB_SHIFT) ", %%rdx\n\t"
                         "addq %[slabs], %%rdx\n\t"
                         "movl (%%rdx,%[class],8), %%ecx\n\t" /* current */
                         "cmpw %%cx, 6(%%rdx,%[class],8)\n\t" /* CF = begin < current */
                         "jae 2f\n\t"
                         "movq -8(%%rdx,%%rcx,8), %[object]\n\t"
                         "decl %%ecx\n\t"
                         "movl %%ecx, (%%rdx,%[class],8)\n\t" /* commit */
                         "2:\n\t" XMM_RSEQ_ABORT_HANDLER
                         : [object] "=&a"(object), [hit] "=@ccc"(hit)
                         : [area] "r"(area), [index] "r"(index), [slabs] "m"(*slabs),
                           [class] "r"(size_class)
                         : "rcx", "rdx", "memory");
    if (!hit)
        return NULL;
    if (object == NULL) /* slots never hold NULL */
        __builtin_unreachable();
    return object;
}

/* The slab word of this CPU's pending free (src/global/free.h): a header
 * word no bin uses (src/mem/cpu_cache.h checks it). */
#define XMM_SLAB_PENDING_WORD 127

/* The slab's index in a pending mark: bits 48-62 (slab indexes are below
 * 2^15). */
#define XMM_SLAB_TAG_SHIFT 48

/* Marks `object` pending for this CPU's slab and puts it in the slab's
 * pending slot; returns the block that was there (NULL: nothing), and in
 * *tag the slab's index << XMM_SLAB_TAG_SHIFT, which that block's mark
 * holds. The mark, `*key ^ object ^ tag`, goes into the object's second
 * word before the commit: a restart on another CPU writes it again with
 * that CPU's index, so the mark names the slab whose slot holds the
 * object, and whoever sees the object in a slot sees its mark (x86 stores
 * become visible in order). Two frees of one block on two CPUs thus leave
 * two different marks, and only the slot whose mark the block still holds
 * can pass its check (src/global/free.h).
 * While the slab's class 1 header is locked nothing is stored, `object`
 * is returned and *tag is XMM_SLAB_TAG_REFUSED: a release
 * (src/mem/cpu_cache.c, release_all_slabs) locks every header, fences,
 * then empties the pending slots, and no section may commit after that
 * fence. That path leaves the section by a jump past its end, and clears
 * the object's second word: a try aborted after its mark store may have
 * left a mark there, which the caller's immediate check would take for a
 * freed block's. 14 instructions in the section (16 with the arming
 * store). */
#define XMM_SLAB_TAG_REFUSED (~(uint64_t)0)

static inline __attribute__((always_inline)) void *
xmm_rseq_swap_pending(void *area, const uint32_t *index, char *const *slabs, void *object,
                      const uint64_t *key, uint64_t *tag)
{
    /* Outputs and scratch in registers a call clobbers anyway (rdx, r10,
     * r11, rax): free() then saves no callee-saved register around the
     * section. */
    register void *older __asm__("rdx");
    register uint64_t slab_tag __asm__("r11");
    __asm__ __volatile__(XMM_RSEQ_DESCRIPTOR
                         "1:\n\t"
                         "movq %[object], %[older]\n\t"
                         "movl (%[index]), %k[slab_tag]\n\t"
                         "movq %[slab_tag], %%rax\n\t"
                         "shlq $" XMM_RSEQ_STR(XMM_SLAB_SHIFT) ", %%rax\n\t"
                         "addq %[slabs], %%rax\n\t"
                         "cmpw $0xffff, 14(%%rax)\n\t" /* header 1's begin */
                         "je 5f\n\t"
                         "shlq $" XMM_RSEQ_STR(XMM_SLAB_TAG_SHIFT) ", %[slab_tag]\n\t"
                         "movq %[key], %%r10\n\t"
                         "xorq %[object], %%r10\n\t"
                         "xorq %[slab_tag], %%r10\n\t"
                         "movq %%r10, 8(%[object])\n\t" /* the mark */
                         "movq " XMM_RSEQ_STR(XMM_SLAB_PENDING_WORD) "*8(%%rax), %[older]\n\t"
                         "movq %[object], " XMM_RSEQ_STR(XMM_SLAB_PENDING_WORD) "*8(%%rax)\n\t" /* commit */
                         "2:\n\t" XMM_RSEQ_ABORT_HANDLER
                         "jmp 6f\n\t"
                         "5:\n\t"
                         "movq $0, 8(%[object])\n\t" /* an aborted try's mark */
                         "movq $-1, %[slab_tag]\n\t"
                         "6:\n\t"
                         : [older] "=&r"(older), [slab_tag] "=&r"(slab_tag)
                         : [area] "r"(area), [index] "r"(index), [slabs] "m"(*slabs),
                           [object] "r"(object), [key] "m"(*key)
                         : "rax", "r10", "memory", "cc");
    *tag = slab_tag;
    return older;
}

/* Empties this CPU's pending slot; returns the block that was there
 * (NULL: none), with *tag its mark's slab part. For a release without
 * membarrier, which can only reach its own CPU's slab. Refused (NULL)
 * while the slab's class 1 header is locked: another thread's release
 * owns the slots then. */
static inline void *xmm_rseq_take_pending(void *area, const uint32_t *index, char *const *slabs,
                                          uint64_t *tag)
{
    void *older;
    uint64_t slab_index;
    __asm__ __volatile__(XMM_RSEQ_DESCRIPTOR
                         "1:\n\t"
                         "movl (%[index]), %k[slab_index]\n\t"
                         "movq %[slab_index], %%rax\n\t"
                         "shlq $" XMM_RSEQ_STR(XMM_SLAB_SHIFT) ", %%rax\n\t"
                         "addq %[slabs], %%rax\n\t"
                         "xorl %k[older], %k[older]\n\t"
                         "cmpw $0xffff, 14(%%rax)\n\t" /* header 1's begin */
                         "je 2f\n\t"
                         "movq " XMM_RSEQ_STR(XMM_SLAB_PENDING_WORD) "*8(%%rax), %[older]\n\t"
                         "movq $0, " XMM_RSEQ_STR(XMM_SLAB_PENDING_WORD) "*8(%%rax)\n\t" /* commit */
                         "2:\n\t" XMM_RSEQ_ABORT_HANDLER
                         : [older] "=&r"(older), [slab_index] "=&r"(slab_index)
                         : [area] "r"(area), [index] "r"(index), [slabs] "m"(*slabs)
                         : "rax", "memory", "cc");
    *tag = slab_index << XMM_SLAB_TAG_SHIFT;
    return older;
}

enum xmm_rseq_push_result {
    XMM_RSEQ_PUSHED = 0,
    XMM_RSEQ_FULL = 1,        /* or locked for draining */
    XMM_RSEQ_FOREIGN = 2,     /* the slab is of another node than `node` */
};

/* The push itself, once rax holds this CPU's slab: the node check, then
 * `object` onto the bin whose header index is the register `header`, and
 * the commit. Scratch: r8 (`current`; `end` is compared in memory). */
#define XMM_RSEQ_PUSH_ONTO(header)                                             \
    "cmpb %h[node_bits], (%%rax)\n\t"                                         \
    "jne %l[foreign]\n\t"                                                     \
    "movl (%%rax," header ",8), %%r8d\n\t"    /* current */                   \
    "cmpw 4(%%rax," header ",8), %%r8w\n\t"   /* end */                       \
    "jae %l[full]\n\t"                                                        \
    "movq %[object], (%%rax,%%r8,8)\n\t"                                      \
    "incl %%r8d\n\t"                                                          \
    "movl %%r8d, (%%rax," header ",8)\n\t" /* commit */

/* Pushes `object` on this CPU's slab. `node_bits` holds the object's home
 * node in bits 8-15 (a page info word, src/backend/arena.h, is passed as
 * it is): the section compares that byte with the low byte of the slab's
 * node word, so no register is spent on the node alone. 11 instructions
 * in the section when the slab has room (13 with the arming store). A
 * double free is caught before, by the object's free tag
 * (src/ds/free_object.h), not here.
 * This one stays `asm goto`: it has no output operand, and labels without
 * outputs are long supported by gcc (4.5) and clang (9); the miscompile
 * of xmm_rseq_pop needs an output. Returning a code in a register instead
 * would cost the hit path an xor and a test of the code. Its scratch
 * register is r8 (and rax), so that `node_bits` can sit in one of rbx,
 * rcx, rdx (the "Q" registers, whose bits 8-15 `%h` names). */
static inline __attribute__((always_inline)) enum xmm_rseq_push_result
xmm_rseq_push(void *area, const uint32_t *index, char *const *slabs, size_t size_class, void *object,
              uint64_t node_bits)
{
    __asm__ goto(XMM_RSEQ_DESCRIPTOR
                 "1:\n\t" XMM_RSEQ_FIND_SLAB
                 XMM_RSEQ_PUSH_ONTO("%[class]")
                 "2:\n\t" XMM_RSEQ_ABORT_HANDLER
                 :
                 : [area] "r"(area), [index] "r"(index), [slabs] "m"(*slabs),
                   [class] "r"(size_class), [object] "r"(object), [node_bits] "Q"(node_bits)
                 : "rax", "r8", "memory", "cc"
                 : full, foreign);
    return XMM_RSEQ_PUSHED;
full:
    return XMM_RSEQ_FULL;
foreign:
    return XMM_RSEQ_FOREIGN;
}

/* xmm_rseq_push for an object whose page has an owner: bits 16-23 of
 * `page_bits` (the page word, src/backend/arena.h, whose bits 8-15 are the
 * node as for xmm_rseq_push) hold a CPU cache's index modulo 256, or
 * 0xfe/0xff for none. The section picks the bin from the CPU number it
 * reads anyway: `size_class` if the owner is this slab's index's low byte
 * or 0xfe and up, else the class's remote bin, `size_class` +
 * XMM_SLAB_REMOTE_OFFSET. Two compares and two conditional moves, no
 * branch: an own page and a shared one cost the same. The owner is
 * shifted out of the page word inside the section, into the register the
 * push uses next for `current`: one input register fewer, so gcc saves no
 * callee-saved register around the free path (clang still saves one). */
static inline __attribute__((always_inline)) enum xmm_rseq_push_result
xmm_rseq_push_owned(void *area, const uint32_t *index, char *const *slabs, size_t size_class,
                    void *object, uint64_t page_bits)
{
    __asm__ goto(XMM_RSEQ_DESCRIPTOR
                 "1:\n\t"
                 "movl (%[index]), %%eax\n\t"
                 "movl %k[node_bits], %%r8d\n\t"
                 "shrl $16, %%r8d\n\t" /* the owner, in r8b */
                 "leaq " XMM_RSEQ_STR(XMM_SLAB_REMOTE_OFFSET) "(%[class]), %%r9\n\t"
                 "cmpb %%al, %%r8b\n\t"
                 "cmoveq %[class], %%r9\n\t"  /* this CPU's page */
                 "cmpb $0xfe, %%r8b\n\t"
                 "cmovaeq %[class], %%r9\n\t" /* no owner */
                 "shlq $" XMM_RSEQ_STR(XMM_SLAB_SHIFT) ", %%rax\n\t"
                 "addq %[slabs], %%rax\n\t"
                 XMM_RSEQ_PUSH_ONTO("%%r9")
                 "2:\n\t" XMM_RSEQ_ABORT_HANDLER
                 :
                 : [area] "r"(area), [index] "r"(index), [slabs] "m"(*slabs),
                   [class] "r"(size_class), [object] "r"(object), [node_bits] "Q"(page_bits)
                 : "rax", "r8", "r9", "memory", "cc"
                 : full, foreign);
    return XMM_RSEQ_PUSHED;
full:
    return XMM_RSEQ_FULL;
foreign:
    return XMM_RSEQ_FOREIGN;
}

/* Pushes up to `count` objects (of node `node`) from the end of `objects`
 * onto this CPU's slab; returns how many (0 if full, locked or foreign).
 * The caller keeps objects[0 .. count - result).
 * Plain asm, not `asm goto` (see xmm_rseq_pop): `pushed` is zeroed at the
 * start of the section, after label 0, so a restart zeroes it again, and
 * every refusal jumps to label 2 (the end) with it still 0. */
static inline uint32_t xmm_rseq_push_batch(void *area, const uint32_t *index, char *slabs,
                                           size_t size_class, void *const *objects,
                                           uint32_t count, uint64_t node)
{
    uint32_t pushed;
    /* 7 inputs, 6 scratch registers and the output: 14, what -O0 leaves
     * with rbp as the frame pointer. */
    __asm__ __volatile__(XMM_RSEQ_DESCRIPTOR
                         "1:\n\t"
                         "xorl %[pushed], %[pushed]\n\t" XMM_RSEQ_FIND_SLAB
                         "cmpq %[node], (%%rax)\n\t"
                         "jne 2f\n\t"
                         "movl (%%rax,%[class],8), %%ecx\n\t"    /* current */
                         "movzwl 4(%%rax,%[class],8), %%r8d\n\t" /* end */
                         "cmpl %%r8d, %%ecx\n\t"
                         "jae 2f\n\t"
                         "subl %%ecx, %%r8d\n\t" /* room */
                         "cmpl %[count], %%r8d\n\t"
                         "cmoval %[count], %%r8d\n\t" /* n = min(room, count) */
                         "testl %%r8d, %%r8d\n\t"
                         "jz 2f\n\t"
                         "movl %[count], %%r10d\n\t"
                         "subl %%r8d, %%r10d\n\t"
                         "leaq (%[objects],%%r10,8), %%r10\n\t" /* &objects[count - n] */
                         "xorl %%r9d, %%r9d\n\t"
                         "6:\n\t"
                         "movq (%%r10,%%r9,8), %%r11\n\t"
                         "movq %%r11, (%%rax,%%rcx,8)\n\t"
                         "incl %%ecx\n\t"
                         "incl %%r9d\n\t"
                         "cmpl %%r8d, %%r9d\n\t"
                         "jb 6b\n\t"
                         "movl %%r8d, %[pushed]\n\t"
                         "movl %%ecx, (%%rax,%[class],8)\n\t" /* commit */
                         "2:\n\t" XMM_RSEQ_ABORT_HANDLER
                         : [pushed] "=&r"(pushed)
                         : [area] "r"(area), [index] "r"(index), [slabs] "rm"(slabs),
                           [class] "r"(size_class), [objects] "r"(objects), [count] "r"(count),
                           [node] "r"(node)
                         : "rax", "rcx", "r8", "r9", "r10", "r11", "memory", "cc");
    return pushed;
}

/* Pops up to `count` objects from this CPU's slab into `out`; returns how
 * many, and the slab's node in *node. 0 if empty or locked.
 * Plain asm, not `asm goto` (see xmm_rseq_pop): `popped` is zeroed at the
 * start of the section and an empty slab jumps to label 2 (the end). */
static inline uint32_t xmm_rseq_pop_batch(void *area, const uint32_t *index, char *slabs,
                                          size_t size_class, void **out, uint32_t count,
                                          uint64_t *node)
{
    uint32_t popped;
    uint64_t slab_node;
    /* 6 inputs, 6 scratch registers and 2 outputs: 14, what -O0 leaves
     * with rbp as the frame pointer (rdx, free once `available` is known,
     * points at the slots taken). */
    __asm__ __volatile__(XMM_RSEQ_DESCRIPTOR
                         "1:\n\t"
                         "xorl %[popped], %[popped]\n\t" XMM_RSEQ_FIND_SLAB
                         "movq (%%rax), %[slab_node]\n\t"
                         "movl (%%rax,%[class],8), %%ecx\n\t"    /* current */
                         "movzwl 6(%%rax,%[class],8), %%edx\n\t" /* begin */
                         "cmpl %%edx, %%ecx\n\t"
                         "jbe 2f\n\t"
                         "movl %%ecx, %%r8d\n\t"
                         "subl %%edx, %%r8d\n\t" /* available */
                         "cmpl %[count], %%r8d\n\t"
                         "cmoval %[count], %%r8d\n\t" /* n = min(available, count) */
                         "testl %%r8d, %%r8d\n\t"
                         "jz 2f\n\t"
                         "subl %%r8d, %%ecx\n\t"      /* new current */
                         "leaq (%%rax,%%rcx,8), %%rdx\n\t" /* the first slot taken */
                         "xorl %%r9d, %%r9d\n\t"
                         "6:\n\t"
                         "movq (%%rdx,%%r9,8), %%r11\n\t"
                         "movq %%r11, (%[out],%%r9,8)\n\t"
                         "incl %%r9d\n\t"
                         "cmpl %%r8d, %%r9d\n\t"
                         "jb 6b\n\t"
                         "movl %%r8d, %[popped]\n\t"
                         "movl %%ecx, (%%rax,%[class],8)\n\t" /* commit */
                         "2:\n\t" XMM_RSEQ_ABORT_HANDLER
                         : [popped] "=&r"(popped), [slab_node] "=&r"(slab_node)
                         : [area] "r"(area), [index] "r"(index), [slabs] "rm"(slabs),
                           [class] "r"(size_class), [out] "r"(out), [count] "r"(count)
                         : "rax", "rcx", "rdx", "r8", "r9", "r11", "memory", "cc");
    *node = slab_node;
    return popped;
}

/* Moves a bin of this CPU's slab out of its first slots: if the bin's
 * header still has `from_begin` as its begin (so it is not locked, nor
 * moved already), copies its objects to the slots from `to_begin` on and
 * commits the header `to_header` (the new end and begin, `current` 0) plus
 * the new `current`, to_begin + the count. Returns true if it moved.
 * The commit is a compare-and-swap of the whole header with the value the
 * section read, not a store: a release (src/mem/cpu_cache.c) locks
 * headers with compare-and-swaps from other CPUs, and a plain store of
 * `begin` and `end` could undo a lock taken after this section read the
 * header; so can grow_capacity's. The copy before the commit writes only
 * slots no header covers yet (the caller's slots `to_begin` and up are
 * this bin's own, unused while the bin is elsewhere): an abort or a
 * failed compare leaves nothing visible. A slow path, never a hit:
 * about 14 instructions and one per object. */
static inline bool xmm_rseq_move_bin(void *area, const uint32_t *index, char *slabs, size_t bin,
                                     uint64_t from_begin, uint64_t to_begin, uint64_t to_header)
{
    bool moved;
    /* The compare-and-swap wants the expected header in rax; the slab
     * is in rdx. */
    __asm__ __volatile__(XMM_RSEQ_DESCRIPTOR
                         "1:\n\t"
                         "movl (%[index]), %%edx\n\t"
                         "shlq $" XMM_RSEQ_STR(XMM_SLAB_SHIFT) ", %%rdx\n\t"
                         "addq %[slabs], %%rdx\n\t"
                         "movq (%%rdx,%[bin],8), %%rax\n\t" /* the header */
                         "movq %%rax, %%rcx\n\t"
                         "shrq $" XMM_RSEQ_STR(XMM_SLAB_BEGIN_SHIFT) ", %%rcx\n\t"
                         "cmpq %[from_begin], %%rcx\n\t"
                         "jne 2f\n\t" /* ZF clear: not moved */
                         "movl %%eax, %%r8d\n\t"
                         "subl %%ecx, %%r8d\n\t" /* the count */
                         "leaq (%%rdx,%%rcx,8), %%r9\n\t"
                         "leaq (%%rdx,%[to_begin],8), %%r10\n\t"
                         "movq %[to_header], %%rcx\n\t"
                         "addq %%r8, %%rcx\n\t"
                         "addq %[to_begin], %%rcx\n\t" /* the new header */
                         "6:\n\t"
                         "subl $1, %%r8d\n\t"
                         "jb 7f\n\t"
                         "movq (%%r9,%%r8,8), %%r11\n\t"
                         "movq %%r11, (%%r10,%%r8,8)\n\t"
                         "jmp 6b\n\t"
                         "7:\n\t"
                         "lock cmpxchgq %%rcx, (%%rdx,%[bin],8)\n\t" /* commit */
                         "2:\n\t" XMM_RSEQ_ABORT_HANDLER
                         : [moved] "=@ccz"(moved)
                         : [area] "r"(area), [index] "r"(index), [slabs] "rm"(slabs),
                           [bin] "r"(bin), [from_begin] "r"(from_begin),
                           [to_begin] "r"(to_begin), [to_header] "rm"(to_header)
                         : "rax", "rcx", "rdx", "r8", "r9", "r10", "r11", "memory");
    return moved;
}

/* Sets up this CPU's slab on its first use, if it is slab `expected`
 * (the caller's read of the index; false, with nothing written, if the
 * thread now runs on another): stores `node` into word 0, then
 * `headers[bin]` into each header 1..count-1 that is still 0. A slab is
 * all zero until then, and a zero header reads as empty to every pop and
 * as full to every push, so each operation on it takes its slow path,
 * which calls this.
 * The stores are plain: no other section on this slab runs while this
 * one does (it would have to preempt it, which restarts it), so the node
 * word is in place before any header another section sees. An abort
 * leaves some headers set: each is a valid empty bin, and the restart
 * skips it. A release (src/mem/cpu_cache.c) locks only headers that are
 * not 0, with compare-and-swaps, so no store here lands on a lock. Slow
 * path, once per slab: about 9 instructions and 5 per header. */
static inline bool xmm_rseq_set_up_slab(void *area, const uint32_t *index, char *slabs,
                                        uint32_t expected, uint64_t node,
                                        const uint64_t *headers, uint32_t count)
{
    bool on_slab;
    __asm__ __volatile__(XMM_RSEQ_DESCRIPTOR
                         "1:\n\t"
                         "movl (%[index]), %%eax\n\t"
                         "cmpl %[expected], %%eax\n\t"
                         "jne 2f\n\t" /* ZF clear: another slab */
                         "shlq $" XMM_RSEQ_STR(XMM_SLAB_SHIFT) ", %%rax\n\t"
                         "addq %[slabs], %%rax\n\t"
                         "movq %[node], (%%rax)\n\t"
                         "movl $1, %%ecx\n\t"
                         "6:\n\t"
                         "cmpq $0, (%%rax,%%rcx,8)\n\t"
                         "jne 7f\n\t"
                         "movq (%[headers],%%rcx,8), %%r8\n\t"
                         "movq %%r8, (%%rax,%%rcx,8)\n\t"
                         "7:\n\t"
                         "incl %%ecx\n\t"
                         "cmpl %[count], %%ecx\n\t"
                         "jb 6b\n\t" /* falls through with ZF set */
                         "2:\n\t" XMM_RSEQ_ABORT_HANDLER
                         : [on_slab] "=@ccz"(on_slab)
                         : [area] "r"(area), [index] "r"(index), [slabs] "rm"(slabs),
                           [expected] "r"(expected), [node] "r"(node), [headers] "r"(headers),
                           [count] "r"(count)
                         : "rax", "rcx", "r8", "memory");
    return on_slab;
}

#endif /* XMM_RSEQ_PERCPU_H */
