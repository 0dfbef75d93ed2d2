/* echo_server.c - an epoll echo server on loopback whose connections hold
 * their bytes in pooled xmm_buf buffers, with a load client in the same
 * program that checks every echoed byte.
 *
 * The server takes a buffer when bytes arrive, reads greedily (up to 256
 * KiB, so a buffer climbs tiers), writes back what it can, and puts the
 * buffer as soon as it is drained: one get and one put per request, the
 * way a server with many mostly idle connections uses a pool. The same
 * server code runs on two buffer backends, XMM's pooled buffers and plain
 * malloc/free ones, in alternating rounds (so that drift in the machine's
 * load hits both), and the requests per second of each are printed side by
 * side. On loopback the kernel's TCP dominates the cost of a request, and
 * other processes make wall-clock rates noisy, so the requests per CPU
 * second of the process and the nanoseconds the server spends in the
 * buffer backend's get and put (timed around each call) are printed too:
 * the latter is what the backend switch changes.
 *
 *   echo_server [seconds per round (0.5)] [rounds (4)]
 *
 * Exits non-zero if any echoed byte differs, the server hits an error, or
 * a backend completes no request. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "example.h"
#include "xmm_buf.h"

enum {
    CONNECTIONS = 8,
    SERVER_THREADS = 2,
    READ_LIMIT = 256 << 10,     /* bytes a connection reads before writing */
    LARGEST_REQUEST = 256 << 10,
    PATTERN_BYTES = 1 << 20,    /* requests are windows of this */
};

/* ---- buffer backends ---------------------------------------------------- */

struct backend {
    const char *name;
    void *(*get)(size_t min_capacity);
    void (*put)(void *buf);
    ssize_t (*read_fd)(void *buf, int fd);
    const void *(*data)(void *buf);
    size_t (*len)(void *buf);
    int (*consume)(void *buf, size_t n);
};

static void *xmm_get(size_t min_capacity) { return xmm_buf_get(min_capacity); }
static void xmm_put(void *buf) { xmm_buf_put(buf); }
static ssize_t xmm_read(void *buf, int fd) { return xmm_buf_read_fd(buf, fd); }
static const void *xmm_data(void *buf) { return xmm_buf_data(buf); }
static size_t xmm_len(void *buf) { return xmm_buf_len(buf); }
static int xmm_consume(void *buf, size_t n) { return xmm_buf_consume(buf, n); }

static const struct backend xmm_backend = {"xmm_buf", xmm_get, xmm_put, xmm_read,
                                           xmm_data, xmm_len, xmm_consume};

/* The plain backend: the same semantics on malloc, realloc and free. */
struct plain_buf {
    unsigned char *bytes;
    size_t head, length, capacity;
};

static void *plain_get(size_t min_capacity)
{
    struct plain_buf *buf = malloc(sizeof(*buf));
    size_t capacity = min_capacity > 4096 ? min_capacity : 4096;
    if (!buf || !(buf->bytes = malloc(capacity))) {
        free(buf);
        return NULL;
    }
    buf->head = buf->length = 0;
    buf->capacity = capacity;
    return buf;
}

static void plain_put(void *opaque)
{
    struct plain_buf *buf = opaque;
    free(buf->bytes);
    free(buf);
}

static ssize_t plain_read(void *opaque, int fd)
{
    struct plain_buf *buf = opaque;
    if (buf->head + buf->length == buf->capacity) {
        if (buf->head > 0) {
            memmove(buf->bytes, buf->bytes + buf->head, buf->length);
            buf->head = 0;
        } else {
            unsigned char *grown = realloc(buf->bytes, buf->capacity * 2);
            if (!grown)
                return -1;
            buf->bytes = grown;
            buf->capacity *= 2;
        }
    }
    size_t tail = buf->head + buf->length;
    ssize_t got = read(fd, buf->bytes + tail, buf->capacity - tail);
    if (got > 0)
        buf->length += (size_t)got;
    return got;
}

static const void *plain_data(void *opaque)
{
    struct plain_buf *buf = opaque;
    return buf->bytes + buf->head;
}

static size_t plain_len(void *opaque)
{
    return ((struct plain_buf *)opaque)->length;
}

static int plain_consume(void *opaque, size_t n)
{
    struct plain_buf *buf = opaque;
    if (n > buf->length) {
        errno = EINVAL;
        return -1;
    }
    buf->length -= n;
    buf->head = buf->length ? buf->head + n : 0;
    return 0;
}

static const struct backend plain_backend = {"malloc", plain_get, plain_put, plain_read,
                                             plain_data, plain_len, plain_consume};

/* ---- the server ----------------------------------------------------------- */

