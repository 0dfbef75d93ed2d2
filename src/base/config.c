/*
 * config.c - the XMM_* variables: one table, parsed once without allocating.
 *
 * A malformed value gets one line naming the variable and the accepted
 * forms, and the default is kept; so does an unknown XMM_* name. With
 * XMM_STRICT=1 either is fatal.
 */
#include <limits.h>
#include <signal.h>
#include <string.h>

#include "config.h"
#include "report.h"

struct xmm_config xmm_config = {
    .numa_mode = XMM_NUMA_LOCAL,
    .cpu_cache_bytes = (size_t)4 << 20,
    .thread_cache_bytes = (size_t)2 << 20,
    .rseq = XMM_RSEQ_LIBC,
    .decay_ms = 1000,
    .purge_lazy = false,
    .background = XMM_BACKGROUND_AUTO,
    .thp = XMM_THP_AUTO,
    .stats_at_exit = XMM_STATS_NONE,
    .stats_file = NULL,
    .stats_signal = 0,
    .invalid_free_abort = true,
    .verbose = false,
    .strict = false,
};

/* A parser returns true if it accepted the value. */
typedef bool (*value_parser)(const char *value, void *target);

struct variable {
    const char *name;
    const char *accepted;     /* shown when the value is malformed */
    const char *default_text;
    const char *meaning;
    value_parser parse;
    void *target;
};

static bool parse_bool(const char *value, void *target)
{
    bool *flag = target;
    if (!strcmp(value, "1") || !strcmp(value, "on") || !strcmp(value, "yes") ||
        !strcmp(value, "true")) {
        *flag = true;
        return true;
    }
    if (!strcmp(value, "0") || !strcmp(value, "off") || !strcmp(value, "no") ||
        !strcmp(value, "false")) {
        *flag = false;
        return true;
    }
    return false;
}

/* What parse_bool takes, as the message for a malformed switch says it. */
#define SWITCH_FORMS "1 or 0 (or on/off, yes/no, true/false)"

/* "123", "64K", "2M", "1G" (binary multiples; a trailing "B"/"iB" is fine). */
static bool parse_size(const char *value, void *target)
{
    uint64_t number = 0;
    const char *cursor = value;
    if (*cursor < '0' || *cursor > '9')
        return false;
    while (*cursor >= '0' && *cursor <= '9') {
        if (number > (UINT64_MAX - 9) / 10)
            return false;
        number = number * 10 + (uint64_t)(*cursor++ - '0');
    }
    unsigned shift = 0;
    switch (*cursor) {
    case 'k': case 'K': shift = 10; cursor++; break;
    case 'm': case 'M': shift = 20; cursor++; break;
    case 'g': case 'G': shift = 30; cursor++; break;
    default: break;
    }
    if (*cursor == 'i')
        cursor++;
    if (*cursor == 'B' || *cursor == 'b')
        cursor++;
    if (*cursor || (shift && number > (UINT64_MAX >> shift)))
        return false;
    *(size_t *)target = (size_t)(number << shift);
    return true;
}

/* Digits only: no sign, space, unit or byte suffix. */
static bool parse_whole_number(const char *value, uint64_t *number)
{
    size_t parsed;
    if (value[strspn(value, "0123456789")] != '\0' || !parse_size(value, &parsed))
        return false;
    *number = parsed;
    return true;
}

static bool parse_milliseconds(const char *value, void *target)
{
    return parse_whole_number(value, target);
}

static bool parse_node_list(const char *text, uint64_t *mask)
{
    uint64_t result = 0;
    while (*text) {
        unsigned first = 0, last;
        if (*text < '0' || *text > '9')
            return false;
        while (*text >= '0' && *text <= '9')
            first = first * 10 + (unsigned)(*text++ - '0');
        last = first;
        if (*text == '-') {
            text++;
            if (*text < '0' || *text > '9')
                return false;
            last = 0;
            while (*text >= '0' && *text <= '9')
                last = last * 10 + (unsigned)(*text++ - '0');
        }
        if (first > last || last >= XMM_MAX_NODES)
            return false;
        for (unsigned node = first; node <= last; node++)
            result |= (uint64_t)1 << node;
        if (*text == ',')
            text++;
        else if (*text)
            return false;
    }
    if (!result)
        return false;
    *mask = result;
    return true;
}

