/*
 * size-mix - the size mix changes phase by phase: does memory freed by
 * one block size serve the next size, or does every phase add to the RSS?
 *
 * For each size of SIZES in turn, ROUNDS times over: allocate MB_PER_PHASE
 * MiB (requested bytes) of blocks of that size, write every page of every
 * block, then free them all. With THREADS threads each thread allocates its
 * share of the phase; all threads hold their blocks at once (a barrier)
 * before any frees, and the next phase starts when all have freed. So at
 * most MB_PER_PHASE MiB are live at any time, and an allocator that reuses
 * freed memory across sizes (or returns it before mapping more) peaks a
 * little above that.
 *
 * Blocks are chained through their first word (every size is at least 8
 * bytes), so the benchmark keeps no array of pointers: the RSS is the
 * allocator's. After each phase (all freed) the main thread prints "sample
 * t_s=... rss_kb=... phase=SIZE".
 *
 * elapsed_s is the whole run; ops counts mallocs and frees. Extra fields:
 * rss_end_kb (RSS after the last phase) and peak_phase (the index of the
 * phase during which the peak RSS was first reached, from 1).
 *
 * usage: size-mix THREADS MB_PER_PHASE ROUNDS SIZE[,SIZE...]
 */
#include "common.h"

#define MAX_SIZES 64

struct mix_config {
    unsigned threads;
    size_t phase_bytes;
    unsigned rounds;
    unsigned size_count;
    size_t sizes[MAX_SIZES];
    pthread_barrier_t barrier;
};

struct mix_worker {
    struct mix_config *config;
    unsigned index;
    double ops;
};

/* Allocates `bytes` in blocks of `size`, chained, every page written. */
static void *allocate_phase(size_t size, size_t bytes, double *ops)
{
    void *head = NULL;
    for (size_t done = 0; done < bytes; done += size) {
        void **block = checked_malloc(size);
        touch(block, size);
        *block = head;
        head = block;
        *ops += 1;
    }
    return head;
}

static void free_phase(void *head, double *ops)
{
    while (head) {
        void *next = *(void **)head;
        free(head);
        head = next;
        *ops += 1;
    }
}

static void *run_phases(void *argument)
{
    struct mix_worker *worker = argument;
    struct mix_config *config = worker->config;
    size_t share = config->phase_bytes / config->threads;
    for (unsigned round = 0; round < config->rounds; round++) {
        for (unsigned i = 0; i < config->size_count; i++) {
            void *blocks = allocate_phase(config->sizes[i], share, &worker->ops);
            pthread_barrier_wait(&config->barrier); /* all of the phase is live */
            free_phase(blocks, &worker->ops);
            pthread_barrier_wait(&config->barrier); /* all freed */
            pthread_barrier_wait(&config->barrier); /* sampled */
        }
    }
    return NULL;
}

static unsigned parse_sizes(const char *text, size_t *sizes)
{
    unsigned count = 0;
    char copy[1024];
    snprintf(copy, sizeof copy, "%s", text);
    for (char *item = strtok(copy, ","); item; item = strtok(NULL, ",")) {
        if (count == MAX_SIZES) {
            fprintf(stderr, "size-mix: at most %d sizes\n", MAX_SIZES);
            exit(2);
        }
        sizes[count] = parse_count(item, "size");
        if (sizes[count] < sizeof(void *)) {
            fprintf(stderr, "size-mix: sizes must be at least %zu bytes\n", sizeof(void *));
            exit(2);
        }
        count++;
    }
    return count;
}

int main(int argc, char **argv)
{
    if (argc != 5) {
        fprintf(stderr, "usage: %s THREADS MB_PER_PHASE ROUNDS SIZE[,SIZE...]\n", argv[0]);
        return 2;
    }
    static struct mix_config config;
    config.threads = (unsigned)parse_count(argv[1], "threads");
    config.phase_bytes = parse_count(argv[2], "MB per phase") << 20;
    config.rounds = (unsigned)parse_count(argv[3], "rounds");
    config.size_count = parse_sizes(argv[4], config.sizes);
    if (!config.threads || config.threads > 256 || !config.phase_bytes || !config.rounds ||
        !config.size_count) {
        fprintf(stderr, "size-mix: need 1-256 threads, a phase size, rounds and sizes\n");
        return 2;
    }
    /* The workers and the main thread (which samples between phases). */
    pthread_barrier_init(&config.barrier, NULL, config.threads + 1);
    pthread_t threads[config.threads];
    struct mix_worker workers[config.threads];

    double start = now_seconds();
    for (unsigned i = 0; i < config.threads; i++) {
        workers[i] = (struct mix_worker){&config, i, 0};
        start_thread(&threads[i], run_phases, &workers[i]);
    }
    long peak = 0;
    unsigned peak_phase = 0, phase = 0;
    for (unsigned round = 0; round < config.rounds; round++) {
        for (unsigned i = 0; i < config.size_count; i++) {
            pthread_barrier_wait(&config.barrier);
            pthread_barrier_wait(&config.barrier);
            phase++;
            long now_peak = peak_rss_kb();
            if (now_peak > peak) {
                peak = now_peak;
                peak_phase = phase;
            }
            printf("sample t_s=%.3f rss_kb=%ld phase=%zu\n", now_seconds() - start,
                   current_rss_kb(), config.sizes[i]);
            fflush(stdout);
            pthread_barrier_wait(&config.barrier);
        }
    }
    double ops = 0;
    for (unsigned i = 0; i < config.threads; i++) {
        pthread_join(threads[i], NULL);
        ops += workers[i].ops;
    }
    double elapsed = now_seconds() - start;

    char extra[96];
    snprintf(extra, sizeof extra, "rss_end_kb=%ld peak_phase=%u", current_rss_kb(), peak_phase);
    print_result("size-mix", elapsed, ops, extra);
    return 0;
}