struct connection {
    int fd;
    void *buf;     /* NULL while the connection has nothing pending */
    bool writing;  /* waiting for EPOLLOUT to send the rest */
};

struct server {
    const struct backend *backend;
    int epoll_fd;
    int wake_fd; /* an eventfd: data.ptr NULL in the epoll set */
    pthread_t thread;
    long buffer_calls;       /* gets and puts, each timed */
    long long buffer_ns;
};

static long server_errors;
static int open_connections;

static long long now_ns(void)
{
    struct timespec time;
    clock_gettime(CLOCK_MONOTONIC, &time);
    return (long long)time.tv_sec * 1000000000 + time.tv_nsec;
}

static double now(void)
{
    return (double)now_ns() * 1e-9;
}

/* The backend's get and put, timed: the part of a request that depends on
 * the backend. */
static void *timed_get(struct server *server, size_t min_capacity)
{
    long long began = now_ns();
    void *buf = server->backend->get(min_capacity);
    server->buffer_ns += now_ns() - began;
    server->buffer_calls++;
    return buf;
}

static void timed_put(struct server *server, void *buf)
{
    long long began = now_ns();
    server->backend->put(buf);
    server->buffer_ns += now_ns() - began;
    server->buffer_calls++;
}

static void server_error(const char *what)
{
    if (__atomic_fetch_add(&server_errors, 1, __ATOMIC_RELAXED) < 5)
        perror(what);
}

static void close_connection(struct server *server, struct connection *connection)
{
    if (connection->buf)
        timed_put(server, connection->buf);
    close(connection->fd);
    free(connection);
    __atomic_fetch_sub(&open_connections, 1, __ATOMIC_RELEASE);
}

static void watch(const struct server *server, struct connection *connection, uint32_t events)
{
    struct epoll_event event = {.events = events, .data.ptr = connection};
    if (epoll_ctl(server->epoll_fd, EPOLL_CTL_MOD, connection->fd, &event) != 0)
        server_error("epoll_ctl");
}

/* Sends the pending bytes: 0 when all went, 1 when the socket is full, -1
 * on error. A drained buffer goes back at once. */
static int flush(struct server *server, struct connection *connection)
{
    const struct backend *backend = server->backend;
    while (backend->len(connection->buf) > 0) {
        ssize_t sent = send(connection->fd, backend->data(connection->buf),
                            backend->len(connection->buf), MSG_NOSIGNAL);
        if (sent > 0)
            backend->consume(connection->buf, (size_t)sent);
        else if (sent < 0 && errno == EAGAIN)
            return 1;
        else if (sent < 0 && errno != EINTR)
            return -1;
    }
    timed_put(server, connection->buf);
    connection->buf = NULL;
    return 0;
}

/* Reads until the socket is empty or READ_LIMIT bytes wait. Returns 1 at
 * end of file, -1 on error, else 0. */
static int read_greedily(struct server *server, struct connection *connection)
{
    const struct backend *backend = server->backend;
    if (!connection->buf && !(connection->buf = timed_get(server, 4096)))
        return -1;
    while (backend->len(connection->buf) < READ_LIMIT) {
        ssize_t got = backend->read_fd(connection->buf, connection->fd);
        if (got == 0)
            return 1;
        if (got < 0)
            return errno == EAGAIN ? 0 : errno == EINTR ? read_greedily(server, connection) : -1;
    }
    return 0;
}

static void on_event(struct server *server, struct connection *connection, uint32_t events)
{
    int status;
    if (connection->writing) {
        status = flush(server, connection);
        if (status == 0) {
            connection->writing = false;
            watch(server, connection, EPOLLIN);
        }
    } else {
        status = read_greedily(server, connection);
        if (status == 1) {
            close_connection(server, connection); /* the client got everything */
            return;
        }
        if (status == 0)
            status = flush(server, connection);
        if (status == 1) {
            connection->writing = true;
            watch(server, connection, EPOLLOUT);
        }
    }
    if (status < 0) {
        server_error("echo");
        close_connection(server, connection);
    }
}

static void *serve(void *arg)
{
    struct server *server = arg;
    struct epoll_event events[64];
    for (;;) {
        int count = epoll_wait(server->epoll_fd, events, 64, -1);
        if (count < 0 && errno != EINTR)
            server_error("epoll_wait");
        for (int i = 0; i < count; i++) {
            if (!events[i].data.ptr)
                return NULL; /* woken to stop */
            on_event(server, events[i].data.ptr, events[i].events);
        }
    }
}

static void adopt(struct server *server, int fd)
{
    int on = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof(on));
    struct connection *connection = calloc(1, sizeof(*connection));
    connection->fd = fd;
    struct epoll_event event = {.events = EPOLLIN, .data.ptr = connection};
    __atomic_fetch_add(&open_connections, 1, __ATOMIC_RELAXED);
    if (epoll_ctl(server->epoll_fd, EPOLL_CTL_ADD, fd, &event) != 0)
        server_error("epoll_ctl add");
}

