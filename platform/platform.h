/*
 * platform.h - the seam between XMM and the machine.
 *
 * Everything XMM asks of the kernel or the CPU goes through the functions
 * declared here; nothing above platform/ includes a system header for
 * memory mapping, NUMA policy, topology, time or error output.
 *
 * Rules every function here keeps:
 *   - it never calls malloc (directly or through a library), so it may run
 *     inside malloc, before libc is initialised, and inside a fork handler;
 *   - it reports failure through its return value and never aborts, except
 *     xmm_platform_abort();
 *   - it leaves errno as it was, failed or not, except the file functions
 *     whose comments say "with errno" (xmm_os_open_*, xmm_os_read_fd): a
 *     malloc or free that succeeds must not change the caller's errno
 *     (glibc keeps it across free since 2.33; POSIX.1-2024 requires it),
 *     and the kernel refuses things on the way to a success (madvise on
 *     locked pages, a chunk too large for ulimit -v, files sysfs lacks);
 *   - it is thread-safe unless its comment says otherwise.
 */
#ifndef XMM_PLATFORM_H
#define XMM_PLATFORM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Upper bounds for static tables. Machines beyond them still work: extra
 * CPUs share slots (cpu % XMM_MAX_CPUS) and extra nodes fold onto node 0. */
#define XMM_MAX_NODES 64
#define XMM_MAX_CPUS 1024

/* ---- memory ------------------------------------------------------------ */

/* The kernel's base page size (4096 on x86_64). Valid after any call to
 * xmm_platform_topology_read(), or lazily on first use. */
size_t xmm_os_page_size(void);

/* Maps `size` bytes of private anonymous read-write memory whose start is a
 * multiple of `alignment` (a power of two, >= the page size). The memory
 * reads as zero and is committed lazily by the kernel on first touch; it
 * is exempt from overcommit accounting (MAP_NORESERVE), which suits XMM's
 * own reservations. Returns NULL if the kernel refuses (ulimit -v,
 * overcommit), errno as it was: the caller says ENOMEM. An alignment larger than the size
 * (64 MiB for a 4 MiB chunk) is first sought without reserving more than
 * `size` (the aligned address below the kernel's choice); only if that is
 * taken does it reserve size + alignment for a moment. */
void *xmm_os_map(size_t size, size_t alignment);

/* Like xmm_os_map, but the address is `offset` past a multiple of
 * `alignment` (offset < alignment, a page multiple): the mapping is the
 * tail of an aligned range whose first `offset` bytes are not mapped (a
 * chunk without the hole at its start: XMM reserves only what it uses). */
void *xmm_os_map_offset(size_t size, size_t alignment, size_t offset);

/* Like xmm_os_map, but accounted: the kernel's overcommit policy may
 * refuse it. For one block a program asked for, so that an impossible
 * size fails at once, as with glibc, instead of at first touch. */
void *xmm_os_map_accounted(size_t size, size_t alignment);

/* Resizes the mapping [addr, addr + old_size) to new_size bytes (both
 * page multiples) with mremap(2): in place when `to` is NULL (NULL if the
 * pages after it are taken), else moved onto `to`, a mapping of new_size
 * bytes from xmm_os_map that it replaces (NULL on failure, `to` then left
 * as it was). Moving moves page tables, not bytes; the pages keep their
 * contents, NUMA policy and accounting. Returns the new address. */
void *xmm_os_remap(void *addr, size_t old_size, size_t new_size, void *to);

/* Unmaps [addr, addr + size). `addr` and `size` must be page-aligned and
 * come from xmm_os_map. Failure (which only happens on bad arguments) is
 * ignored. */
void xmm_os_unmap(void *addr, size_t size);

/* Gives the physical pages behind [addr, addr + size) back to the kernel
 * while keeping the range mapped. With `lazy` false (MADV_DONTNEED) the
 * range reads as zero afterwards; with `lazy` true (MADV_FREE) the kernel
 * may keep the old contents until it needs the memory, so the caller must
 * not assume zeroes. Returns 0, or -1 if the kernel refused (the memory is
 * then still valid and merely resident). */
int xmm_os_purge(void *addr, size_t size, bool lazy);