static bool parse_numa(const char *value, void *target)
{
    struct xmm_config *config = target;
    if (!strcmp(value, "local")) {
        config->numa_mode = XMM_NUMA_LOCAL;
    } else if (!strcmp(value, "interleave")) {
        config->numa_mode = XMM_NUMA_INTERLEAVE;
    } else if (!strcmp(value, "off")) {
        config->numa_mode = XMM_NUMA_OFF;
    } else if (!strncmp(value, "bind:", 5) && parse_node_list(value + 5, &config->bind_nodes)) {
        config->numa_mode = XMM_NUMA_BIND;
    } else {
        return false;
    }
    return true;
}

/* A variable that names one of two choices, stored as a bool. */
static bool parse_choice(const char *value, const char *when_true, const char *when_false,
                         bool *target)
{
    if (strcmp(value, when_true) && strcmp(value, when_false))
        return false;
    *target = !strcmp(value, when_true);
    return true;
}

static bool parse_purge(const char *value, void *target)
{
    return parse_choice(value, "free", "dontneed", target);
}

static bool parse_thp(const char *value, void *target)
{
    enum xmm_thp_mode *mode = target;
    if (!strcmp(value, "auto"))
        *mode = XMM_THP_AUTO;
    else if (!strcmp(value, "never"))
        *mode = XMM_THP_NEVER;
    else if (!strcmp(value, "always"))
        *mode = XMM_THP_ALWAYS;
    else
        return false;
    return true;
}

static bool parse_stats(const char *value, void *target)
{
    enum xmm_stats_format *format = target;
    if (!strcmp(value, "text") || !strcmp(value, "1"))
        *format = XMM_STATS_TEXT;
    else if (!strcmp(value, "json"))
        *format = XMM_STATS_JSON;
    else if (!strcmp(value, "none") || !strcmp(value, "0"))
        *format = XMM_STATS_NONE;
    else
        return false;
    return true;
}

/* Copies of the path variables' values, XMM_STATS_FILE's and
 * XMM_PROFILE_FILE's (a PATH_MAX each). Not the environment's own bytes:
 * servers that set their process title (nginx, postgres, redis) move the
 * environment to the heap and write the title over the old block, and the
 * report at exit opened whatever was left there (files named "\1" in a
 * data directory). */
static char path_copies[2][PATH_MAX];
static size_t path_copies_used;

/* A path in which %p, %e and %% expand (when it is opened, in stats.c). */
static bool parse_path(const char *value, void *target)
{
    size_t length = strlen(value);
    if (length == 0 || length >= PATH_MAX || path_copies_used == 2)
        return false;
    for (const char *cursor = value; (cursor = strchr(cursor, '%')); cursor += 2)
        if (!cursor[1] || !strchr("pe%", cursor[1]))
            return false;
    char *copy = path_copies[path_copies_used++];
    memcpy(copy, value, length + 1);
    *(const char **)target = copy;
    return true;
}

/* Whether a handler that writes a report and returns fits `number`: not a
 * signal that cannot be caught (SIGKILL, SIGSTOP), not one the kernel
 * sends for a fault (returning from its handler runs the faulting
 * instruction again: a loop that never ends, writing a report each time),
 * not SIGABRT (XMM's own reports abort), and not the two real-time
 * signals glibc keeps for itself (thread cancellation, setuid across
 * threads). */
static bool signal_fits_a_report(int number)
{
    static const int refused[] = {SIGKILL, SIGSTOP, SIGSEGV, SIGBUS, SIGILL,
                                  SIGFPE,  SIGTRAP, SIGSYS,  SIGABRT};
    for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++)
        if (number == refused[i])
            return false;
    return number >= 1 && number <= 64 && (number < 32 || number >= SIGRTMIN);
}

