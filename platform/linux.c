/*
 * linux.c - platform primitives for Linux (see platform.h for contracts).
 *
 * Only raw system calls and allocation-free libc functions are used here:
 * this file runs inside malloc, before libc has finished initialising, and
 * in fork handlers. The one exception is xmm_os_load_numa's dlopen, which
 * init.c calls once XMM can serve the allocations it makes.
 */
#include "platform.h"

#include <dlfcn.h>
#include <errno.h>
#include <execinfo.h>
#include <fcntl.h>
#include <link.h>
#include <ck_pr.h>
#include <numaif.h> /* MPOL_* (libnuma-dev); libnuma itself is loaded by dlopen */
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h> /* rename */
#include <stdlib.h>
#include <string.h>
#include <linux/futex.h>
#include <linux/membarrier.h>
#include <sys/auxv.h>
#include <sys/mman.h>
#include <sys/rseq.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

static size_t os_page_size;

/* Declared first in a function that makes system calls: errno is as it
 * was whenever the function returns (platform.h's rule), whatever calls
 * failed on the way. */
static inline void restore_errno(const int *saved)
{
    errno = *saved;
}
#define KEEP_ERRNO                                                                        \
    const int kept_errno_ __attribute__((cleanup(restore_errno), unused)) = errno

size_t xmm_os_page_size(void)
{
    if (os_page_size == 0) {
        long value = sysconf(_SC_PAGESIZE);
        os_page_size = value > 0 ? (size_t)value : 4096;
    }
    return os_page_size;
}

/* ---- memory ------------------------------------------------------------ */

#ifndef MAP_FIXED_NOREPLACE
#define MAP_FIXED_NOREPLACE 0x100000 /* Linux 4.17 */
#endif

/* Aligned addresses below the kernel's first choice that map_aligned
 * asks for before it over-maps. */
#define MAP_ALIGNED_TRIES 16

/* A mapping of `size` bytes at an address `offset` past a multiple of
 * `alignment` (xmm_os_map_offset; offset 0 for xmm_os_map). */
static void *map_aligned(size_t size, size_t alignment, size_t offset, int flags)
{
    size_t page = xmm_os_page_size();
    if (alignment < page)
        alignment = page;
    if (size == 0 || size > SIZE_MAX - alignment || offset >= alignment || offset % page)
        return NULL;
    KEEP_ERRNO; /* EEXIST and ENOMEM of the tries are not the caller's */
    int protection = PROT_READ | PROT_WRITE;
    /* Optimistic: the kernel often hands out aligned addresses already. */
    void *first = mmap(NULL, size, protection, flags, -1, 0);
    if (first == MAP_FAILED)
        return NULL;
    if ((((uintptr_t)first - offset) & (alignment - 1)) == 0)
        return first;
    munmap(first, size);
    /* The kernel places mappings top-down, so an aligned address a little
     * below its choice is most often free: asking for it costs no extra
     * address space, where over-mapping by a large alignment fails under a
     * tight `ulimit -v` although the mapping itself fits. The first one
     * below is often taken: the kernel's choice was the top of a gap whose
     * bottom is the previous aligned mapping (a chunk, which leaves the
     * rest of its 64 MiB slot free). Only EEXIST moves on to the next;
     * kernels before 4.17 take MAP_FIXED_NOREPLACE as a hint, and any
     * other address is refused. */
    uintptr_t below = (((uintptr_t)first - offset) & ~(uintptr_t)(alignment - 1)) + offset;
    for (int tries = 0; tries < MAP_ALIGNED_TRIES && (uintptr_t)first > offset && below > offset;
         tries++, below -= alignment) {
        void *hinted = mmap((void *)below, size, protection, flags | MAP_FIXED_NOREPLACE, -1, 0);
        if (hinted == (void *)below)
            return hinted;
        if (hinted != MAP_FAILED) {
            munmap(hinted, size);
            break;
        }
        if (errno != EEXIST || below < alignment + offset)
            break;
    }
    /* Over-map by the alignment and trim both ends. */
    size_t padded = size + alignment;
    char *raw = mmap(NULL, padded, protection, flags, -1, 0);
    if (raw == MAP_FAILED)
        return NULL;
    uintptr_t start = (((uintptr_t)raw - offset + alignment - 1) & ~(uintptr_t)(alignment - 1)) + offset;
    size_t head = start - (uintptr_t)raw;
    size_t tail = padded - head - size;
    if (head)
        munmap(raw, head);
    if (tail)
        munmap((char *)start + size, tail);
    return (void *)start;
}

void *xmm_os_map(size_t size, size_t alignment)
{
    return map_aligned(size, alignment, 0, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE);
}

void *xmm_os_map_offset(size_t size, size_t alignment, size_t offset)
{
    return map_aligned(size, alignment, offset, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE);
}

void *xmm_os_map_accounted(size_t size, size_t alignment)
{
    return map_aligned(size, alignment, 0, MAP_PRIVATE | MAP_ANONYMOUS);
}