/* Makes [addr, addr + size), part of a private anonymous mapping of
 * XMM's, inaccessible (PROT_NONE): any access faults. `addr` and `size`
 * are multiples of the page size. With mprotect, or, where a sandbox
 * refuses mprotect (a seccomp filter installed after start-up), with a
 * PROT_NONE mapping put over the range (its contents are lost). Returns
 * 0, or -1 if the kernel refused both (the range is then still
 * read-write). */
int xmm_os_protect_none(void *addr, size_t size);

/* Asks for transparent huge pages on [addr, addr + size) (enable true,
 * MADV_HUGEPAGE) or forbids them (MADV_NOHUGEPAGE). Advisory: returns -1 if
 * the kernel has no THP, and nothing changes. */
int xmm_os_advise_huge(void *addr, size_t size, bool enable);

/* The bytes of [addr, addr + size) that are resident now, counted in
 * kernel pages; `addr` page-aligned, the range mapped. A snapshot that may
 * be stale at once. Read from /proc/self/pagemap, not with mincore(2):
 * systemd's @system-service allow-list leaves mincore out (a page-cache
 * side channel), and a unit with that filter and no SystemCallErrorNumber
 * is killed by its first call (found in a sandbox trial; open and pread
 * are on every such list, and a filter refuses them with an error, not a
 * kill). Returns `size` if the file cannot be read (no /proc, no file
 * descriptor left), so that a caller deciding on it errs as if the range
 * were resident. Costs an open, a close and one pread per 2 MiB, and 4
 * KiB of stack. */
size_t xmm_os_resident_bytes(void *addr, size_t size);

/* NUMA placement policies for xmm_os_bind. */
enum xmm_bind_mode {
    XMM_BIND_STRICT,     /* MPOL_BIND: only `nodes`, fail rather than spill */
    XMM_BIND_PREFERRED,  /* MPOL_PREFERRED: first node of `nodes`, may spill */
    XMM_BIND_INTERLEAVE, /* MPOL_INTERLEAVE: page by page over `nodes` */
};

/* Sets the NUMA policy of [addr, addr + size): through libnuma's `mbind`
 * once xmm_os_load_numa has loaded it, before that (and where it cannot be
 * loaded) with the mbind system call, the call libnuma's `mbind` makes.
 * `nodes` is a bit mask of node numbers (bit n = node n). Call it before
 * the range is touched: the policy places the pages faulted in afterwards,
 * and pages already resident stay where they are. Returns 0, or -1 if the
 * kernel has no NUMA support or refused the mask; the memory is still
 * usable, with the process's default policy. Allocation-free: it runs
 * inside malloc. Thread-safe. */
int xmm_os_bind(void *addr, size_t size, uint64_t nodes, enum xmm_bind_mode mode);

/* Loads libnuma (libnuma.so.1) with dlopen and takes its `mbind` for
 * xmm_os_bind. XMM does not link libnuma: loading it runs its constructor,
 * which reads sysfs through stdio and allocates (about 490 KiB more peak
 * RSS for `/bin/true` preloaded, and 0.9 ms a process start), and a
 * process on a one-node machine has nothing to bind. So XMM loads it only
 * where there are nodes to choose between.
 * The one exception to this file's rules: dlopen allocates, so call this
 * only once XMM serves allocations (init.c's phase 2). Returns true if
 * libnuma's `mbind` is in use (loaded now or by an earlier call); false
 * with the loader's message in `why` (NUL-terminated, cut to `why_size`)
 * if not (no libnuma installed, a static executable). Thread-safe;
 * idempotent. */
bool xmm_os_load_numa(char *why, size_t why_size);


/* ---- topology ---------------------------------------------------------- */

struct xmm_topology {
    int node_count;               /* highest node number + 1 (>= 1) */
    int cpu_count;                /* highest possible CPU + 1, at most
                                     XMM_MAX_CPUS (tables indexed by CPU) */
    int cpu_index_bound;          /* above every CPU number and mm_cid the
                                     kernel can report (its nr_cpu_ids, or
                                     the size of its CPU mask in bits when
                                     sysfs is hidden); 0 if unknown */
    uint64_t nodes_online;        /* bit n: node n exists and has memory */
    uint64_t nodes_allowed;       /* subset the process may allocate on:
                                     cpuset (Mems_allowed) and the process
                                     memory policy (numactl --membind) */
    uint8_t node_of_cpu[XMM_MAX_CPUS];
};