/* "RTMIN", "RTMIN+N", "RTMAX", "RTMAX-N" (N within the real-time range):
 * the number, or 0. */
static int realtime_signal(const char *value)
{
    int base, sign;
    if (!strncmp(value, "RTMIN", 5)) {
        base = SIGRTMIN;
        sign = 1;
    } else if (!strncmp(value, "RTMAX", 5)) {
        base = SIGRTMAX;
        sign = -1;
    } else {
        return 0;
    }
    value += 5;
    if (!*value)
        return base;
    uint64_t offset;
    if (*value != (sign > 0 ? '+' : '-') || !parse_whole_number(value + 1, &offset) ||
        offset > (uint64_t)(SIGRTMAX - SIGRTMIN))
        return 0;
    return base + sign * (int)offset;
}

/* A signal by name (with or without "SIG": every name kill -l gives,
 * real-time ones as RTMIN+N or RTMAX-N) or by number, one that
 * signal_fits_a_report accepts. */
static bool parse_signal(const char *value, void *target)
{
    static const struct { const char *name; int number; } signals[] = {
        {"HUP", SIGHUP},       {"INT", SIGINT},       {"QUIT", SIGQUIT},
        {"ILL", SIGILL},       {"TRAP", SIGTRAP},     {"ABRT", SIGABRT},
        {"IOT", SIGIOT},       {"BUS", SIGBUS},       {"FPE", SIGFPE},
        {"KILL", SIGKILL},     {"USR1", SIGUSR1},     {"SEGV", SIGSEGV},
        {"USR2", SIGUSR2},     {"PIPE", SIGPIPE},     {"ALRM", SIGALRM},
        {"TERM", SIGTERM},     {"STKFLT", SIGSTKFLT}, {"CHLD", SIGCHLD},
        {"CLD", SIGCHLD},      {"CONT", SIGCONT},     {"STOP", SIGSTOP},
        {"TSTP", SIGTSTP},     {"TTIN", SIGTTIN},     {"TTOU", SIGTTOU},
        {"URG", SIGURG},       {"XCPU", SIGXCPU},     {"XFSZ", SIGXFSZ},
        {"VTALRM", SIGVTALRM}, {"PROF", SIGPROF},     {"WINCH", SIGWINCH},
        {"IO", SIGIO},         {"POLL", SIGPOLL},     {"PWR", SIGPWR},
        {"SYS", SIGSYS},
    };
    if (!strncmp(value, "SIG", 3))
        value += 3;
    int number = realtime_signal(value);
    for (size_t i = 0; !number && i < sizeof(signals) / sizeof(signals[0]); i++)
        if (!strcmp(value, signals[i].name))
            number = signals[i].number;
    size_t given;
    if (!number && parse_size(value, &given) && !strpbrk(value, "kKmMgGbB") && given < 65)
        number = (int)given;
    if (!number || !signal_fits_a_report(number))
        return false;
    *(int *)target = number;
    return true;
}

/* XMM_PROFILE: 1 (on, the default interval), 0, or a mean interval in
 * bytes ("512k", "1m"). */
static bool parse_profile(const char *value, void *target)
{
    struct xmm_config *config = target;
    bool on;
    size_t interval;
    if (parse_bool(value, &on)) {
        interval = on ? XMM_PROFILE_DEFAULT_INTERVAL : 0;
    } else if (!parse_size(value, &interval) || interval < 2 ||
               interval > XMM_PROFILE_MAX_INTERVAL) {
        return false;
    }
    config->profile_interval = interval;
    config->profile_at_exit = interval != 0;
    return true;
}

static bool parse_rseq(const char *value, void *target)
{
    bool on;
    if (!strcmp(value, "own"))
        *(enum xmm_rseq_mode *)target = XMM_RSEQ_OWN;
    else if (parse_bool(value, &on))
        *(enum xmm_rseq_mode *)target = on ? XMM_RSEQ_LIBC : XMM_RSEQ_OFF;
    else
        return false;
    return true;
}

