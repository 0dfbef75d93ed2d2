/*
 * unwind.c - xmm_os_backtrace for x86_64: the call stack from the unwind
 * tables (.eh_frame), with each return address's rule cached.
 *
 * glibc's backtrace() goes through libgcc's unwinder, which finds and
 * interprets the DWARF call frame information of every frame on every
 * call: about 200 ns a frame, 2 us for a typical stack, which is most of
 * what a heap profile sample costs. Here each distinct return address's
 * rule (where the frame's CFA is, where the return address and the
 * caller's rbp are saved) is computed once, from the same tables, and kept
 * in a table indexed by address; a sample then costs a lookup and two
 * loads a frame.
 *
 * A rule is what x86_64 code has everywhere but in a few hand-written
 * places: CFA = rsp or rbp + offset, return address at CFA - 8, rbp
 * unchanged or saved at CFA + offset. A frame whose rule is anything else
 * (a signal frame, a DWARF expression, the return address elsewhere) makes
 * the whole stack come from glibc's backtrace() instead, which handles
 * them; so does an object whose .eh_frame_hdr has no binary search table.
 * A frame without unwind information ends the stack, as it ends libgcc's.
 *
 * Objects and their tables are found with _dl_find_object (glibc 2.35),
 * which takes no lock and never allocates. The cached rule of an address
 * stays valid while its object stays loaded: each walk first asks the
 * dynamic loader how many objects were ever unloaded (dl_iterate_phdr's
 * dlpi_subs, 30 ns), and when the count changed, the cache is emptied.
 */
#include <dlfcn.h>
#include <execinfo.h>
#include <errno.h>
#include <link.h>
#include <sys/auxv.h>
#include <stdint.h>
#include <string.h>

#include "platform.h"

/* ---- the rule cache -------------------------------------------------------- */

enum rule_kind {
    RULE_FRAME = 1,    /* the frame's rule below */
    RULE_END = 2,      /* the stack ends here (no unwind information, or the
                          return address is undefined: _start, a thread start) */
    RULE_FALLBACK = 3, /* a rule this unwinder does not follow */
};

/* One word: kind (2 bits), CFA register (rsp or rbp, 1 bit), rbp saved
 * (1 bit), rbp's offset from the CFA (16 bits, signed), the CFA's offset
 * from its register (32 bits, signed). */
struct rule {
    enum rule_kind kind;
    bool cfa_is_rbp;
    bool rbp_saved;
    int16_t rbp_offset;
    int32_t cfa_offset;
};

static uint64_t rule_pack(struct rule rule)
{
    return (uint64_t)rule.kind | (uint64_t)rule.cfa_is_rbp << 2 | (uint64_t)rule.rbp_saved << 3 |
           (uint64_t)(uint16_t)rule.rbp_offset << 16 | (uint64_t)(uint32_t)rule.cfa_offset << 32;
}

static struct rule rule_unpack(uint64_t word)
{
    return (struct rule){
        .kind = (enum rule_kind)(word & 3),
        .cfa_is_rbp = (word >> 2) & 1,
        .rbp_saved = (word >> 3) & 1,
        .rbp_offset = (int16_t)(uint16_t)(word >> 16),
        .cfa_offset = (int32_t)(uint32_t)(word >> 32),
    };
}

/* Insert-only, open addressing: a slot is claimed by a CAS of its address
 * from 0 to CLAIMED, filled, then published by storing the address; a
 * reader that finds the address reads a complete rule. 32768 slots of 16
 * bytes, mapped by xmm_os_backtrace_prepare, touched as used. When full,
 * rules are computed each time. */
#define CACHE_BITS 15
#define CACHE_SLOTS ((size_t)1 << CACHE_BITS)
#define CACHE_PROBES 16
#define CLAIMED ((uintptr_t)1)

struct slot {
    uintptr_t address;
    uint64_t rule;
};
static struct slot *cache;

/* dlpi_subs when the cache was last emptied. */
static unsigned long long cache_unloads;

/* Empties the cache in place (a reader that meets a slot half cleared
 * reads rule 0, not a rule: it takes the fallback). */