/* ---- the client ------------------------------------------------------------ */

static unsigned char *pattern; /* PATTERN_BYTES + LARGEST_REQUEST of random bytes */

struct client {
    int fd;
    uint64_t random;
    double deadline;
    long requests;
    long bytes;
    long mismatches;
    pthread_barrier_t *start;
};

/* Mostly small requests, some medium, a few large. */
static size_t request_size(uint64_t *random)
{
    uint64_t roll = example_random(random) % 100;
    if (roll < 70)
        return 16 + example_random(random) % 1008;
    if (roll < 95)
        return 1024 + example_random(random) % (31 << 10);
    return (32 << 10) + example_random(random) % (LARGEST_REQUEST - (32 << 10));
}

/* Sends `size` bytes and reads as many back, interleaved, so that neither
 * side can block the other with full socket buffers. */
static bool echo_once(struct client *client, const unsigned char *request, size_t size,
                      unsigned char *reply)
{
    size_t sent = 0, received = 0;
    double give_up = now() + 10; /* a wedged server fails the run, not hangs it */
    while (received < size) {
        if (now() > give_up) {
            errno = ETIMEDOUT;
            return false;
        }
        bool progress = false;
        if (sent < size) {
            ssize_t n = send(client->fd, request + sent, size - sent, MSG_NOSIGNAL);
            if (n > 0) {
                sent += (size_t)n;
                progress = true;
            } else if (n < 0 && errno != EAGAIN && errno != EINTR) {
                return false;
            }
        }
        ssize_t n = read(client->fd, reply + received, size - received);
        if (n > 0) {
            received += (size_t)n;
            progress = true;
        } else if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
            return false;
        }
        if (!progress) {
            struct pollfd wait = {client->fd, POLLIN | (sent < size ? POLLOUT : 0), 0};
            poll(&wait, 1, 1000);
        }
    }
    return true;
}

static void *run_client(void *arg)
{
    struct client *client = arg;
    unsigned char *reply = malloc(LARGEST_REQUEST);
    pthread_barrier_wait(client->start);
    while (now() < client->deadline) {
        size_t size = request_size(&client->random);
        const unsigned char *request = pattern + example_random(&client->random) % PATTERN_BYTES;
        if (!echo_once(client, request, size, reply)) {
            perror("client");
            client->mismatches++;
            break;
        }
        client->mismatches += memcmp(reply, request, size) != 0;
        client->requests++;
        client->bytes += (long)size;
    }
    free(reply);
    close(client->fd);
    return NULL;
}

/* ---- a round --------------------------------------------------------------- */

struct totals {
    long requests, bytes, mismatches;
    double seconds;
    double cpu_seconds; /* user + system, all threads */
    long buffer_calls;
    long long buffer_ns;
};

static double cpu_seconds(void)
{
    struct rusage usage;
    getrusage(RUSAGE_SELF, &usage);
    return (double)(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) +
           (double)(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) * 1e-6;
}

static int listen_on_loopback(struct sockaddr_in *address)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    *address = (struct sockaddr_in){.sin_family = AF_INET,
                                    .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t length = sizeof(*address);
    if (fd < 0 || bind(fd, (struct sockaddr *)address, length) != 0 || listen(fd, 64) != 0 ||
        getsockname(fd, (struct sockaddr *)address, &length) != 0) {
        perror("listen");
        exit(1);
    }
    return fd;
}

static int connect_to(const struct sockaddr_in *address)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    int on = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof(on));
    if (connect(fd, (const struct sockaddr *)address, sizeof(*address)) != 0 &&
        errno != EINPROGRESS) {
        perror("connect");
        exit(1);
    }
    struct pollfd ready = {fd, POLLOUT, 0};
    poll(&ready, 1, 5000);
    return fd;
}

static void start_servers(struct server *servers, const struct backend *backend)
{
    for (int i = 0; i < SERVER_THREADS; i++) {
        servers[i].backend = backend;
        servers[i].epoll_fd = epoll_create1(0);
        servers[i].wake_fd = eventfd(0, 0);
        struct epoll_event wake = {.events = EPOLLIN, .data.ptr = NULL};
        epoll_ctl(servers[i].epoll_fd, EPOLL_CTL_ADD, servers[i].wake_fd, &wake);
        pthread_create(&servers[i].thread, NULL, serve, &servers[i]);
    }
}