void *xmm_os_remap(void *addr, size_t old_size, size_t new_size, void *to)
{
    KEEP_ERRNO;
    void *result = to ? mremap(addr, old_size, new_size, MREMAP_MAYMOVE | MREMAP_FIXED, to)
                      : mremap(addr, old_size, new_size, 0);
    return result == MAP_FAILED ? NULL : result;
}

void xmm_os_unmap(void *addr, size_t size)
{
    KEEP_ERRNO;
    munmap(addr, size);
}

int xmm_os_protect_none(void *addr, size_t size)
{
    KEEP_ERRNO;
    int result = mprotect(addr, size, PROT_NONE);
    if (result != 0 && mmap(addr, size, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED,
                            -1, 0) == addr)
        result = 0;
    return result;
}

int xmm_os_purge(void *addr, size_t size, bool lazy)
{
    KEEP_ERRNO; /* EINVAL on locked pages (mlockall), for every purge */
    int advice = lazy ? MADV_FREE : MADV_DONTNEED;
    if (madvise(addr, size, advice) == 0)
        return 0;
    /* MADV_FREE needs Linux 4.5; fall back to the eager form. */
    if (lazy && madvise(addr, size, MADV_DONTNEED) == 0)
        return 0;
    return -1;
}

int xmm_os_advise_huge(void *addr, size_t size, bool enable)
{
    KEEP_ERRNO;
    return madvise(addr, size, enable ? MADV_HUGEPAGE : MADV_NOHUGEPAGE);
}

/* One entry of /proc/self/pagemap per page: bit 63 says it is present
 * (its frame number is hidden from an unprivileged reader, not this bit). */
#define PAGEMAP_PRESENT ((uint64_t)1 << 63)

size_t xmm_os_resident_bytes(void *addr, size_t size)
{
    KEEP_ERRNO;
    size_t page = xmm_os_page_size(), resident = 0;
    int fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return size;
    uint64_t entries[512];
    size_t first = (uintptr_t)addr / page, pages = (size + page - 1) / page;
    for (size_t done = 0; done < pages;) {
        size_t wanted = pages - done < 512 ? pages - done : 512;
        ssize_t got = pread(fd, entries, wanted * sizeof entries[0],
                            (off_t)((first + done) * sizeof entries[0]));
        if (got < 0 && errno == EINTR)
            continue;
        if (got < (ssize_t)sizeof entries[0]) {
            resident = size;
            break;
        }
        size_t read_entries = (size_t)got / sizeof entries[0];
        for (size_t i = 0; i < read_entries; i++)
            resident += (entries[i] & PAGEMAP_PRESENT) ? page : 0;
        done += read_entries;
    }
    close(fd);
    return resident < size ? resident : size;
}

/* libnuma's mbind, once xmm_os_load_numa has loaded it. */
typedef long (*mbind_function)(void *, unsigned long, int, const unsigned long *, unsigned long,
                               unsigned);
static mbind_function numa_mbind;

bool xmm_os_load_numa(char *why, size_t why_size)
{
    if (__atomic_load_n(&numa_mbind, __ATOMIC_ACQUIRE))
        return true;
    KEEP_ERRNO; /* dlopen's search of the library path sets it */
    /* RTLD_LOCAL: libnuma's symbols stay out of the program's scope, which
     * does not expect them. A program linked with libnuma gets its copy. */
    void *library = dlopen("libnuma.so.1", RTLD_NOW | RTLD_LOCAL);
    mbind_function found = library ? (mbind_function)dlsym(library, "mbind") : NULL;
    if (!found) {
        const char *message = dlerror();
        size_t length = message ? strlen(message) : 0;
        if (length >= why_size)
            length = why_size - 1;
        memcpy(why, message ? message : "", length);
        why[length] = '\0';
        return false;
    }
    __atomic_store_n(&numa_mbind, found, __ATOMIC_RELEASE);
    return true;
}

int xmm_os_bind(void *addr, size_t size, uint64_t nodes, enum xmm_bind_mode mode)
{
    int policy = MPOL_BIND;
    if (mode == XMM_BIND_PREFERRED) {
        policy = MPOL_PREFERRED;
        nodes &= -nodes; /* preferred takes exactly one node: the lowest */
    } else if (mode == XMM_BIND_INTERLEAVE) {
        policy = MPOL_INTERLEAVE;
    }
    unsigned long mask = (unsigned long)nodes;
    unsigned long max_node = sizeof(mask) * 8 + 1;
    KEEP_ERRNO;
    mbind_function bind = __atomic_load_n(&numa_mbind, __ATOMIC_ACQUIRE);
    long result = bind ? bind(addr, size, policy, &mask, max_node, 0)
                       : syscall(SYS_mbind, addr, size, policy, &mask, max_node, 0);
    return result == 0 ? 0 : -1;
}

/* ---- small allocation-free file and text helpers ------------------------ */

/* Reads up to size-1 bytes of a (small) file into buffer, NUL-terminated.
 * Returns the length, or -1. */