static void cache_clear(void)
{
    for (size_t i = 0; i < CACHE_SLOTS; i++) {
        __atomic_store_n(&cache[i].rule, 0, __ATOMIC_RELAXED);
        __atomic_store_n(&cache[i].address, 0, __ATOMIC_RELEASE);
    }
}

static int read_unloads(struct dl_phdr_info *info, size_t size, void *unloads)
{
    (void)size;
    *(unsigned long long *)unloads = info->dlpi_subs;
    return 1; /* the first object is enough */
}

/* Rules of unloaded objects must not be applied to what is loaded at
 * their addresses now. */
static void cache_check_unloads(void)
{
    unsigned long long unloads = 0;
    dl_iterate_phdr(read_unloads, &unloads);
    unsigned long long seen = __atomic_load_n(&cache_unloads, __ATOMIC_ACQUIRE);
    if (unloads != seen &&
        __atomic_compare_exchange_n(&cache_unloads, &seen, unloads, false, __ATOMIC_ACQ_REL,
                                    __ATOMIC_ACQUIRE))
        cache_clear();
}

static size_t slot_index(uintptr_t address)
{
    return (size_t)((address * 0x9e3779b97f4a7c15ull) >> (64 - CACHE_BITS));
}

static bool cache_find(uintptr_t address, struct rule *rule)
{
    size_t index = slot_index(address);
    for (int probe = 0; probe < CACHE_PROBES; probe++) {
        struct slot *slot = &cache[(index + probe) & (CACHE_SLOTS - 1)];
        uintptr_t key = __atomic_load_n(&slot->address, __ATOMIC_ACQUIRE);
        if (key == address) {
            *rule = rule_unpack(__atomic_load_n(&slot->rule, __ATOMIC_RELAXED));
            return true;
        }
        if (key == 0)
            return false;
    }
    return false;
}

static void cache_add(uintptr_t address, struct rule rule)
{
    size_t index = slot_index(address);
    for (int probe = 0; probe < CACHE_PROBES; probe++) {
        struct slot *slot = &cache[(index + probe) & (CACHE_SLOTS - 1)];
        uintptr_t key = 0;
        if (__atomic_compare_exchange_n(&slot->address, &key, CLAIMED, false, __ATOMIC_ACQUIRE,
                                        __ATOMIC_RELAXED)) {
            __atomic_store_n(&slot->rule, rule_pack(rule), __ATOMIC_RELAXED);
            __atomic_store_n(&slot->address, address, __ATOMIC_RELEASE);
            return;
        }
        if (key == address)
            return; /* another thread added it */
    }
}

/* ---- reading DWARF call frame information ------------------------------------ */

/* A cursor over bytes of unwind information; `bad` once anything is out of
 * bounds or not understood. */
struct reader {
    const uint8_t *at, *end;
    bool bad;
};

static uint64_t read_bytes(struct reader *r, size_t count)
{
    if (r->bad || (size_t)(r->end - r->at) < count) {
        r->bad = true;
        return 0;
    }
    uint64_t value = 0;
    memcpy(&value, r->at, count); /* little-endian */
    r->at += count;
    return value;
}

static uint64_t read_uleb(struct reader *r)
{
    uint64_t value = 0;
    for (unsigned shift = 0; shift < 64; shift += 7) {
        uint8_t byte = (uint8_t)read_bytes(r, 1);
        value |= (uint64_t)(byte & 0x7f) << shift;
        if (!(byte & 0x80) || r->bad)
            return value;
    }
    r->bad = true;
    return 0;
}

static int64_t read_sleb(struct reader *r)
{
    int64_t value = 0;
    unsigned shift = 0;
    uint8_t byte;
    do {
        byte = (uint8_t)read_bytes(r, 1);
        if (shift < 64)
            value |= (int64_t)((uint64_t)(byte & 0x7f) << shift);
        shift += 7;
    } while ((byte & 0x80) && !r->bad);
    if (shift < 64 && (byte & 0x40))
        value |= -((int64_t)1 << shift);
    return value;
}

/* DW_EH_PE_* pointer encodings. */
#define PE_OMIT 0xff
#define PE_PCREL 0x10
#define PE_DATAREL 0x30
#define PE_INDIRECT 0x80