/* Reads the machine's topology from sysfs and /proc with raw system calls
 * (libnuma's own initialisation allocates, so it cannot run inside malloc).
 * Never fails: on a kernel without NUMA it describes one node, node 0,
 * holding every CPU. Not thread-safe; called once from XMM's init. */
void xmm_platform_topology_read(struct xmm_topology *topology);

/* The CPU the calling thread runs on now (may change right after), or 0 if
 * the kernel cannot tell. Uses the vDSO: tens of nanoseconds. */
int xmm_os_current_cpu(void);

/* ---- restartable sequences and membarrier ------------------------------ */

/* Whether this build has the per-CPU caches' critical sections: the
 * architecture's rseq_percpu.h exists for x86_64 only. ThreadSanitizer
 * builds leave them out: TSan cannot see the hand-off of objects through a
 * CPU's cache and reports every reuse as a race; they test the per-thread
 * front end and the lock-free central layer instead. */
#if defined(__x86_64__) && !defined(__SANITIZE_THREAD__)
#define XMM_PER_CPU_CACHES 1
#else
#define XMM_PER_CPU_CACHES 0
#endif

/* The kernel's rseq area (struct rseq of linux/rseq.h, the fields XMM
 * reads): 32 bytes, 32-byte aligned. The kernel writes cpu_id on every
 * return to user space of a registered thread; node_id and mm_cid from
 * Linux 6.3 (xmm_os_rseq_feature_size() >= 28). A thread whose
 * registration failed holds cpu_id -2 (glibc), an unregistered area -1. */
struct xmm_rseq_area {
    uint32_t cpu_id_start;
    uint32_t cpu_id;
    uint64_t rseq_cs; /* the current critical section's descriptor, or 0 */
    uint32_t flags;
    uint32_t node_id;
    uint32_t mm_cid;  /* compact per-process concurrency id */
    uint32_t padding;
} __attribute__((aligned(32)));
#define XMM_RSEQ_CPU_ID_OFFSET 4
#define XMM_RSEQ_MM_CID_OFFSET 24
_Static_assert(__builtin_offsetof(struct xmm_rseq_area, cpu_id) == XMM_RSEQ_CPU_ID_OFFSET,
               "rseq ABI: cpu_id");
_Static_assert(__builtin_offsetof(struct xmm_rseq_area, mm_cid) == XMM_RSEQ_MM_CID_OFFSET,
               "rseq ABI: mm_cid");
_Static_assert(sizeof(struct xmm_rseq_area) == 32, "rseq ABI: area size");

/* The rseq area the C library registered for the calling thread, or NULL
 * (glibc older than 2.35, GLIBC_TUNABLES=glibc.pthread.rseq=0). */
void *xmm_os_rseq_libc_area(void);

/* Registers `area` (32 bytes, 32-byte aligned, zeroed, valid until the
 * thread exits or unregisters) as the calling thread's rseq area with the
 * x86 signature 0x53053053. false if the kernel refuses (no rseq, seccomp,
 * another area already registered). */
bool xmm_os_rseq_register(void *area);

/* Undoes xmm_os_rseq_register for the calling thread. */
void xmm_os_rseq_unregister(void *area);

/* getauxval(AT_RSEQ_FEATURE_SIZE): 28 or more when the kernel fills
 * node_id and mm_cid (Linux 6.3+), 0 when it does not say. */
unsigned xmm_os_rseq_feature_size(void);

/* Registers the process for membarrier(PRIVATE_EXPEDITED_RSEQ). 0 or -1. */
int xmm_os_membarrier_rseq_register(void);

/* Aborts (restarts) every rseq critical section in progress on every CPU
 * running a thread of this process; when it returns, no section that
 * started before the call can still commit. 0 or -1. */
int xmm_os_membarrier_rseq(void);

/* ---- locks ---------------------------------------------------------------- */

/* A mutex for the allocator's rare paths (page heap, metadata, registries)
 * that knows which thread holds it, so that the child of a fork() can tell
 * a lock held by the forking thread itself (fork from a signal handler that
 * interrupted XMM: the interrupted call completes when the handler returns)
 * from one held by a thread that does not exist in the child (its update
 * was cut off half-way: the structure must be set aside). XMM never takes
 * a lock in a fork handler: glibc runs the prepare handlers before it takes
 * its stdio list lock, so a lock held there can deadlock against a thread
 * in fflush() (glibc bug 19431's scenario) or against the signal handler's
 * own interrupted context.
 *
 * One 64-bit word: 0 when free, else the holder's thread pointer with bit 0
 * set while a thread may be sleeping on it (a futex on the low half). It
 * spins briefly, then sleeps; no fairness. Zero-initialised memory is an
 * unlocked lock. Not recursive. */