static ssize_t read_small_file(const char *path, char *buffer, size_t size)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    size_t used = 0;
    while (used + 1 < size) {
        ssize_t got = read(fd, buffer + used, size - 1 - used);
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0)
            break;
        used += (size_t)got;
    }
    close(fd);
    buffer[used] = '\0';
    return (ssize_t)used;
}

/* prefix, `number` in decimal, suffix: into `path` (at least 64 bytes for
 * the fixed paths this file builds). */
static void path_with_number(char *path, const char *prefix, unsigned number,
                             const char *suffix)
{
    char digits[10];
    int count = 0;
    do
        digits[count++] = (char)('0' + number % 10);
    while (number /= 10);
    size_t at = strlen(prefix);
    memcpy(path, prefix, at);
    while (count)
        path[at++] = digits[--count];
    memcpy(path + at, suffix, strlen(suffix) + 1);
}

static const char *parse_unsigned(const char *text, unsigned *value)
{
    unsigned result = 0;
    if (*text < '0' || *text > '9')
        return NULL;
    while (*text >= '0' && *text <= '9')
        result = result * 10 + (unsigned)(*text++ - '0');
    *value = result;
    return text;
}

/* Calls visit(context, n) for each number in a kernel list like "0-3,8,10-11". */
static void for_each_in_list(const char *text, void (*visit)(void *, unsigned), void *context)
{
    while (*text) {
        unsigned first, last;
        const char *next = parse_unsigned(text, &first);
        if (!next)
            return;
        last = first;
        if (*next == '-') {
            next = parse_unsigned(next + 1, &last);
            if (!next)
                return;
        }
        for (unsigned n = first; n <= last && n < 65536; n++)
            visit(context, n);
        text = next;
        if (*text == ',')
            text++;
        else
            return;
    }
}

static void add_to_mask(void *context, unsigned n)
{
    if (n < 64)
        *(uint64_t *)context |= (uint64_t)1 << n;
}

static void note_max(void *context, unsigned n)
{
    unsigned *max = context;
    if (n + 1 > *max)
        *max = n + 1;
}

struct cpu_to_node {
    struct xmm_topology *topology;
    int node;
};

static void set_cpu_node(void *context, unsigned cpu)
{
    struct cpu_to_node *mapping = context;
    if (cpu < XMM_MAX_CPUS)
        mapping->topology->node_of_cpu[cpu] = (uint8_t)mapping->node;
}

/* ---- topology ---------------------------------------------------------- */

/* The raw sched_getaffinity system call copies at most the kernel's CPU
 * mask, whose size in bytes it returns: nr_cpu_ids rounded up to a whole
 * number of longs (or NR_CPUS on some configurations). So 8 times the
 * result bounds every CPU number. 0 if the call fails. `highest_allowed`
 * gets one past the highest CPU the process may run on now (0: none
 * known). */
static unsigned kernel_cpu_mask_bits(unsigned *highest_allowed)
{
    static unsigned long mask[XMM_MAX_CPUS * 4 / (8 * sizeof(unsigned long))];
    int saved_errno = errno;
    long bytes = syscall(SYS_sched_getaffinity, 0, sizeof(mask), mask);
    errno = saved_errno;
    *highest_allowed = 0;
    for (long word = 0; bytes > 0 && word < bytes / (long)sizeof(mask[0]); word++)
        if (mask[word])
            *highest_allowed = (unsigned)(word * 8 * sizeof(mask[0])) + 64 -
                               (unsigned)__builtin_clzl(mask[word]);
    return bytes > 0 ? (unsigned)bytes * 8 : 0;
}