/* An encoded value (the low nibble's format, the high nibble's base:
 * absolute, pc-relative, or relative to `data_base`). */
static uint64_t read_encoded(struct reader *r, uint8_t encoding, const uint8_t *data_base)
{
    const uint8_t *field = r->at;
    uint64_t value;
    switch (encoding & 0x0f) {
    case 0x00: value = read_bytes(r, 8); break;                       /* absptr */
    case 0x01: value = read_uleb(r); break;                           /* uleb128 */
    case 0x02: value = read_bytes(r, 2); break;                       /* udata2 */
    case 0x03: value = read_bytes(r, 4); break;                       /* udata4 */
    case 0x04: value = read_bytes(r, 8); break;                       /* udata8 */
    case 0x09: value = (uint64_t)read_sleb(r); break;                 /* sleb128 */
    case 0x0a: value = (uint64_t)(int64_t)(int16_t)read_bytes(r, 2); break;
    case 0x0b: value = (uint64_t)(int64_t)(int32_t)read_bytes(r, 4); break;
    case 0x0c: value = read_bytes(r, 8); break;
    default: r->bad = true; return 0;
    }
    switch (encoding & 0x70) {
    case 0x00: break;
    case PE_PCREL: value += (uintptr_t)field; break;
    case PE_DATAREL: value += (uintptr_t)data_base; break;
    default: r->bad = true;
    }
    if (encoding & PE_INDIRECT)
        r->bad = true;
    return value;
}

/* x86_64's DWARF register numbers. */
#define REG_RBP 6
#define REG_RSP 7
#define REG_RA 16

/* What the CFA instructions say, as far as this unwinder follows them. */
struct frame_state {
    uint64_t cfa_register;
    int64_t cfa_offset;
    enum { SAVED_NOT, SAVED_AT } rbp, ra;
    int64_t rbp_offset, ra_offset;
    bool ra_undefined;
    bool unsupported;
};

struct cie {
    uint64_t code_align;
    int64_t data_align;
    uint64_t ra_register;
    uint8_t fde_encoding;
    bool has_augmentation_data;
    bool signal_frame;
    const uint8_t *instructions, *end;
};

static bool parse_cie(const uint8_t *at, struct cie *cie)
{
    struct reader r = {at, at + 4, false};
    uint64_t length = read_bytes(&r, 4);
    if (r.bad || length == 0 || length >= 0xfffffff0)
        return false;
    r.end = at + 4 + length;
    if (read_bytes(&r, 4) != 0) /* a CIE's id in .eh_frame */
        return false;
    uint8_t version = (uint8_t)read_bytes(&r, 1);
    if (version != 1 && version != 3)
        return false;
    const char *augmentation = (const char *)r.at;
    size_t augmentation_length = strnlen(augmentation, (size_t)(r.end - r.at));
    r.at += augmentation_length + 1;
    cie->code_align = read_uleb(&r);
    cie->data_align = read_sleb(&r);
    cie->ra_register = version == 1 ? read_bytes(&r, 1) : read_uleb(&r);
    cie->fde_encoding = 0; /* absptr */
    cie->has_augmentation_data = augmentation[0] == 'z';
    cie->signal_frame = false;
    if (cie->has_augmentation_data) {
        uint64_t data_length = read_uleb(&r);
        const uint8_t *data_end = r.at + data_length;
        for (const char *c = augmentation + 1; *c && !r.bad; c++) {
            if (*c == 'R') {
                cie->fde_encoding = (uint8_t)read_bytes(&r, 1);
            } else if (*c == 'L') {
                read_bytes(&r, 1);
            } else if (*c == 'P') {
                uint8_t encoding = (uint8_t)read_bytes(&r, 1);
                read_encoded(&r, encoding & 0x7f, NULL);
            } else if (*c == 'S') {
                cie->signal_frame = true;
            } else {
                break; /* unknown: the length skips the rest */
            }
        }
        if (data_end > r.end)
            return false;
        r.at = data_end;
    } else if (augmentation[0]) {
        return false; /* an old augmentation ("eh") */
    }
    cie->instructions = r.at;
    cie->end = r.end;
    return !r.bad;
}