static bool parse_background(const char *value, void *target)
{
    bool on;
    if (!strcmp(value, "auto"))
        *(enum xmm_background_mode *)target = XMM_BACKGROUND_AUTO;
    else if (parse_bool(value, &on))
        *(enum xmm_background_mode *)target = on ? XMM_BACKGROUND_ON : XMM_BACKGROUND_OFF;
    else
        return false;
    return true;
}

static bool parse_invalid_free(const char *value, void *target)
{
    return parse_choice(value, "abort", "warn", target);
}

static bool parse_free_check(const char *value, void *target)
{
    return parse_choice(value, "deferred", "immediate", target);
}

/* XMM_BUF_POOL_MIB: buf/ reads the value when a pool is first used (it is
 * a library over the public API, with no access to xmm_config), and keeps
 * its default on a value rejected here. Checking it here too reports a bad
 * value at start, once, under XMM_STRICT, whether or not the program ever
 * uses a pool. The same form as buf.c's: a whole number of MiB whose bytes
 * fit in a size_t. */
static bool parse_buf_pool_mib(const char *value, void *target)
{
    (void)target;
    uint64_t mib;
    return parse_whole_number(value, &mib) && mib <= (SIZE_MAX >> 20);
}

static const struct variable variables[] = {
    {"XMM_NUMA", "local, interleave, off, or bind:LIST (e.g. bind:0,2-3)", "local",
     "NUMA placement policy", parse_numa, &xmm_config},
    {"XMM_CPU_CACHE_SIZE", "a size in bytes, e.g. 1048576, 512K, 4M", "4M",
     "per-CPU cache budget (a thirty-second of it, at most of 4M, per class at first; the whole for growth)", parse_size, &xmm_config.cpu_cache_bytes},
    {"XMM_THREAD_CACHE_SIZE", "a size in bytes, e.g. 2M", "2M",
     "bytes each thread's cache may hold (per-thread mode)", parse_size,
     &xmm_config.thread_cache_bytes},
    {"XMM_RSEQ", "1, own or 0", "1",
     "per-CPU caches on glibc's rseq area (own: register XMM's own area where glibc did not; "
     "0: per-thread caches)",
     parse_rseq, &xmm_config.rseq},
    {"XMM_DECAY_MS", "milliseconds, e.g. 1000", "1000",
     "how long free pages stay before they are returned to the kernel", parse_milliseconds,
     &xmm_config.decay_ms},
    {"XMM_PURGE", "dontneed or free", "dontneed",
     "madvise used to return pages (MADV_DONTNEED or MADV_FREE)", parse_purge,
     &xmm_config.purge_lazy},
    {"XMM_BACKGROUND", "auto, 1 or 0", "auto",
     "a background thread purges decayed pages (auto: once the heap passes 64 MiB)",
     parse_background, &xmm_config.background},
    {"XMM_THP", "auto, never or always", "auto", "transparent huge pages for arena chunks",
     parse_thp, &xmm_config.thp},
    {"XMM_STATS", "none, text or json", "none", "print statistics at exit", parse_stats,
     &xmm_config.stats_at_exit},
    {"XMM_STATS_FILE", "a file path shorter than 4096 bytes, in which %p, %e and %% stand for the process id, "
     "the program name and %", "stderr",
     "where XMM_STATS and XMM_STATS_SIGNAL write (appended to)",
     parse_path, &xmm_config.stats_file},
    {"XMM_STATS_SIGNAL", "a signal name or number, e.g. SIGUSR2 (not SIGKILL, SIGSTOP, SIGABRT, a fault signal or glibc's 32 and 33)", "none",
     "print statistics when this signal arrives", parse_signal, &xmm_config.stats_signal},
    {"XMM_PROFILE", "1, 0, or a mean sampling interval in bytes (2 to 1G), e.g. 512k",
     "0", "sample allocations for a heap profile, dumped at exit", parse_profile, &xmm_config},
    {"XMM_PROFILE_FILE", "a file path shorter than 4096 bytes, in which %p, %e and %% stand for the process id, "
     "the program name and %", XMM_PROFILE_DEFAULT_FILE,
     "where heap profiles are written (replaced by each dump)", parse_path,
     &xmm_config.profile_file},
    {"XMM_PROFILE_SIGNAL", "a signal name or number, e.g. SIGUSR1 (not SIGKILL, SIGSTOP, SIGABRT, a fault signal or glibc's 32 and 33)", "none",
     "dump the heap profile when this signal arrives", parse_signal,
     &xmm_config.profile_signal},
    {"XMM_LEAKS", SWITCH_FORMS, "0", "report sampled blocks still live at exit", parse_bool,
     &xmm_config.leaks},
    {"XMM_INVALID_FREE", "abort or warn", "abort",
     "what an invalid or double free does after its message", parse_invalid_free,
     &xmm_config.invalid_free_abort},
    {"XMM_FREE_CHECK", "immediate or deferred", "immediate",
     "when free() checks a block of 16 bytes or more for a double free", parse_free_check,
     &xmm_config.free_deferred},
    {"XMM_BUF_POOL_MIB", "a whole number of MiB, e.g. 64 (0: no pooling)", "64",
     "buffer memory the xmm_buf pools keep for reuse (read in buf.c)", parse_buf_pool_mib, NULL},
    {"XMM_VERBOSE", SWITCH_FORMS, "0", "print configuration and topology at start", parse_bool,
     &xmm_config.verbose},
    {"XMM_STRICT", SWITCH_FORMS, "0", "make a bad XMM_* variable fatal", parse_bool,
     &xmm_config.strict},
};
#define VARIABLE_COUNT (sizeof(variables) / sizeof(variables[0]))