void xmm_platform_topology_read(struct xmm_topology *topology)
{
    KEEP_ERRNO; /* files sysfs lacks (ENOENT), a sandbox's refusals */
    char buffer[4096];
    memset(topology, 0, sizeof(*topology));
    xmm_os_page_size();

    unsigned cpu_count = 0, allowed_bound;
    if (read_small_file("/sys/devices/system/cpu/possible", buffer, sizeof(buffer)) > 0)
        for_each_in_list(buffer, note_max, &cpu_count);
    unsigned mask_bits = kernel_cpu_mask_bits(&allowed_bound);
    if (cpu_count == 0 || allowed_bound > cpu_count) {
        /* sysfs hidden (a sandbox), or saying fewer CPUs than the process
         * may run on (a file mounted over it: the slabs were sized by it,
         * and a thread on CPU 1 with "0" there wrote past them): the
         * number of CPUs online or allowed now is no bound (a process
         * started pinned to one CPU may be allowed more later); the
         * kernel's own CPU mask size is. */
        cpu_count = mask_bits;
    }
    topology->cpu_index_bound = (int)cpu_count;
    if (cpu_count == 0) {
        long configured = sysconf(_SC_NPROCESSORS_CONF);
        cpu_count = configured > 0 ? (unsigned)configured : 1;
    }
    topology->cpu_count = (int)(cpu_count > XMM_MAX_CPUS ? XMM_MAX_CPUS : cpu_count);

    uint64_t online = 0;
    if (read_small_file("/sys/devices/system/node/has_memory", buffer, sizeof(buffer)) > 0 ||
        read_small_file("/sys/devices/system/node/online", buffer, sizeof(buffer)) > 0)
        for_each_in_list(buffer, add_to_mask, &online);
    if (online == 0)
        online = 1;
    topology->nodes_online = online;
    topology->node_count = 64 - __builtin_clzll(online);

    /* CPU -> node. CPUs of memoryless nodes are attributed to node 0's
     * default (0) unless listed under a node with memory. */
    for (int node = 0; node < topology->node_count; node++) {
        char path[64];
        path_with_number(path, "/sys/devices/system/node/node", (unsigned)node, "/cpulist");
        if (!(online & ((uint64_t)1 << node)))
            continue;
        if (read_small_file(path, buffer, sizeof(buffer)) > 0) {
            struct cpu_to_node mapping = {topology, node};
            for_each_in_list(buffer, set_cpu_node, &mapping);
        }
    }

    /* Nodes we may allocate on: the cpuset's Mems_allowed ... */
    uint64_t allowed = online;
    if (read_small_file("/proc/self/status", buffer, sizeof(buffer)) > 0) {
        const char *line = strstr(buffer, "Mems_allowed_list:");
        if (line) {
            line += strlen("Mems_allowed_list:");
            while (*line == ' ' || *line == '\t')
                line++;
            uint64_t cpuset_mask = 0;
            for_each_in_list(line, add_to_mask, &cpuset_mask);
            if (cpuset_mask & online)
                allowed &= cpuset_mask;
        }
    }
    /* ... and the process memory policy (numactl --membind). */
    int mode = 0;
    unsigned long policy_mask[16] = {0};
    /* The system call itself: libnuma is not loaded yet, and cannot be
     * before XMM serves allocations (xmm_os_load_numa). */
    if (syscall(SYS_get_mempolicy, &mode, policy_mask, sizeof(policy_mask) * 8, NULL, 0) == 0 &&
        (mode == MPOL_BIND || mode == MPOL_PREFERRED_MANY) && (policy_mask[0] & allowed))
        allowed &= policy_mask[0];
    topology->nodes_allowed = allowed;
}

int xmm_os_current_cpu(void)
{
    KEEP_ERRNO;
    int cpu = sched_getcpu();
    return cpu < 0 ? 0 : cpu;
}

/* ---- restartable sequences and membarrier -------------------------------- */

#ifndef AT_RSEQ_FEATURE_SIZE
#define AT_RSEQ_FEATURE_SIZE 27
#endif

void *xmm_os_rseq_libc_area(void)
{
    if (__rseq_size < 20) /* 0: glibc did not register */
        return NULL;
    return (char *)__builtin_thread_pointer() + __rseq_offset;
}

bool xmm_os_rseq_register(void *area)
{
    KEEP_ERRNO;
    long result = syscall(SYS_rseq, area, 32, 0, RSEQ_SIG);
    return result == 0;
}

void xmm_os_rseq_unregister(void *area)
{
    KEEP_ERRNO;
    syscall(SYS_rseq, area, 32, RSEQ_FLAG_UNREGISTER, RSEQ_SIG);
}

unsigned xmm_os_rseq_feature_size(void)
{
    KEEP_ERRNO; /* ENOENT where the kernel has no such entry (before 6.3) */
    return (unsigned)getauxval(AT_RSEQ_FEATURE_SIZE);
}

int xmm_os_membarrier_rseq_register(void)
{
    KEEP_ERRNO;
    long result = syscall(SYS_membarrier, MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED_RSEQ, 0, 0);
    return result == 0 ? 0 : -1;
}

int xmm_os_membarrier_rseq(void)
{
    KEEP_ERRNO;
    long result = syscall(SYS_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED_RSEQ, 0, 0);
    return result == 0 ? 0 : -1;
}

/* ---- locks ---------------------------------------------------------------- */

#define LOCK_WAITERS ((uint64_t)1)
#define LOCK_SPINS 128

_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
               "the lock's futex is the low half of its word");

/* The thread pointer: unique among live threads, 64-byte aligned (bit 0 is
 * free for LOCK_WAITERS), and the same in a fork child for the forking
 * thread, whose TLS block is copied at the same address. */
static uint64_t lock_owner_id(void)
{
    return (uint64_t)(uintptr_t)__builtin_thread_pointer();
}

static uint32_t *lock_futex(struct xmm_lock *lock)
{
    return (uint32_t *)&lock->word; /* the low half, on little-endian */
}

static bool lock_try(struct xmm_lock *lock, uint64_t value)
{
    uint64_t expected = 0;
    return __atomic_compare_exchange_n(&lock->word, &expected, value, false, __ATOMIC_ACQUIRE,
                                       __ATOMIC_RELAXED);
}