/* Runs CFA instructions [at, end) from `location` up to `target`. */
static void execute(struct frame_state *state, const struct frame_state *initial,
                    const struct cie *cie, const uint8_t *at, const uint8_t *end,
                    uintptr_t *location, uintptr_t target)
{
    struct frame_state remembered[8];
    int depth = 0;
    struct reader r = {at, end, false};
    while (r.at < r.end && !r.bad && !state->unsupported) {
        uint8_t op = (uint8_t)read_bytes(&r, 1);
        uint64_t reg = 0, delta = 0;
        int64_t offset = 0;
        bool set_offset = false, restore = false;
        switch (op >> 6) {
        case 1: /* advance_loc */
            delta = (op & 0x3f) * cie->code_align;
            goto advance;
        case 2: /* offset */
            reg = op & 0x3f;
            offset = (int64_t)read_uleb(&r) * cie->data_align;
            set_offset = true;
            break;
        case 3: /* restore */
            reg = op & 0x3f;
            restore = true;
            break;
        default:
            switch (op) {
            case 0x00: break; /* nop */
            case 0x01: { /* set_loc */
                uintptr_t to = (uintptr_t)read_encoded(&r, cie->fde_encoding, NULL);
                if (to > target)
                    return;
                *location = to;
                break;
            }
            case 0x02: delta = read_bytes(&r, 1) * cie->code_align; goto advance;
            case 0x03: delta = read_bytes(&r, 2) * cie->code_align; goto advance;
            case 0x04: delta = read_bytes(&r, 4) * cie->code_align; goto advance;
            case 0x05: /* offset_extended */
                reg = read_uleb(&r);
                offset = (int64_t)read_uleb(&r) * cie->data_align;
                set_offset = true;
                break;
            case 0x06: /* restore_extended */
                reg = read_uleb(&r);
                restore = true;
                break;
            case 0x07: /* undefined */
                reg = read_uleb(&r);
                if (reg == REG_RA)
                    state->ra_undefined = true;
                else if (reg == REG_RBP || reg == REG_RSP)
                    state->unsupported = true;
                break;
            case 0x08: /* same_value */
                reg = read_uleb(&r);
                if (reg == REG_RBP)
                    state->rbp = SAVED_NOT;
                else if (reg == REG_RA || reg == REG_RSP)
                    state->unsupported = true;
                break;
            case 0x09: /* register */
                reg = read_uleb(&r);
                read_uleb(&r);
                if (reg == REG_RBP || reg == REG_RA || reg == REG_RSP)
                    state->unsupported = true;
                break;
            case 0x0a: /* remember_state */
                if (depth == 8)
                    state->unsupported = true;
                else
                    remembered[depth++] = *state;
                break;
            case 0x0b: /* restore_state */
                if (depth == 0)
                    state->unsupported = true;
                else
                    *state = remembered[--depth];
                break;
            case 0x0c: /* def_cfa */
                state->cfa_register = read_uleb(&r);
                state->cfa_offset = (int64_t)read_uleb(&r);
                break;
            case 0x0d: /* def_cfa_register */
                state->cfa_register = read_uleb(&r);
                break;
            case 0x0e: /* def_cfa_offset */
                state->cfa_offset = (int64_t)read_uleb(&r);
                break;
            case 0x0f: /* def_cfa_expression */
                state->unsupported = true;
                break;
            case 0x10: /* expression */
            case 0x16: /* val_expression */
                reg = read_uleb(&r);
                r.at += read_uleb(&r);
                if (reg == REG_RBP || reg == REG_RA || reg == REG_RSP)
                    state->unsupported = true;
                break;
            case 0x11: /* offset_extended_sf */
                reg = read_uleb(&r);
                offset = read_sleb(&r) * cie->data_align;
                set_offset = true;
                break;
            case 0x12: /* def_cfa_sf */
                state->cfa_register = read_uleb(&r);
                state->cfa_offset = read_sleb(&r) * cie->data_align;
                break;
            case 0x13: /* def_cfa_offset_sf */
                state->cfa_offset = read_sleb(&r) * cie->data_align;
                break;
            case 0x14: /* val_offset */
            case 0x15: /* val_offset_sf */
                reg = read_uleb(&r);
                if (op == 0x14)
                    read_uleb(&r);
                else
                    read_sleb(&r);
                if (reg == REG_RBP || reg == REG_RA || reg == REG_RSP)
                    state->unsupported = true;
                break;
            case 0x2e: /* GNU_args_size */
                read_uleb(&r);
                break;
            default: /* GNU_negative_offset_extended, vendor extensions */
                state->unsupported = true;
            }
        }
        if (set_offset) {
            if (reg == REG_RBP) {
                state->rbp = SAVED_AT;
                state->rbp_offset = offset;
            } else if (reg == REG_RA) {
                state->ra = SAVED_AT;
                state->ra_offset = offset;
                state->ra_undefined = false;
            } else if (reg == REG_RSP) {
                state->unsupported = true;
            }
        } else if (restore && initial) {
            if (reg == REG_RBP) {
                state->rbp = initial->rbp;
                state->rbp_offset = initial->rbp_offset;
            } else if (reg == REG_RA) {
                state->ra = initial->ra;
                state->ra_offset = initial->ra_offset;
                state->ra_undefined = initial->ra_undefined;
            }
        } else if (restore) {
            state->unsupported = true; /* restore in a CIE */
        }
        continue;
    advance:
        if (*location + delta > target)
            return;
        *location += delta;
    }
    if (r.bad)
        state->unsupported = true;
}