/* Stops the servers once every connection is closed (its buffer put). */
static void stop_servers(struct server *servers, struct totals *totals)
{
    double give_up = now() + 10;
    while (__atomic_load_n(&open_connections, __ATOMIC_ACQUIRE) > 0 && now() < give_up)
        usleep(1000);
    EXPECT(open_connections == 0, "%d connections still open", open_connections);
    for (int i = 0; i < SERVER_THREADS; i++) {
        uint64_t one = 1;
        if (write(servers[i].wake_fd, &one, sizeof(one)) != sizeof(one))
            server_error("eventfd");
        pthread_join(servers[i].thread, NULL);
        totals->buffer_calls += servers[i].buffer_calls;
        totals->buffer_ns += servers[i].buffer_ns;
        close(servers[i].epoll_fd);
        close(servers[i].wake_fd);
    }
}

static void run_round(const struct backend *backend, double seconds, struct totals *totals)
{
    struct sockaddr_in address;
    int listener = listen_on_loopback(&address);
    struct server servers[SERVER_THREADS] = {0};
    start_servers(servers, backend);

    struct client clients[CONNECTIONS];
    pthread_t threads[CONNECTIONS];
    pthread_barrier_t start;
    pthread_barrier_init(&start, NULL, CONNECTIONS + 1);
    for (int i = 0; i < CONNECTIONS; i++) {
        clients[i] = (struct client){.fd = connect_to(&address), .random = 1000 + (uint64_t)i,
                                     .start = &start};
        adopt(&servers[i % SERVER_THREADS], accept4(listener, NULL, NULL, SOCK_NONBLOCK));
    }
    close(listener);
    double began = now(), cpu_began = cpu_seconds();
    for (int i = 0; i < CONNECTIONS; i++) {
        clients[i].deadline = began + seconds;
        pthread_create(&threads[i], NULL, run_client, &clients[i]);
    }
    pthread_barrier_wait(&start);
    for (int i = 0; i < CONNECTIONS; i++) {
        pthread_join(threads[i], NULL);
        totals->requests += clients[i].requests;
        totals->bytes += clients[i].bytes;
        totals->mismatches += clients[i].mismatches;
    }
    totals->seconds += now() - began;
    totals->cpu_seconds += cpu_seconds() - cpu_began;
    pthread_barrier_destroy(&start);
    stop_servers(servers, totals);
}

static void report(const char *name, const struct totals *totals)
{
    printf("  %-8s %8ld requests in %.2f s: %8.0f requests/s, %6.1f MiB/s, %8.0f requests "
           "per CPU s, %4.0f ns per get+put pair (timed), %ld mismatches\n",
           name, totals->requests, totals->seconds, (double)totals->requests / totals->seconds,
           (double)totals->bytes / totals->seconds / (1 << 20),
           (double)totals->requests / totals->cpu_seconds,
           (double)totals->buffer_ns / (double)(totals->buffer_calls / 2 + 1), totals->mismatches);
}

int main(int argc, char **argv)
{
    double seconds = argc > 1 ? atof(argv[1]) : 0.5;
    int rounds = argc > 2 ? atoi(argv[2]) : 4;
    pattern = malloc(PATTERN_BYTES + LARGEST_REQUEST);
    uint64_t random = 99;
    for (size_t i = 0; i < PATTERN_BYTES + LARGEST_REQUEST; i++)
        pattern[i] = (unsigned char)example_random(&random);

    struct totals xmm = {0}, plain = {0};
    for (int round = 0; round < rounds; round++) { /* alternate: drift hits both */
        run_round(&xmm_backend, seconds, &xmm);
        EXPECT(xmm_buf_pool_bytes() <= xmm_buf_pool_limit(), "pool %zu above the cap %zu",
               xmm_buf_pool_bytes(), xmm_buf_pool_limit());
        run_round(&plain_backend, seconds, &plain);
    }
    printf("echo_server: %d connections, %d server threads, %d round(s) of %.1f s per backend\n",
           CONNECTIONS, SERVER_THREADS, rounds, seconds);
    report(xmm_backend.name, &xmm);
    report(plain_backend.name, &plain);
    printf("  xmm_buf / malloc: %.2f in requests/s, %.2f in requests per CPU s; %zu bytes "
           "left in the buffer pools\n",
           ((double)xmm.requests / xmm.seconds) / ((double)plain.requests / plain.seconds),
           ((double)xmm.requests / xmm.cpu_seconds) / ((double)plain.requests / plain.cpu_seconds),
           xmm_buf_pool_bytes());
    EXPECT(xmm.mismatches == 0 && plain.mismatches == 0, "echoed bytes differ");
    EXPECT(xmm.requests > 0 && plain.requests > 0, "a backend completed no request");
    EXPECT(server_errors == 0, "%ld server errors", server_errors);
    free(pattern);
    return example_failures ? 1 : 0;
}