/* Drepper's three-state futex mutex ("Futexes Are Tricky"), with the owner
 * in the word: a thread that found the lock contended takes it with the
 * waiters bit set, so that its release wakes the next sleeper. A sleeper
 * compares only the low 32 bits; a different owner with the same low half
 * still has the waiters bit set, so it will wake someone on release. */
bool xmm_lock_acquire(struct xmm_lock *lock)
{
    uint64_t self = lock_owner_id();
    if (__builtin_expect(lock_try(lock, self), 1))
        return true;
    if ((__atomic_load_n(&lock->word, __ATOMIC_RELAXED) & ~LOCK_WAITERS) == self)
        return false; /* re-entered from a signal handler */
    for (int spin = 0; spin < LOCK_SPINS; spin++) {
        ck_pr_stall(); /* pause: lets the holder's sibling hyperthread run */
        if (__atomic_load_n(&lock->word, __ATOMIC_RELAXED) == 0 && lock_try(lock, self))
            return true;
    }
    int saved_errno = errno;
    for (;;) {
        uint64_t value = __atomic_load_n(&lock->word, __ATOMIC_RELAXED);
        if (value == 0) {
            if (lock_try(lock, self | LOCK_WAITERS))
                break;
            continue;
        }
        if (!(value & LOCK_WAITERS) &&
            !__atomic_compare_exchange_n(&lock->word, &value, value | LOCK_WAITERS, false,
                                         __ATOMIC_RELAXED, __ATOMIC_RELAXED))
            continue;
        syscall(SYS_futex, lock_futex(lock), FUTEX_WAIT_PRIVATE,
                (uint32_t)(value | LOCK_WAITERS), NULL, NULL, 0);
    }
    errno = saved_errno;
    return true;
}

void xmm_lock_release(struct xmm_lock *lock)
{
    uint64_t old = __atomic_exchange_n(&lock->word, 0, __ATOMIC_RELEASE);
    if (old & LOCK_WAITERS) {
        int saved_errno = errno;
        syscall(SYS_futex, lock_futex(lock), FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
        errno = saved_errno;
    }
}

enum xmm_lock_holder xmm_lock_holder(const struct xmm_lock *lock)
{
    uint64_t value = __atomic_load_n(&lock->word, __ATOMIC_ACQUIRE);
    if (value == 0)
        return XMM_LOCK_FREE;
    return (value & ~LOCK_WAITERS) == lock_owner_id() ? XMM_LOCK_HELD_BY_CALLER
                                                       : XMM_LOCK_HELD_BY_OTHER;
}

void xmm_lock_reset(struct xmm_lock *lock)
{
    __atomic_store_n(&lock->word, 0, __ATOMIC_RELEASE);
}

/* ---- time, environment ------------------------------------------------- */

uint64_t xmm_os_now_ns(void)
{
    /* The coarse clock reads the tick count the kernel keeps in the vDSO:
     * a few ns, where CLOCK_MONOTONIC reads the clock source (tens of ns
     * with the TSC, far more in VMs without a stable one). Decay works in
     * milliseconds, so a tick's resolution is enough. */
    KEEP_ERRNO;
    struct timespec now;
    if (clock_gettime(CLOCK_MONOTONIC_COARSE, &now) != 0 &&
        clock_gettime(CLOCK_MONOTONIC, &now) != 0)
        return 0;
    return (uint64_t)now.tv_sec * 1000000000u + (uint64_t)now.tv_nsec;
}

uint64_t xmm_os_precise_now_ns(void)
{
    KEEP_ERRNO;
    struct timespec now;
    if (clock_gettime(CLOCK_MONOTONIC, &now) != 0)
        return 0;
    return (uint64_t)now.tv_sec * 1000000000u + (uint64_t)now.tv_nsec;
}

int xmm_os_process_id(void)
{
    return (int)syscall(SYS_getpid);
}

int xmm_os_thread_id(void)
{
    return (int)syscall(SYS_gettid);
}

bool xmm_os_thread_gone(int process, int thread)
{
    KEEP_ERRNO;
    return syscall(SYS_tgkill, process, thread, 0) != 0 && errno == ESRCH;
}

const char *xmm_os_getenv(const char *name)
{
    size_t length = strlen(name);
    if (!environ)
        return NULL;
    for (char **entry = environ; *entry; entry++)
        if (strncmp(*entry, name, length) == 0 && (*entry)[length] == '=')
            return *entry + length + 1;
    return NULL;
}

/* ---- errors ------------------------------------------------------------ */

int xmm_os_write_fd(int fd, const char *text, size_t length)
{
    int saved_errno = errno;
    while (length > 0) {
        ssize_t written = write(fd, text, length);
        if (written < 0 && errno == EINTR)
            continue;
        if (written <= 0) {
            int error = written < 0 ? errno : EIO;
            errno = saved_errno;
            return error;
        }
        text += written;
        length -= (size_t)written;
    }
    errno = saved_errno;
    return 0;
}

/* glibc 2.32's strerrorname_np and strerrordesc_np: unlike strerror, they
 * neither translate (which may allocate) nor format unknown values into a
 * shared buffer. */
const char *xmm_os_error_name(int error)
{
    const char *name = strerrorname_np(error);
    return name ? name : "errno";
}

const char *xmm_os_error_text(int error)
{
    const char *text = strerrordesc_np(error);
    return text ? text : "unknown error";
}

void xmm_os_write_error(const char *text, size_t length)
{
    xmm_os_write_fd(STDERR_FILENO, text, length);
}

_Noreturn void xmm_platform_abort(void)
{
    abort();
}

/* ---- threads, signals, files, process hooks ------------------------------ */

int xmm_os_thread_start(void *(*body)(void *), void *argument)
{
    KEEP_ERRNO; /* pthread_create maps and protects the thread's stack */
    pthread_attr_t attributes;
    int error = pthread_attr_init(&attributes);
    if (error)
        return error;
    pthread_attr_setdetachstate(&attributes, PTHREAD_CREATE_DETACHED);
    /* The new thread inherits a mask that blocks every signal: the
     * program's handlers never run on a thread of XMM's. */
    sigset_t all, previous;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &previous);
    pthread_t thread;
    error = pthread_create(&thread, &attributes, body, argument);
    pthread_sigmask(SIG_SETMASK, &previous, NULL);
    pthread_attr_destroy(&attributes);
    return error;
}