/* The rule for the frame whose code is at `address` (the call instruction
 * of a return address, or the unwinder's own position). */
static struct rule compute_rule(uintptr_t address)
{
    const struct rule fallback = {.kind = RULE_FALLBACK}, end = {.kind = RULE_END};
    struct dl_find_object object;
    if (_dl_find_object((void *)address, &object) != 0 || !object.dlfo_eh_frame)
        return end;
    /* .eh_frame_hdr: version, three encodings, the .eh_frame pointer, the
     * FDE count, then the sorted table of (start, FDE) pairs. */
    const uint8_t *header = object.dlfo_eh_frame;
    if (header[0] != 1 || header[3] != (PE_DATAREL | 0x0b)) /* datarel sdata4 pairs */
        return fallback;
    struct reader r = {header + 4, header + 64, false};
    read_encoded(&r, header[1], header);
    uint64_t count = read_encoded(&r, header[2], header);
    if (r.bad || header[2] == PE_OMIT || count == 0)
        return fallback;
    const int32_t *table = (const int32_t *)r.at;
    size_t low = 0, high = (size_t)count;
    if ((uintptr_t)(header + table[0]) > address)
        return end;
    while (high - low > 1) { /* the last start <= address */
        size_t middle = low + (high - low) / 2;
        if ((uintptr_t)(header + table[2 * middle]) <= address)
            low = middle;
        else
            high = middle;
    }
    uintptr_t start = (uintptr_t)(header + table[2 * low]);
    const uint8_t *fde = header + table[2 * low + 1];
    /* The FDE: length, CIE pointer, start (skipped: the table's), length
     * of the code, augmentation data, instructions. */
    r = (struct reader){fde, fde + 8, false};
    uint64_t length = read_bytes(&r, 4);
    if (r.bad || length == 0 || length >= 0xfffffff0)
        return fallback;
    r.end = fde + 4 + length;
    uint32_t cie_pointer = (uint32_t)read_bytes(&r, 4);
    struct cie cie;
    if (r.bad || !parse_cie(fde + 4 - cie_pointer, &cie) || cie.signal_frame ||
        cie.ra_register != REG_RA)
        return fallback;
    read_encoded(&r, cie.fde_encoding & 0x0f, NULL);
    uint64_t range = read_encoded(&r, cie.fde_encoding & 0x0f, NULL);
    if (r.bad)
        return fallback;
    if (address >= start + range)
        return end; /* in no function that has unwind information */
    if (cie.has_augmentation_data)
        r.at += read_uleb(&r);
    if (r.bad || r.at > r.end)
        return fallback;