struct xmm_lock {
    uint64_t word;
};
#define XMM_LOCK_INITIALIZER {0}

/* Takes `lock`, waiting for it. Returns false, without taking it, if the
 * calling thread holds it already: a signal handler that interrupted XMM
 * inside the lock and calls malloc or free. The caller must then do
 * without (fail an allocation, defer or skip work): waiting would never
 * end. */
__attribute__((warn_unused_result)) bool xmm_lock_acquire(struct xmm_lock *lock);
void xmm_lock_release(struct xmm_lock *lock);

enum xmm_lock_holder {
    XMM_LOCK_FREE,          /* nobody holds it */
    XMM_LOCK_HELD_BY_CALLER,/* the calling thread holds it */
    XMM_LOCK_HELD_BY_OTHER, /* another thread (in a fork child: a lost one) */
};
/* Who holds `lock`, as of the call. In a fork child the forking thread is
 * "the caller" for locks it held in the parent. */
enum xmm_lock_holder xmm_lock_holder(const struct xmm_lock *lock);

/* Makes `lock` free, whoever held it. Only for a fork child repairing a
 * lock whose holder is gone. */
void xmm_lock_reset(struct xmm_lock *lock);

/* ---- time, identity, environment ---------------------------------------- */

/* Monotonic time in nanoseconds, at the resolution of one kernel tick
 * (1-10 ms; CLOCK_MONOTONIC_COARSE through the vDSO, a few ns per call).
 * For decay timestamps on allocation paths, not for timing short intervals.
 * 0 if no clock can be read (a sandbox that refuses the system call). */
uint64_t xmm_os_now_ns(void);

/* Monotonic time in nanoseconds, to the clock source's resolution
 * (CLOCK_MONOTONIC through the vDSO: tens of ns with the TSC, more in some
 * VMs). For timing intervals shorter than a tick, on slow paths only. 0 if
 * no clock can be read. Async-signal-safe; never allocates. */
uint64_t xmm_os_precise_now_ns(void);

/* 64 unpredictable bits for a per-process secret: getrandom(2) without
 * blocking, mixed with the 16 random bytes the kernel gives every process
 * (AT_RANDOM), so that a kernel without getrandom or an early boot still
 * gives a value no other process shares. Never allocates; once at init. */
uint64_t xmm_os_random_seed(void);

/* The calling process's id (getpid(2)): a system call, for slow paths. */
int xmm_os_process_id(void);

/* The calling thread's id (gettid). */
int xmm_os_thread_id(void);

/* True when thread `thread` of process `process` no longer exists (the
 * kernel says ESRCH to a null signal): it has exited, and nothing of it
 * runs any more. False while it exists or exits, and if the kernel cannot
 * tell. Never allocates; errno is left as it was. */
bool xmm_os_thread_gone(int process, int thread);

/* Value of environment variable `name`, or NULL. Safe before libc's own
 * initialisation has finished (reads the process environment directly). */
const char *xmm_os_getenv(const char *name);

/* ---- threads, signals, files, process hooks ------------------------------ */

/* Starts a detached thread running body(argument), with every signal
 * blocked in it. 0, or an errno value (the caller goes on without it). The
 * new thread may allocate. */
int xmm_os_thread_start(void *(*body)(void *), void *argument);

/* setsid(2): the new session's id, or -1 with errno. */
int xmm_os_new_session(void);

/* When the process's first thread has ended (pthread_exit from main: it
 * stays a zombie until the whole process ends), how many threads are
 * left besides it; -1 while it runs, or when /proc cannot tell. Reads
 * /proc/self/task/PID/stat: never allocates. */
int xmm_os_threads_after_main(void);