/* Which variables held a value that was rejected (bit i: variables[i]),
 * so that XMM_VERBOSE shows the default in effect, not the value given. */
static uint32_t rejected;
_Static_assert(VARIABLE_COUNT <= 32, "one bit per variable");

static void stop_if_strict(void)
{
    if (xmm_config.strict)
        xmm_fatal("xmm: XMM_STRICT is on: stopping\n");
}

static void complain_bad_value(const char *name, const char *value, const char *accepted)
{
    /* Long values shortened, so that the line (512 bytes) still says
     * what was expected. */
    char shown[164];
    size_t length = strnlen(value, 160);
    memcpy(shown, value, length);
    strcpy(shown + length, value[length] ? "..." : "");
    xmm_report("xmm: bad value %s='%s': expected %s; using the default\n", name, shown,
               accepted);
    stop_if_strict();
}

/* Levenshtein distance between two names of up to NAME_MAX_LENGTH bytes
 * (longer ones are compared on that prefix): one row on the stack, no
 * allocation. */
#define NAME_MAX_LENGTH 63
static size_t edit_distance(const char *a, const char *b)
{
    size_t a_length = strnlen(a, NAME_MAX_LENGTH), b_length = strnlen(b, NAME_MAX_LENGTH);
    size_t row[NAME_MAX_LENGTH + 1];
    for (size_t j = 0; j <= b_length; j++)
        row[j] = j;
    for (size_t i = 1; i <= a_length; i++) {
        size_t diagonal = row[0];
        row[0] = i;
        for (size_t j = 1; j <= b_length; j++) {
            size_t above = row[j];
            size_t best = diagonal + (a[i - 1] != b[j - 1]);
            if (above + 1 < best)
                best = above + 1;
            if (row[j - 1] + 1 < best)
                best = row[j - 1] + 1;
            row[j] = best;
            diagonal = above;
        }
    }
    return row[b_length];
}

static bool is_prefix(const char *shorter, const char *longer)
{
    return !strncmp(shorter, longer, strlen(shorter));
}

/* The known name an unknown one was most likely meant to be: within two
 * edits (a typo), or one name a prefix of the other, the shorter at least
 * "XMM_" and four letters (XMM_DECA for XMM_DECAY_MS, XMM_NUMA_MODE for
 * XMM_NUMA). NULL if none is. */