    struct frame_state state = {.cfa_register = REG_RSP, .cfa_offset = 8};
    uintptr_t location = start;
    execute(&state, NULL, &cie, cie.instructions, cie.end, &location, (uintptr_t)-1);
    struct frame_state initial = state;
    location = start;
    execute(&state, &initial, &cie, r.at, r.end, &location, address);
    if (state.unsupported)
        return fallback;
    if (state.ra_undefined)
        return end;
    if ((state.cfa_register != REG_RSP && state.cfa_register != REG_RBP) ||
        state.ra != SAVED_AT || state.ra_offset != -8 || state.cfa_offset < 8 ||
        state.cfa_offset > INT32_MAX || state.rbp_offset < INT16_MIN ||
        state.rbp_offset > INT16_MAX)
        return fallback;
    return (struct rule){
        .kind = RULE_FRAME,
        .cfa_is_rbp = state.cfa_register == REG_RBP,
        .rbp_saved = state.rbp == SAVED_AT,
        .rbp_offset = (int16_t)state.rbp_offset,
        .cfa_offset = (int32_t)state.cfa_offset,
    };
}

static struct rule rule_of(uintptr_t address)
{
    struct rule rule;
    if (cache_find(address, &rule))
        return rule;
    rule = compute_rule(address);
    cache_add(address, rule);
    return rule;
}

/* ---- the walk ------------------------------------------------------------------ */

/* Defined by the linker in a dynamic object (libxmm.so, or a program
 * that links libxmm.a dynamically); absent, so NULL, in a static
 * executable. */
extern ElfW(Dyn) _DYNAMIC[] __attribute__((weak)); /* link.h declares it; made weak */

/* A static executable: no _DYNAMIC (-static), or no dynamic loader
 * mapped (-static-pie, which has a _DYNAMIC of its own, runs with the
 * auxiliary vector's AT_BASE 0). */
static bool static_executable(void)
{
    return _DYNAMIC == NULL || getauxval(AT_BASE) == 0;
}

void xmm_os_backtrace_prepare(void)
{
    int saved_errno = errno; /* loading libgcc_s searches the library path */
    void *frames[4];
    /* Loads libgcc_s for the fallback. Not in a static executable: its
     * unwinder is linked in, and XMM may be initialising from glibc's
     * start-up (_dl_non_dynamic_init's malloc), where that unwinder
     * aborted (tests/override/static_exe.c). */
    if (!static_executable())
        backtrace(frames, 4);
    if (!cache) {
        unsigned long long unloads = 0;
        dl_iterate_phdr(read_unloads, &unloads);
        cache_unloads = unloads;
        cache = xmm_os_map(CACHE_SLOTS * sizeof(struct slot), 0);
    }
    errno = saved_errno;
}

#define MAX_FRAME_BYTES ((uintptr_t)256 << 20)

__attribute__((noinline)) int xmm_os_backtrace(void **frames, int max)
{
    const void *caller = __builtin_return_address(0);
    if (!__atomic_load_n(&cache, __ATOMIC_RELAXED) || max <= 0)
        return xmm_os_backtrace_libc_from(frames, max, caller);
    cache_check_unloads();
    uintptr_t pc, sp, bp;
    /* This function's own position and registers: its first frame. */
    __asm__ volatile("lea 0(%%rip), %0\n\tmov %%rsp, %1\n\tmov %%rbp, %2"
                     : "=r"(pc), "=r"(sp), "=r"(bp));
    uintptr_t lookup = pc;
    int count = 0;
    while (count < max) {
        struct rule rule = rule_of(lookup);
        if (rule.kind == RULE_END)
            break;
        if (rule.kind != RULE_FRAME)
            return xmm_os_backtrace_libc_from(frames, max, caller);
        uintptr_t cfa = (rule.cfa_is_rbp ? bp : sp) + (uintptr_t)(intptr_t)rule.cfa_offset;
        /* Frames only go up the stack, and not far: anything else is a
         * rule that does not fit this stack (a corrupt or foreign one). */
        if (cfa <= sp || cfa - sp > MAX_FRAME_BYTES || (cfa & 7))
            break;
        uintptr_t return_address = *(const uintptr_t *)(cfa - 8);
        if (rule.rbp_saved)
            bp = *(const uintptr_t *)(cfa + (intptr_t)rule.rbp_offset);
        sp = cfa;
        if (return_address == 0)
            break;
        frames[count++] = (void *)return_address;
        lookup = return_address - 1; /* the call instruction's rule */
    }
    return count;
}