/* Whether the calling thread blocks a signal that has a handler now. A
 * signal handler runs with its own signal blocked (unless installed with
 * SA_NODEFER), so false means the caller is very likely not in a handler:
 * for work a handler must not do (starting a thread). A signal blocked
 * with no handler (SIG_DFL or SIG_IGN, as a signal read from a signalfd
 * or by sigwait) does not count, unless it was installed with
 * SA_RESETHAND (its handler, reset to SIG_DFL, may be running). One system call, and one more per
 * blocked signal. */
bool xmm_os_handled_signal_blocked(void);
/* Whether the calling thread blocks signal `signal_number` now (any
 * signal number; true if the mask cannot be read). One system call. */
bool xmm_os_signal_blocked(int signal_number);

/* Sleeps the calling thread for `ns` nanoseconds (resumes after signals). */
void xmm_os_sleep_ns(uint64_t ns);

/* A per-thread value with a destructor run at thread exit (pthread keys).
 * create: 0 or an errno value; set: 0 or an errno value (may allocate in
 * libc beyond the first 32 keys). */
typedef unsigned xmm_os_thread_key;
int xmm_os_thread_key_create(xmm_os_thread_key *key, void (*destructor)(void *));
int xmm_os_thread_key_set(xmm_os_thread_key key, const void *value);

/* Installs `handler` for `signal_number` (SA_RESTART). 0 or -1. */
int xmm_os_signal_handler(int signal_number, void (*handler)(int));

/* Functions run at exit(), and around fork() (pthread_atfork: before it
 * in the forking thread, then in the parent or in the child); 0 or an
 * errno value. Both register with libc, which may allocate: init phase 2
 * only. */
int xmm_os_at_exit(void (*hook)(void));
int xmm_os_at_fork(void (*prepare)(void), void (*parent)(void), void (*child)(void));

/* A wake-up a signal handler can post: post is async-signal-safe (atomic
 * adds and a futex wake); wait blocks until at least one post is pending
 * or `timeout_ns` has passed (false), consumes all pending ones and gives
 * how many posts there have been in `posted`; the one waiting thread
 * calls done with that count once it has served them. settle (at exit) waits up to `timeout_ns` for every post made so
 * far to be served: false if they were not. forget (in a fork child)
 * drops the posts not served: the parent's. */
struct xmm_os_event {
    uint32_t pending;
    uint32_t posted; /* ever */
    uint32_t served; /* of `posted`, those the waiter has finished with */
};
void xmm_os_event_post(struct xmm_os_event *event);
bool xmm_os_event_wait(struct xmm_os_event *event, uint64_t timeout_ns, uint32_t *posted);
void xmm_os_event_done(struct xmm_os_event *event, uint32_t posted);
bool xmm_os_event_settle(struct xmm_os_event *event, uint64_t timeout_ns);
void xmm_os_event_forget(struct xmm_os_event *event);

/* A private copy of standard error (close-on-exec, descriptor >= 64), for
 * output at exit after a program closed its own fd 2, with the identity
 * of the file both referred to when it was taken. */
struct xmm_os_saved_stderr {
    bool taken;          /* xmm_os_save_stderr ran */
    bool known;          /* stderr was open then: device and inode hold */
    int fd;              /* the copy; -1: none could be made */
    uint64_t device, inode;
};

/* Takes the copy: false if stderr is closed (then no output goes to fd 2
 * later) or no descriptor is left for the copy (then fd 2 is used while
 * it is still that file). */
bool xmm_os_save_stderr(struct xmm_os_saved_stderr *saved);

/* Where output meant for the saved stderr can go now: the copy, while it
 * still refers to that file; else fd 2, if it does; else -1 (also when
 * stderr was closed at the save). Before any save: fd 2. A program that
 * closes every descriptor above 2 (a daemon's close_range), or fd 2, and
 * opens files of its own may be given one of those numbers for them:
 * output there would land in its data. Never allocates;
 * async-signal-safe. */
int xmm_os_saved_stderr_fd(const struct xmm_os_saved_stderr *saved);

/* The program's name as the kernel gives it (/proc/self/comm: at most 15
 * bytes, what core_pattern's %e uses), else the name it was started as;
 * NUL-terminated in `name` (`size` bytes). Never allocates. */
void xmm_os_program_name(char *name, size_t size);

/* Opens `path` for appending (created 0644, close-on-exec): a descriptor,
 * or -1 with errno. xmm_os_close closes one. */
int xmm_os_open_append(const char *path);
void xmm_os_close(int fd);