static const char *closest_known_name(const char *unknown)
{
    const char *closest = NULL;
    size_t closest_distance = SIZE_MAX;
    for (size_t i = 0; i < VARIABLE_COUNT; i++) {
        const char *known = variables[i].name;
        size_t distance = edit_distance(unknown, known);
        bool related = strlen(unknown) >= 8 &&
                       (is_prefix(unknown, known) || is_prefix(known, unknown));
        if ((distance <= 2 || related) && distance < closest_distance) {
            closest = known;
            closest_distance = distance;
        }
    }
    return closest;
}

static void complain_unknown(const char *name)
{
    const char *closest = closest_known_name(name);
    if (closest)
        xmm_report("xmm: unknown variable %s; ignored (did you mean %s?)\n", name, closest);
    else
        xmm_report("xmm: unknown variable %s; ignored (XMM_VERBOSE=1 lists the variables)\n",
                   name);
    stop_if_strict();
}

static bool is_known(const char *entry)
{
    for (size_t i = 0; i < VARIABLE_COUNT; i++) {
        size_t length = strlen(variables[i].name);
        if (!strncmp(entry, variables[i].name, length) && entry[length] == '=')
            return true;
    }
    return false;
}

extern char **environ;

void xmm_config_read(void)
{
    /* Strictness first, so that it applies to every other variable. */
    path_copies_used = 0;
    const char *strict = xmm_os_getenv("XMM_STRICT");
    if (strict)
        parse_bool(strict, &xmm_config.strict);
    for (size_t i = 0; i < VARIABLE_COUNT; i++) {
        const char *value = xmm_os_getenv(variables[i].name);
        if (value && !variables[i].parse(value, variables[i].target)) {
            rejected |= (uint32_t)1 << i;
            complain_bad_value(variables[i].name, value, variables[i].accepted);
        }
    }
    for (char **entry = environ; entry && *entry; entry++) {
        /* An entry without '=' sets nothing (getenv never finds it). */
        if (strncmp(*entry, "XMM_", 4) || !strchr(*entry, '=') || is_known(*entry))
            continue;
        char name[NAME_MAX_LENGTH + 1];
        size_t length = strcspn(*entry, "=");
        if (length >= sizeof(name))
            length = sizeof(name) - 1;
        memcpy(name, *entry, length);
        name[length] = '\0';
        complain_unknown(name);
    }
    /* One signal cannot do both: the profile's handler would replace the
     * statistics' and a report asked for would never come. */
    if (xmm_config.profile_signal && xmm_config.profile_signal == xmm_config.stats_signal) {
        xmm_report("xmm: XMM_PROFILE_SIGNAL is XMM_STATS_SIGNAL's signal (%d); ignored: "
                   "the signal prints statistics\n", xmm_config.profile_signal);
        xmm_config.profile_signal = 0;
        stop_if_strict();
    }
    /* The leak report and signal dumps need samples: they turn sampling on
     * at the default interval unless XMM_PROFILE chose one. */
    if ((xmm_config.leaks || xmm_config.profile_signal) && !xmm_config.profile_interval)
        xmm_config.profile_interval = XMM_PROFILE_DEFAULT_INTERVAL;
}

void xmm_config_print(void)
{
    for (size_t i = 0; i < VARIABLE_COUNT; i++) {
        const char *value = xmm_os_getenv(variables[i].name);
        if (!value)
            xmm_report("xmm: config %s=%s (default)\n", variables[i].name,
                       variables[i].default_text);
        else if (rejected & (uint32_t)1 << i)
            xmm_report("xmm: config %s=%s (default; '%s' was rejected)\n", variables[i].name,
                       variables[i].default_text, value);
        else if (variables[i].parse == parse_size)
            xmm_report("xmm: config %s=%s (%z bytes)\n", variables[i].name, value,
                       *(const size_t *)variables[i].target);
        else if (variables[i].parse == parse_profile && xmm_config.profile_interval)
            xmm_report("xmm: config %s=%s (a sample every %z bytes on average)\n",
                       variables[i].name, value, xmm_config.profile_interval);
        else
            xmm_report("xmm: config %s=%s\n", variables[i].name, value);
    }
}