int xmm_os_new_session(void)
{
    return (int)syscall(SYS_setsid);
}

int xmm_os_threads_after_main(void)
{
    KEEP_ERRNO;
    /* The first thread's own file: the same state and num_threads as
     * /proc/self/stat, which walks every thread (308 us with 4,000 of
     * them, against 16). */
    char path[64], line[1024];
    path_with_number(path, "/proc/self/task/", (unsigned)xmm_os_process_id(), "/stat");
    if (read_small_file(path, line, sizeof line) <= 0)
        return -1;
    /* "pid (name) state ppid ...": the name may hold spaces and ')'. The
     * state is the first thread's; num_threads is field 20, the 17th
     * after the state. */
    const char *field = strrchr(line, ')');
    if (!field || field[1] != ' ' || field[2] != 'Z')
        return -1;
    field += 2;
    for (int skip = 0; skip < 17; skip++) {
        field = strchr(field, ' ');
        if (!field)
            return -1;
        field++;
    }
    unsigned threads;
    if (!parse_unsigned(field, &threads) || threads == 0)
        return -1;
    return (int)threads - 1;
}

bool xmm_os_handled_signal_blocked(void)
{
    KEEP_ERRNO;
    sigset_t current;
    if (pthread_sigmask(SIG_BLOCK, NULL, &current) != 0)
        return true;
    if (sigisemptyset(&current))
        return false;
    for (int signal_number = 1; signal_number < NSIG; signal_number++) {
        struct sigaction action;
        if (sigismember(&current, signal_number) != 1)
            continue;
        if (sigaction(signal_number, NULL, &action) != 0)
            return true;
        /* sa_handler and sa_sigaction share their storage. A one-shot
         * handler (SA_RESETHAND, as crash reporters install for SIGSEGV)
         * is SIG_DFL again while it runs, but keeps the flag. */
        if ((action.sa_handler != SIG_DFL && action.sa_handler != SIG_IGN) ||
            (action.sa_flags & SA_RESETHAND))
            return true;
    }
    return false;
}

bool xmm_os_signal_blocked(int signal_number)
{
    KEEP_ERRNO;
    sigset_t current;
    if (pthread_sigmask(SIG_BLOCK, NULL, &current) != 0)
        return true;
    return sigismember(&current, signal_number) == 1;
}

void xmm_os_sleep_ns(uint64_t ns)
{
    KEEP_ERRNO;
    struct timespec left = {(time_t)(ns / 1000000000u), (long)(ns % 1000000000u)};
    while (nanosleep(&left, &left) != 0 && errno == EINTR)
        ;
}

int xmm_os_thread_key_create(xmm_os_thread_key *key, void (*destructor)(void *))
{
    KEEP_ERRNO;
    pthread_key_t created;
    int error = pthread_key_create(&created, destructor);
    if (!error)
        *key = (xmm_os_thread_key)created;
    return error;
}

int xmm_os_thread_key_set(xmm_os_thread_key key, const void *value)
{
    return pthread_setspecific((pthread_key_t)key, value);
}

int xmm_os_signal_handler(int signal_number, void (*handler)(int))
{
    KEEP_ERRNO;
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_handler = handler;
    action.sa_flags = SA_RESTART;
    sigemptyset(&action.sa_mask);
    return sigaction(signal_number, &action, NULL) == 0 ? 0 : -1;
}

int xmm_os_at_exit(void (*hook)(void))
{
    KEEP_ERRNO;
    return atexit(hook) == 0 ? 0 : ENOMEM;
}

int xmm_os_at_fork(void (*prepare)(void), void (*parent)(void), void (*child)(void))
{
    KEEP_ERRNO;
    return pthread_atfork(prepare, parent, child);
}

