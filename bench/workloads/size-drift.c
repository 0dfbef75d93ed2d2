/*
 * size-drift - block sizes drift slowly: does memory freed in one size
 * class serve the classes after it, or does each class passed keep some?
 *
 * Each thread keeps a sliding window of zeroed buffers (calloc) whose
 * size grows by one byte with each buffer, from 1 to TOP bytes and round
 * again, PASSES times: once the window holds WINDOW buffers, the oldest
 * half is freed. So the live bytes are at most WINDOW times the sizes of
 * the moment (34 MiB for 500 buffers at 70,000 bytes), and every class is
 * used for a few hundred buffers, then not again until the next pass. A
 * parser's or a serializer's buffers, or a Python list of bytearrays of
 * growing length, drift this way. An allocator whose classes keep their
 * freed blocks peaks at about the sum of every class's window.
 *
 * elapsed_s is the whole run; ops counts callocs and frees.
 *
 * usage: size-drift THREADS PASSES TOP WINDOW
 */
#include "common.h"

struct drift_config {
    unsigned passes;
    size_t top;
    unsigned window;
};

struct drift_worker {
    const struct drift_config *config;
    double ops;
};

static void *drift(void *argument)
{
    struct drift_worker *worker = argument;
    const struct drift_config *config = worker->config;
    void **window = checked_malloc((config->window + 1) * sizeof(void *));
    unsigned held = 0, half = config->window / 2;
    size_t buffers = config->passes * config->top;
    for (size_t i = 0; i < buffers; i++) {
        window[held] = checked_calloc(i % config->top + 1);
        escape(window[held]);
        worker->ops += 1;
        if (++held <= config->window)
            continue;
        for (unsigned j = 0; j < half; j++)
            free(window[j]);
        worker->ops += half;
        memmove(window, window + half, (held - half) * sizeof(void *));
        held -= half;
    }
    for (unsigned j = 0; j < held; j++)
        free(window[j]);
    worker->ops += held;
    free(window);
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc != 5) {
        fprintf(stderr, "usage: %s THREADS PASSES TOP WINDOW\n", argv[0]);
        return 2;
    }
    unsigned threads = (unsigned)parse_count(argv[1], "threads");
    struct drift_config config = {
        .passes = (unsigned)parse_count(argv[2], "passes"),
        .top = parse_count(argv[3], "top size"),
        .window = (unsigned)parse_count(argv[4], "window"),
    };
    if (!threads || threads > 256 || !config.passes || !config.top || config.window < 2) {
        fprintf(stderr, "size-drift: need 1-256 threads, passes, a top size and a window of 2+\n");
        return 2;
    }
    pthread_t thread[threads];
    struct drift_worker workers[threads];
    double start = now_seconds();
    for (unsigned i = 0; i < threads; i++) {
        workers[i] = (struct drift_worker){&config, 0};
        start_thread(&thread[i], drift, &workers[i]);
    }
    double ops = 0;
    for (unsigned i = 0; i < threads; i++) {
        pthread_join(thread[i], NULL);
        ops += workers[i].ops;
    }
    print_result("size-drift", now_seconds() - start, ops, NULL);
    return 0;
}