/* Opens `path` for writing from its start (created 0644, truncated,
 * close-on-exec), or for reading: a descriptor, or -1 with errno. */
int xmm_os_open_write(const char *path);
int xmm_os_open_read(const char *path);

/* True when `path` names a regular file (not through a symbolic link) or
 * nothing: a file that may be replaced by renaming another over it. */
bool xmm_os_replaceable(const char *path);

/* rename(2): moves `from` over `to` at once (one directory). 0, or -1
 * with errno. */
int xmm_os_rename(const char *from, const char *to);

/* unlink(2), errno kept: removes a file XMM made and gives up on. */
void xmm_os_unlink(const char *path);

/* Reads up to `size` bytes from `fd` (retrying on EINTR): the count, 0 at
 * the end of the file, -1 with errno. */
long xmm_os_read_fd(int fd, void *buffer, size_t size);

/* ---- call stacks ----------------------------------------------------------- */

/* The return addresses of the calling thread's stack, innermost first:
 * frames[0] is the return address into the function that called
 * xmm_os_backtrace. At most `max`; returns how many. It reads the unwind
 * tables (.eh_frame), so it works without frame pointers.
 *
 * On x86_64 (x86_64/unwind.c) each return address's unwind rule is
 * computed once and cached: a few ns a frame, where glibc's backtrace(3)
 * interprets the tables on every call (about 200 ns a frame). Stacks with
 * a frame it does not follow (a signal frame, a DWARF expression) come
 * from backtrace(3), as everything does elsewhere (xmm_os_backtrace_libc).
 *
 * backtrace(3) allocates on its first call (glibc loads libgcc_s with
 * dlopen): call xmm_os_backtrace_prepare() once where malloc is allowed
 * (init phase 2) before any call from inside the allocator; it also maps
 * the rule cache (without it, every stack comes from backtrace(3)). After
 * it, neither function allocates. They take no lock of XMM's; backtrace(3)
 * may take the dynamic loader's (recursive) lock of the list of loaded
 * objects. Not async-signal-safe in general: a caller inside a signal
 * handler must know that the code it interrupted is not itself unwinding. */
void xmm_os_backtrace_prepare(void);
int xmm_os_backtrace(void **frames, int max);
int xmm_os_backtrace_libc(void **frames, int max);
/* The same from backtrace(3), starting at the return address `first` (its
 * caller's __builtin_return_address(0)), for unwinders that fall back. */
int xmm_os_backtrace_libc_from(void **frames, int max, const void *first);

/* The address range [*start, *end) of the executable segments of the
 * loaded object (shared library) that holds `address`: for telling XMM's
 * own frames from the program's. false, and nothing set, if `address` is
 * in the main program (XMM linked statically: its code and the program's
 * are one object) or in no loaded object. Walks the loaded objects
 * (dl_iterate_phdr, which does not allocate); for init, not for hot paths. */
bool xmm_os_code_range(const void *address, uintptr_t *start, uintptr_t *end);

/* The file of the loaded object that holds `address` (the main program's
 * from /proc/self/exe) into `name` (`size` bytes, NUL-terminated, cut if
 * longer), and its load bias: `address` - *bias is the address in the
 * file's own numbering, which addr2line and nm use. false if no loaded
 * object holds it. Never allocates; walks the loaded objects. */
bool xmm_os_code_object(const void *address, char *name, size_t size, uintptr_t *bias);

/* ---- errors ------------------------------------------------------------- */

/* Writes `length` bytes to standard error with write(2), retrying on EINTR
 * and partial writes. Never allocates; async-signal-safe. */
void xmm_os_write_error(const char *text, size_t length);

/* Writes to file descriptor `fd` the same way. Returns 0, or the errno
 * of the write that failed (EIO for one that wrote nothing); errno is
 * left as it was either way. */
int xmm_os_write_fd(int fd, const char *text, size_t length);

/* The name and English text of an errno value ("ENOSPC", "No space left
 * on device"), from static tables: never allocates, ignores the locale.
 * Unknown values give "errno" and "unknown error". */
const char *xmm_os_error_name(int error);
const char *xmm_os_error_text(int error);

/* Terminates the process with SIGABRT (a core dump where enabled). */
_Noreturn void xmm_platform_abort(void);

#endif /* XMM_PLATFORM_H */