int xmm_os_open_append(const char *path)
{
    return open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
}

void xmm_os_close(int fd)
{
    KEEP_ERRNO;
    close(fd);
}

int xmm_os_open_write(const char *path)
{
    return open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
}

bool xmm_os_replaceable(const char *path)
{
    KEEP_ERRNO;
    struct stat status;
    if (lstat(path, &status) != 0)
        return errno == ENOENT;
    return S_ISREG(status.st_mode);
}

int xmm_os_rename(const char *from, const char *to)
{
    return rename(from, to);
}

void xmm_os_unlink(const char *path)
{
    KEEP_ERRNO;
    unlink(path);
}

int xmm_os_open_read(const char *path)
{
    return open(path, O_RDONLY | O_CLOEXEC);
}

long xmm_os_read_fd(int fd, void *buffer, size_t size)
{
    ssize_t count;
    do {
        count = read(fd, buffer, size);
    } while (count < 0 && errno == EINTR);
    return (long)count;
}

/* ---- call stacks ----------------------------------------------------------- */

/* Up to 8 frames of the allocator's own (this function, the unwinder that
 * fell back to it) come before the caller's. */
#define LIBC_SKIP_MAX 8

int xmm_os_backtrace_libc_from(void **frames, int max, const void *first)
{
    if (max <= 0)
        return 0;
    KEEP_ERRNO; /* the first backtrace loads libgcc_s */
    void *all[max + LIBC_SKIP_MAX];
    int count = backtrace(all, max + LIBC_SKIP_MAX);
    /* The stack from `first` on: whether the calls in between were inlined
     * or made as tail calls is the compiler's choice. */
    int start = 0;
    while (start < count && start < LIBC_SKIP_MAX && all[start] != first)
        start++;
    if (start == count || start == LIBC_SKIP_MAX)
        start = 1; /* not found (cannot happen): this function's caller on */
    int kept = count - start < max ? count - start : max;
    memcpy(frames, all + start, (size_t)kept * sizeof(void *));
    return kept;
}

__attribute__((noinline)) int xmm_os_backtrace_libc(void **frames, int max)
{
    return xmm_os_backtrace_libc_from(frames, max, __builtin_return_address(0));
}

#if !defined(__x86_64__) /* x86_64/unwind.c has a faster one */
void xmm_os_backtrace_prepare(void)
{
    KEEP_ERRNO; /* the first backtrace loads libgcc_s */
    void *frames[4];
    backtrace(frames, 4);
}

__attribute__((noinline)) int xmm_os_backtrace(void **frames, int max)
{
    return xmm_os_backtrace_libc_from(frames, max, __builtin_return_address(0));
}
#endif

struct code_search {
    uintptr_t address;
    uintptr_t start, end;
    uintptr_t bias;
    const char *name;
    bool found, in_main_program;
    int objects_seen;
};

static int find_code_range(struct dl_phdr_info *info, size_t size, void *context)
{
    struct code_search *search = context;
    (void)size;
    bool first = search->objects_seen++ == 0; /* the main program comes first */
    uintptr_t low = UINTPTR_MAX, high = 0;
    bool holds = false;
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *header = &info->dlpi_phdr[i];
        if (header->p_type != PT_LOAD)
            continue;
        uintptr_t begin = info->dlpi_addr + header->p_vaddr;
        uintptr_t finish = begin + header->p_memsz;
        if (search->address >= begin && search->address < finish)
            holds = true;
        if (header->p_flags & PF_X) {
            if (begin < low)
                low = begin;
            if (finish > high)
                high = finish;
        }
    }
    if (!holds)
        return 0;
    search->found = high > low;
    search->in_main_program = first || !info->dlpi_name || !info->dlpi_name[0];
    search->start = low;
    search->end = high;
    search->bias = info->dlpi_addr;
    search->name = info->dlpi_name;
    return 1;
}

bool xmm_os_code_object(const void *address, char *name, size_t size, uintptr_t *bias)
{
    KEEP_ERRNO;
    struct code_search search = {.address = (uintptr_t)address};
    dl_iterate_phdr(find_code_range, &search);
    if (!search.found || size == 0)
        return false;
    *bias = search.bias;
    ssize_t length = -1;
    if (search.in_main_program) {
        length = readlink("/proc/self/exe", name, size - 1);
    } else {
        length = (ssize_t)strnlen(search.name, size - 1);
        memcpy(name, search.name, (size_t)length);
    }
    name[length > 0 ? length : 0] = '\0';
    return true;
}

bool xmm_os_code_range(const void *address, uintptr_t *start, uintptr_t *end)
{
    struct code_search search = {.address = (uintptr_t)address};
    dl_iterate_phdr(find_code_range, &search);
    if (!search.found || search.in_main_program)
        return false;
    *start = search.start;
    *end = search.end;
    return true;
}

void xmm_os_event_post(struct xmm_os_event *event)
{
    KEEP_ERRNO;
    __atomic_fetch_add(&event->posted, 1, __ATOMIC_RELEASE);
    __atomic_fetch_add(&event->pending, 1, __ATOMIC_RELEASE);
    syscall(SYS_futex, &event->pending, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
}

bool xmm_os_event_wait(struct xmm_os_event *event, uint64_t timeout_ns, uint32_t *posted)
{
    KEEP_ERRNO;
    uint64_t deadline = xmm_os_now_ns() + timeout_ns;
    for (;;) {
        uint32_t pending = __atomic_exchange_n(&event->pending, 0, __ATOMIC_ACQUIRE);
        if (pending) {
            *posted = __atomic_load_n(&event->posted, __ATOMIC_ACQUIRE);
            return true;
        }
        uint64_t now = xmm_os_now_ns();
        if (now >= deadline)
            return false;
        struct timespec left = {(time_t)((deadline - now) / 1000000000u),
                                (long)((deadline - now) % 1000000000u)};
        syscall(SYS_futex, &event->pending, FUTEX_WAIT_PRIVATE, 0, &left, NULL, 0);
    }
}

void xmm_os_event_done(struct xmm_os_event *event, uint32_t posted)
{
    __atomic_store_n(&event->served, posted, __ATOMIC_RELEASE);
}

bool xmm_os_event_settle(struct xmm_os_event *event, uint64_t timeout_ns)
{
    KEEP_ERRNO;
    uint32_t posted = __atomic_load_n(&event->posted, __ATOMIC_ACQUIRE);
    uint64_t waited = 0;
    /* Counts wrap: the difference says how many are not served. */
    while ((int32_t)(posted - __atomic_load_n(&event->served, __ATOMIC_ACQUIRE)) > 0) {
        if (waited >= timeout_ns)
            return false;
        xmm_os_sleep_ns(1000000);
        waited += 1000000;
    }
    return true;
}

void xmm_os_event_forget(struct xmm_os_event *event)
{
    __atomic_store_n(&event->pending, 0, __ATOMIC_RELAXED);
    __atomic_store_n(&event->served, __atomic_load_n(&event->posted, __ATOMIC_RELAXED),
                     __ATOMIC_RELAXED);
}

/* The identity of the file `fd` refers to; false if it is not open. */
static bool file_identity(int fd, uint64_t *device, uint64_t *inode)
{
    struct stat status;
    if (fstat(fd, &status) != 0)
        return false;
    *device = (uint64_t)status.st_dev;
    *inode = (uint64_t)status.st_ino;
    return true;
}

bool xmm_os_save_stderr(struct xmm_os_saved_stderr *saved)
{
    KEEP_ERRNO;
    saved->taken = true;
    saved->fd = -1;
    saved->known = file_identity(STDERR_FILENO, &saved->device, &saved->inode);
    if (saved->known)
        saved->fd = fcntl(STDERR_FILENO, F_DUPFD_CLOEXEC, 64);
    return saved->fd >= 0;
}

/* Whether `fd` refers to the file `saved` recorded. */
static bool is_saved_file(const struct xmm_os_saved_stderr *saved, int fd)
{
    uint64_t device, inode;
    return file_identity(fd, &device, &inode) && device == saved->device &&
           inode == saved->inode;
}

int xmm_os_saved_stderr_fd(const struct xmm_os_saved_stderr *saved)
{
    if (!saved->taken)
        return STDERR_FILENO; /* never saved: stderr as it is */
    KEEP_ERRNO;
    int found = -1;
    if (saved->known && saved->fd >= 0 && is_saved_file(saved, saved->fd))
        found = saved->fd;
    else if (saved->known && is_saved_file(saved, STDERR_FILENO))
        found = STDERR_FILENO;
    return found;
}

uint64_t xmm_os_random_seed(void)
{
    uint64_t seed = 0;
    const uint64_t *at_random = (const uint64_t *)getauxval(AT_RANDOM);
    if (at_random)
        seed = at_random[0] ^ (at_random[1] * 0x9e3779b97f4a7c15u);
    uint64_t fresh = 0;
    KEEP_ERRNO;
    if (syscall(SYS_getrandom, &fresh, sizeof fresh, 1 /* GRND_NONBLOCK */) == sizeof fresh)
        seed ^= fresh;
    /* A last resort that still differs between processes and runs. */
    if (seed == 0)
        seed = xmm_os_now_ns() ^ ((uint64_t)xmm_os_process_id() << 32);
    return seed;
}

void xmm_os_program_name(char *name, size_t size)
{
    KEEP_ERRNO;
    ssize_t length = -1;
    int fd = open("/proc/self/comm", O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        length = read(fd, name, size - 1);
        close(fd);
    }
    if (length > 0 && name[length - 1] == '\n')
        length--;
    if (length <= 0) {
        length = 0;
        for (const char *c = program_invocation_short_name; *c && (size_t)length + 1 < size; c++)
            name[length++] = *c;
    }
    name[length] = '\0';
}
