/* A C peer for tests/interop.rs: one process per mode, talking to a Rust
 * process through the shmqueue C API. Exits 0 when every check passed;
 * otherwise prints what failed to stderr and exits non-zero. Every wait has
 * a deadline, so a lost peer fails the test instead of hanging it. */
#define _POSIX_C_SOURCE 200809L
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "shmqueue.h"

#define SEC 1000000000ull
/* Per-call deadline: far above any healthy wait, well below the test's. */
#define DEADLINE (10 * SEC)

static int fail(const char *what, shmq_status s) {
    fprintf(stderr, "peer: %s: %s (%d): %s\n", what, shmq_strerror(s), (int)s,
            shmq_last_error_message());
    return 1;
}

#define CHECK(call)                                  \
    do {                                             \
        shmq_status s_ = (call);                     \
        if (s_ != SHMQ_OK) return fail(#call, s_);   \
    } while (0)

#define EXPECT(call, want)                                                 \
    do {                                                                   \
        shmq_status s_ = (call);                                           \
        if (s_ != (want)) {                                                \
            fprintf(stderr, "peer: %s: got %d, want %d (%s)\n", #call,     \
                    (int)s_, (int)(want), shmq_last_error_message());      \
            return 1;                                                      \
        }                                                                  \
    } while (0)

static int32_t kind_of(const char *k) {
    return strcmp(k, "mpmc") == 0 ? SHMQ_KIND_MPMC : SHMQ_KIND_SPSC;
}

/* Block until the parent writes to or closes our stdin (it SIGKILLs us
 * first); a parent that died closes it, so we never outlive a test. */
static void park(void) {
    char c;
    while (read(0, &c, 1) > 0) {
    }
}

static int produce(int32_t kind, const char *name, uint64_t n) {
    shmq_queue_t q;
    shmq_producer_t p;
    CHECK(shmq_queue_open(name, kind, sizeof(uint64_t), _Alignof(uint64_t), 0, &q));
    CHECK(shmq_producer(q, &p));
    printf("attached\n");
    fflush(stdout);
    for (uint64_t i = 0; i < n; i++) {
        /* Alternate the three calls so each carries real traffic. */
        shmq_status s;
        if (i % 3 == 0) {
            s = shmq_push(p, &i);
        } else if (i % 3 == 1) {
            s = shmq_push_timeout(p, &i, DEADLINE);
        } else {
            s = shmq_try_push(p, &i);
            if (s == SHMQ_FULL) s = shmq_push_timeout(p, &i, DEADLINE);
        }
        if (s != SHMQ_OK) return fail("push", s);
    }
    CHECK(shmq_producer_free(p));
    CHECK(shmq_queue_free(q));
    return 0;
}

static int consume(int32_t kind, const char *name, uint64_t n) {
    shmq_queue_t q;
    shmq_consumer_t c;
    CHECK(shmq_queue_open(name, kind, sizeof(uint64_t), _Alignof(uint64_t), 0, &q));
    CHECK(shmq_consumer(q, &c));
    printf("attached\n");
    fflush(stdout);
    for (uint64_t i = 0; i < n; i++) {
        uint64_t v = UINT64_MAX;
        shmq_status s;
        if (i % 2 == 0) {
            s = shmq_pop_timeout(c, &v, DEADLINE);
        } else if ((s = shmq_try_pop(c, &v)) == SHMQ_EMPTY) {
            s = shmq_pop_timeout(c, &v, DEADLINE);
        }
        if (s != SHMQ_OK) return fail("pop", s);
        if (v != i) {
            fprintf(stderr, "peer: item %llu is %llu: out of order\n",
                    (unsigned long long)i, (unsigned long long)v);
            return 1;
        }
    }
    /* The Rust producer closes after n items: drained and gone. */
    uint64_t v;
    EXPECT(shmq_pop_timeout(c, &v, DEADLINE), SHMQ_DISCONNECTED);
    CHECK(shmq_consumer_free(c));
    CHECK(shmq_queue_free(q));
    return 0;
}

/* Claim the producer, push three items, say so, and wait to be killed. */
static int hold(int32_t kind, const char *name) {
    shmq_queue_t q;
    shmq_producer_t p;
    CHECK(shmq_queue_open(name, kind, 8, 8, 0, &q));
    CHECK(shmq_producer(q, &p));
    for (uint64_t i = 0; i < 3; i++) CHECK(shmq_push_timeout(p, &i, DEADLINE));
    printf("ready\n");
    fflush(stdout);
    park();
    return 0;
}

/* Be the consumer of a ring whose Rust producer will be SIGKILLed: drain,
 * then report the disconnection. */
static int await_death(int32_t kind, const char *name) {
    shmq_queue_t q;
    shmq_consumer_t c;
    CHECK(shmq_queue_open(name, kind, 8, 8, 0, &q));
    CHECK(shmq_consumer(q, &c));
    printf("ready\n");
    fflush(stdout);
    for (;;) {
        uint64_t v;
        shmq_status s = shmq_pop_timeout(c, &v, DEADLINE);
        if (s == SHMQ_OK) continue;
        if (s == SHMQ_DISCONNECTED) break;
        return fail("pop while waiting for the producer's death", s);
    }
    printf("disconnected\n");
    fflush(stdout);
    CHECK(shmq_consumer_free(c));
    CHECK(shmq_queue_free(q));
    return 0;
}

/* Opens that must fail with their typed code, and misuse that must be an
 * error code, not a crash. */
static int errors(const char *name) {
    shmq_queue_t q = {0};
    EXPECT(shmq_queue_open(name, SHMQ_KIND_SPSC, 4, 4, 0, &q), SHMQ_ERR_ELEM_SIZE);
    if (strstr(shmq_last_error_message(), "element size") == NULL) {
        fprintf(stderr, "peer: message lacks the field: %s\n", shmq_last_error_message());
        return 1;
    }
    EXPECT(shmq_queue_open(name, SHMQ_KIND_SPSC, 8, 4 * 2, 7, &q), SHMQ_ERR_SCHEMA);
    EXPECT(shmq_queue_open(name, SHMQ_KIND_MPMC, 8, 8, 0, &q), SHMQ_ERR_KIND);
    EXPECT(shmq_queue_open(name, SHMQ_KIND_SPSC, 9, 8, 0, &q), SHMQ_ERR_UNSUPPORTED_ELEMENT);
    EXPECT(shmq_queue_open(name, 99, 8, 8, 0, &q), SHMQ_ERR_INVALID_ARGUMENT);
    EXPECT(shmq_queue_open("/shmq-ffi-no-such-segment", SHMQ_KIND_SPSC, 8, 8, 0, &q),
           SHMQ_ERR_NOT_FOUND);
    EXPECT(shmq_queue_open("no-slash", SHMQ_KIND_SPSC, 8, 8, 0, &q), SHMQ_ERR_INVALID_NAME);
    EXPECT(shmq_queue_open(NULL, SHMQ_KIND_SPSC, 8, 8, 0, &q), SHMQ_ERR_NULL_ARGUMENT);
    EXPECT(shmq_queue_open(name, SHMQ_KIND_SPSC, 8, 8, 0, NULL), SHMQ_ERR_NULL_ARGUMENT);
    shmq_broadcast_t b = {0};
    EXPECT(shmq_broadcast_open(name, 8, 8, 0, &b), SHMQ_ERR_KIND);
    EXPECT(shmq_broadcast_open("/shmq-ffi-no-such-segment", 8, 8, 0, &b), SHMQ_ERR_NOT_FOUND);
    shmq_publisher_t bp;
    EXPECT(shmq_publisher(b, &bp), SHMQ_ERR_INVALID_HANDLE);

    /* Zeroed, freed and wrong-kind handles. */
    shmq_producer_t zero = {0};
    uint64_t v = 1;
    EXPECT(shmq_push(zero, &v), SHMQ_ERR_INVALID_HANDLE);
    CHECK(shmq_queue_open(name, SHMQ_KIND_SPSC, 8, 8, 0, &q));
    shmq_consumer_t c;
    CHECK(shmq_consumer(q, &c));
    shmq_consumer_t c2;
    EXPECT(shmq_consumer(q, &c2), SHMQ_ERR_ROLE_TAKEN);
    shmq_producer_t as_producer = {c.id};
    EXPECT(shmq_push(as_producer, &v), SHMQ_ERR_INVALID_HANDLE);
    EXPECT(shmq_try_pop(c, &v), SHMQ_EMPTY);
    EXPECT(shmq_try_pop(c, NULL), SHMQ_ERR_NULL_ARGUMENT);
    EXPECT(shmq_pop_timeout(c, &v, 1000000), SHMQ_TIMEOUT);
    size_t cap = 0;
    CHECK(shmq_queue_capacity(q, &cap));
    if (cap != 16) {
        fprintf(stderr, "peer: capacity %zu, want 16\n", cap);
        return 1;
    }
    CHECK(shmq_consumer_free(c));
    EXPECT(shmq_consumer_free(c), SHMQ_ERR_INVALID_HANDLE);
    EXPECT(shmq_try_pop(c, &v), SHMQ_ERR_INVALID_HANDLE);
    CHECK(shmq_queue_free(q));
    EXPECT(shmq_queue_free(q), SHMQ_ERR_INVALID_HANDLE);
    if (strcmp(shmq_strerror(12345), "unknown shmqueue status") != 0) return 1;
    if (!shmq_elem_supported(24, 8) || shmq_elem_supported(9, 8)) return 1;
    return 0;
}

/* Consume n items from a memfd SPSC ring inherited as descriptor `fd`. */
static int fd_consume(int fd, uint64_t n) {
    shmq_queue_t q;
    shmq_consumer_t c;
    CHECK(shmq_queue_open_fd(fd, SHMQ_KIND_SPSC, 8, 8, 0, &q));
    close(fd); /* the library keeps its own descriptor */
    CHECK(shmq_consumer(q, &c));
    for (uint64_t i = 0; i < n; i++) {
        uint64_t v;
        CHECK(shmq_pop_timeout(c, &v, DEADLINE));
        if (v != i) {
            fprintf(stderr, "peer: memfd item %llu is %llu\n", (unsigned long long)i,
                    (unsigned long long)v);
            return 1;
        }
    }
    uint64_t v;
    EXPECT(shmq_pop_timeout(c, &v, DEADLINE), SHMQ_DISCONNECTED);
    CHECK(shmq_consumer_free(c));
    CHECK(shmq_queue_free(q));
    return 0;
}

/* memfd rings made and reopened in this process: element checks apply to
 * descriptors too, and a descriptor that is not a sealed memfd is refused. */
static int memfd_local(void) {
    shmq_queue_config cfg = shmq_queue_config_default(SHMQ_KIND_MPMC, 16, 8);
    cfg.capacity = 8;
    shmq_queue_t q, q2, bad;
    CHECK(shmq_queue_create_memfd(&cfg, &q));
    int fd = -1;
    CHECK(shmq_queue_dup_fd(q, &fd));
    EXPECT(shmq_queue_open_fd(fd, SHMQ_KIND_MPMC, 8, 8, 0, &bad), SHMQ_ERR_ELEM_SIZE);
    CHECK(shmq_queue_open_fd(fd, SHMQ_KIND_MPMC, 16, 8, 0, &q2));
    close(fd);
    EXPECT(shmq_queue_open_fd(fd, SHMQ_KIND_MPMC, 16, 8, 0, &bad), SHMQ_ERR_IO);
    EXPECT(shmq_queue_open_fd(0, SHMQ_KIND_MPMC, 16, 8, 0, &bad), SHMQ_ERR_IO);
    shmq_producer_t p;
    shmq_consumer_t c;
    CHECK(shmq_producer(q, &p));
    CHECK(shmq_consumer(q2, &c));
    uint64_t in[2] = {7, 9}, out[2] = {0, 0};
    CHECK(shmq_push(p, in));
    CHECK(shmq_pop(c, out));
    if (out[0] != 7 || out[1] != 9) return 1;
    CHECK(shmq_producer_free(p));
    CHECK(shmq_consumer_free(c));
    CHECK(shmq_queue_free(q));
    CHECK(shmq_queue_free(q2));

    shmq_bytes_t r, r2;
    shmq_bytes_producer_t bp;
    shmq_bytes_consumer_t bc;
    CHECK(shmq_bytes_create_memfd(4096, 0, 0, &r));
    CHECK(shmq_bytes_dup_fd(r, &fd));
    CHECK(shmq_bytes_open_fd(fd, 0, 0, &r2));
    close(fd);
    CHECK(shmq_bytes_producer(r, &bp));
    CHECK(shmq_bytes_consumer(r2, &bc));
    char got[64];
    /* A buffer too small keeps the message queued and says what it needs. */
    CHECK(shmq_bytes_send_timeout(bp, "hi", 2, DEADLINE));
    size_t len = 0;
    EXPECT(shmq_bytes_recv_timeout(bc, got, 1, &len, DEADLINE), SHMQ_ERR_BUFFER_TOO_SMALL);
    if (len != 2) return fail("needed length", SHMQ_OK);
    CHECK(shmq_bytes_recv_timeout(bc, got, sizeof got, &len, DEADLINE));
    if (len != 2 || memcmp(got, "hi", 2) != 0) return 1;
    CHECK(shmq_bytes_producer_free(bp));
    CHECK(shmq_bytes_consumer_free(bc));
    CHECK(shmq_bytes_free(r));
    CHECK(shmq_bytes_free(r2));
    return 0;
}

#define WANT(cond)                                                   \
    do {                                                             \
        if (!(cond)) {                                               \
            fprintf(stderr, "peer: %s:%d: %s\n", __FILE__, __LINE__, \
                    #cond);                                          \
            return 1;                                                \
        }                                                            \
    } while (0)

/* The Rust side created the MPMC ring `name` (u64, capacity 64), holds one
 * producer and one consumer, and pushed 5 items. Stats and inspection must
 * say so, and see this process's endpoint once it attaches. */
static int stats(const char *name) {
    shmq_segment_info info;
    CHECK(shmq_inspect(name, &info));
    WANT(info.is_shmqueue && info.healthy && info.in_use && !info.stale);
    WANT(info.kind == SHMQ_KIND_MPMC && info.elem_size == 8 && info.elem_align == 8);
    WANT(info.capacity == 64 && info.fill == 5 && info.schema == 0);
    WANT(info.producers_alive == 1 && info.consumers_alive == 1 && info.endpoints_dead == 0);
    WANT(info.creator_pid == (uint32_t)getppid());

    shmq_queue_t q;
    shmq_producer_t p;
    shmq_queue_stats_t st;
    CHECK(shmq_queue_open(name, SHMQ_KIND_MPMC, 8, 8, 0, &q));
    CHECK(shmq_queue_stats(q, &st));
    WANT(st.kind == SHMQ_KIND_MPMC && st.elem_size == 8 && st.elem_align == 8);
    WANT(st.capacity == 64 && st.len == 5);
    WANT(st.producers == 1 && st.consumers == 1);
    WANT(st.producers_alive == 1 && st.consumers_alive == 1);
    WANT(st.holes_skipped == 0 && st.slots_released == 0);
    CHECK(shmq_producer(q, &p));
    uint64_t v = 5;
    CHECK(shmq_push(p, &v));
    CHECK(shmq_queue_stats(q, &st));
    WANT(st.len == 6 && st.producers == 2 && st.producers_alive == 2);
    size_t len = 0;
    CHECK(shmq_queue_len(q, &len));
    WANT(len == 6);
    CHECK(shmq_producer_free(p));
    CHECK(shmq_queue_stats(q, &st));
    WANT(st.producers == 1 && st.producers_alive == 1);
    EXPECT(shmq_queue_stats(q, NULL), SHMQ_ERR_NULL_ARGUMENT);
    CHECK(shmq_queue_free(q));
    EXPECT(shmq_queue_stats(q, &st), SHMQ_ERR_INVALID_HANDLE);

    EXPECT(shmq_inspect("/shmq-ffi-no-such-segment", &info), SHMQ_ERR_NOT_FOUND);
    EXPECT(shmq_inspect(name, NULL), SHMQ_ERR_NULL_ARGUMENT);

    /* SPSC: geometry and fill; the registry counts are MPMC's. */
    shmq_queue_config cfg = shmq_queue_config_default(SHMQ_KIND_SPSC, 4, 4);
    cfg.capacity = 10;
    CHECK(shmq_queue_create_memfd(&cfg, &q));
    CHECK(shmq_producer(q, &p));
    uint32_t w = 1;
    CHECK(shmq_push(p, &w));
    CHECK(shmq_push(p, &w));
    CHECK(shmq_queue_stats(q, &st));
    WANT(st.kind == SHMQ_KIND_SPSC && st.elem_size == 4 && st.elem_align == 4);
    WANT(st.capacity == 10 && st.len == 2 && st.producers == 0);
    CHECK(shmq_producer_free(p));
    CHECK(shmq_queue_free(q));

    /* Byte ring. */
    shmq_bytes_t r;
    shmq_bytes_producer_t bp;
    shmq_bytes_stats_t bs;
    CHECK(shmq_bytes_create_memfd(4096, 1000, 0, &r));
    CHECK(shmq_bytes_stats(r, &bs));
    WANT(bs.capacity == 4096 && bs.len == 0 && bs.max_message_size == 1000);
    WANT(bs.max_record_payload > 0 && bs.max_record_payload < 4096);
    CHECK(shmq_bytes_producer(r, &bp));
    CHECK(shmq_bytes_try_send(bp, "hello", 5));
    static const char big[1001];
    EXPECT(shmq_bytes_try_send(bp, big, sizeof big), SHMQ_ERR_TOO_LARGE);
    CHECK(shmq_bytes_stats(r, &bs));
    WANT(bs.len >= 5 && bs.len < 64);
    CHECK(shmq_bytes_producer_free(bp));
    CHECK(shmq_bytes_free(r));
    EXPECT(shmq_bytes_stats(r, &bs), SHMQ_ERR_INVALID_HANDLE);
    return 0;
}

/* Message i has length i % 300 (0 too), bytes (i + j) mod 251. */
static size_t msg_len(uint64_t i) { return (size_t)(i % 300); }

static int bytes_produce(const char *name, uint64_t n) {
    shmq_bytes_t r;
    shmq_bytes_producer_t p;
    unsigned char buf[512];
    CHECK(shmq_bytes_open(name, 0, 0, &r));
    CHECK(shmq_bytes_producer(r, &p));
    for (uint64_t i = 0; i < n; i++) {
        size_t len = msg_len(i);
        for (size_t j = 0; j < len; j++) buf[j] = (unsigned char)((i + j) % 251);
        shmq_status s = shmq_bytes_try_send(p, buf, len);
        if (s == SHMQ_FULL) s = shmq_bytes_send_timeout(p, buf, len, DEADLINE);
        if (s != SHMQ_OK) return fail("send", s);
    }
    CHECK(shmq_bytes_producer_free(p));
    CHECK(shmq_bytes_free(r));
    return 0;
}

static int bytes_consume(const char *name, uint64_t n) {
    shmq_bytes_t r;
    shmq_bytes_consumer_t c;
    unsigned char buf[512];
    CHECK(shmq_bytes_open(name, 0, 0, &r));
    CHECK(shmq_bytes_consumer(r, &c));
    for (uint64_t i = 0; i < n; i++) {
        size_t len = 0;
        shmq_status s = shmq_bytes_try_recv(c, buf, sizeof buf, &len);
        if (s == SHMQ_EMPTY) s = shmq_bytes_recv_timeout(c, buf, sizeof buf, &len, DEADLINE);
        if (s != SHMQ_OK) return fail("recv", s);
        if (len != msg_len(i)) {
            fprintf(stderr, "peer: message %llu has %zu bytes, want %zu\n",
                    (unsigned long long)i, len, msg_len(i));
            return 1;
        }
        for (size_t j = 0; j < len; j++) {
            if (buf[j] != (unsigned char)((i + j) % 251)) {
                fprintf(stderr, "peer: message %llu byte %zu differs\n",
                        (unsigned long long)i, j);
                return 1;
            }
        }
    }
    size_t len;
    EXPECT(shmq_bytes_recv_timeout(c, buf, sizeof buf, &len, DEADLINE), SHMQ_DISCONNECTED);
    CHECK(shmq_bytes_consumer_free(c));
    CHECK(shmq_bytes_free(r));
    return 0;
}

/* ---- broadcast ---------------------------------------------------------- */

/* Subscribe (latest) to the Rust publisher's ring, say so, and receive n
 * items in order with the three calls in turn, then see the publisher gone. */
static int bcast_subscribe(const char *name, uint64_t n) {
    shmq_broadcast_t b;
    shmq_subscriber_t sub;
    CHECK(shmq_broadcast_open(name, sizeof(uint64_t), _Alignof(uint64_t), 0, &b));
    CHECK(shmq_subscribe(b, SHMQ_START_LATEST, 0, &sub));
    printf("attached\n");
    fflush(stdout);
    for (uint64_t i = 0; i < n; i++) {
        uint64_t v = UINT64_MAX, missed = 1;
        shmq_status s;
        if (i % 3 == 0) {
            s = shmq_recv(sub, &v, &missed);
        } else if (i % 3 == 1) {
            s = shmq_recv_timeout(sub, &v, DEADLINE, &missed);
        } else if ((s = shmq_try_recv(sub, &v, NULL)) == SHMQ_EMPTY) {
            s = shmq_recv_timeout(sub, &v, DEADLINE, &missed);
        }
        if (s != SHMQ_OK) return fail("recv", s);
        if (v != i) {
            fprintf(stderr, "peer: broadcast item %llu is %llu: out of order\n",
                    (unsigned long long)i, (unsigned long long)v);
            return 1;
        }
        if (i % 3 != 2 && missed != 0) {
            fprintf(stderr, "peer: missed %llu on a plain receive\n", (unsigned long long)missed);
            return 1;
        }
    }
    uint64_t v;
    EXPECT(shmq_recv_timeout(sub, &v, DEADLINE, NULL), SHMQ_DISCONNECTED);
    shmq_subscriber_info_t info;
    CHECK(shmq_subscriber_info(sub, &info));
    if (info.position != n || info.lag != 0 || info.missed != 0) {
        fprintf(stderr, "peer: subscriber info %llu %llu %llu\n",
                (unsigned long long)info.position, (unsigned long long)info.lag,
                (unsigned long long)info.missed);
        return 1;
    }
    CHECK(shmq_subscriber_free(sub));
    CHECK(shmq_broadcast_free(b));
    return 0;
}

/* Be the publisher of the Rust subscriber's ring: one at a time, then n
 * items with the three calls in turn. */
static int bcast_publish(const char *name, uint64_t n) {
    shmq_broadcast_t b;
    shmq_publisher_t p, p2;
    CHECK(shmq_broadcast_open(name, 8, 8, 0, &b));
    CHECK(shmq_publisher(b, &p));
    EXPECT(shmq_publisher(b, &p2), SHMQ_ERR_ROLE_TAKEN);
    printf("attached\n");
    fflush(stdout);
    for (uint64_t i = 0; i < n; i++) {
        shmq_status s;
        if (i % 3 == 0) {
            s = shmq_publish(p, &i);
        } else if (i % 3 == 1) {
            s = shmq_publish_timeout(p, &i, DEADLINE);
        } else {
            s = shmq_try_publish(p, &i);
            if (s == SHMQ_FULL) s = shmq_publish_timeout(p, &i, DEADLINE);
        }
        if (s != SHMQ_OK) return fail("publish", s);
    }
    uint64_t pos = 0;
    CHECK(shmq_publisher_position(p, &pos));
    if (pos != n) return fail("publisher position", SHMQ_OK);
    CHECK(shmq_publisher_free(p));
    CHECK(shmq_broadcast_free(b));
    return 0;
}

/* Subscribe from the oldest item to a ring whose Rust publisher published
 * 0, 1, 2 and will be SIGKILLed: read them, then report the death. */
static int bcast_await_death(const char *name) {
    shmq_broadcast_t b;
    shmq_subscriber_t sub;
    CHECK(shmq_broadcast_open(name, 8, 8, 0, &b));
    CHECK(shmq_subscribe(b, SHMQ_START_OLDEST, 0, &sub));
    printf("ready\n");
    fflush(stdout);
    for (uint64_t i = 0;; i++) {
        uint64_t v;
        shmq_status s = shmq_recv_timeout(sub, &v, DEADLINE, NULL);
        if (s == SHMQ_DISCONNECTED && i == 3) break;
        if (s != SHMQ_OK) return fail("recv while waiting for the publisher's death", s);
        if (v != i) return fail("an item out of order", SHMQ_OK);
    }
    printf("disconnected\n");
    fflush(stdout);
    CHECK(shmq_subscriber_free(sub));
    CHECK(shmq_broadcast_free(b));
    return 0;
}

/* Subscribe and never read: a lossless publisher waits for us until we die. */
static int bcast_hold(const char *name) {
    shmq_broadcast_t b;
    shmq_subscriber_t sub;
    CHECK(shmq_broadcast_open(name, 8, 8, 0, &b));
    CHECK(shmq_subscribe(b, SHMQ_START_LATEST, 0, &sub));
    printf("ready\n");
    fflush(stdout);
    park();
    return 0;
}

/* A slow subscriber of an overwrite ring: subscribe, say so, wait for the
 * parent's line (it publishes meanwhile), then report the lap and what
 * follows it. */
static int bcast_lag(const char *name) {
    shmq_broadcast_t b;
    shmq_subscriber_t sub;
    CHECK(shmq_broadcast_open(name, 8, 8, 0, &b));
    CHECK(shmq_subscribe(b, SHMQ_START_LATEST, 0, &sub));
    printf("ready\n");
    fflush(stdout);
    char c = 0;
    while (c != '\n') {
        if (read(0, &c, 1) != 1) return fail("read the go line", SHMQ_OK);
    }
    uint64_t v = UINT64_MAX, missed = 0;
    EXPECT(shmq_try_recv(sub, &v, &missed), SHMQ_LAGGED);
    if (v != UINT64_MAX) return fail("a lagged receive wrote the element", SHMQ_OK);
    shmq_subscriber_info_t info;
    CHECK(shmq_subscriber_info(sub, &info));
    printf("lagged %llu %llu %llu\n", (unsigned long long)missed,
           (unsigned long long)info.missed, (unsigned long long)info.position);
    uint64_t first = UINT64_MAX, count = 0, prev = 0;
    for (;;) {
        shmq_status s = shmq_try_recv(sub, &v, &missed);
        if (s == SHMQ_EMPTY) break;
        if (s != SHMQ_OK) return fail("recv after the lap", s);
        if (count == 0) {
            first = v;
        } else if (v != prev + 1) {
            fprintf(stderr, "peer: %llu after %llu\n", (unsigned long long)v,
                    (unsigned long long)prev);
            return 1;
        }
        prev = v;
        count++;
    }
    printf("resumed %llu %llu\n", (unsigned long long)first, (unsigned long long)count);
    fflush(stdout);
    CHECK(shmq_subscriber_free(sub));
    CHECK(shmq_broadcast_free(b));
    return 0;
}

/* Receive `want` with a blocking call. */
static int recv_is(shmq_subscriber_t sub, uint64_t want) {
    uint64_t v = UINT64_MAX;
    CHECK(shmq_recv_timeout(sub, &v, DEADLINE, NULL));
    if (v != want) {
        fprintf(stderr, "peer: received %llu, want %llu\n", (unsigned long long)v,
                (unsigned long long)want);
        return 1;
    }
    return 0;
}

/* A memfd broadcast ring in this process: descriptor checks, the role,
 * eviction past max_lag with the exact missed count, the start modes, the
 * stats, and misuse as error codes. */
static int bcast_local(void) {
    shmq_broadcast_config cfg = shmq_broadcast_config_default(8, 8);
    cfg.capacity = 8;
    cfg.max_subscribers = 4;
    cfg.max_lag_ns = 20 * 1000 * 1000;
    shmq_broadcast_t b, b2, bad;
    CHECK(shmq_broadcast_create_memfd(&cfg, &b));
    int fd = -1;
    CHECK(shmq_broadcast_dup_fd(b, &fd));
    EXPECT(shmq_broadcast_open_fd(fd, 4, 4, 0, &bad), SHMQ_ERR_ELEM_SIZE);
    EXPECT(shmq_broadcast_open_fd(fd, 8, 8, 3, &bad), SHMQ_ERR_SCHEMA);
    EXPECT(shmq_broadcast_open_fd(fd, 9, 8, 0, &bad), SHMQ_ERR_UNSUPPORTED_ELEMENT);
    shmq_queue_t notq;
    EXPECT(shmq_queue_open_fd(fd, SHMQ_KIND_SPSC, 8, 8, 0, &notq), SHMQ_ERR_KIND);
    CHECK(shmq_broadcast_open_fd(fd, 8, 8, 0, &b2));
    close(fd);
    cfg.policy = 7;
    EXPECT(shmq_broadcast_create_memfd(&cfg, &bad), SHMQ_ERR_INVALID_ARGUMENT);
    EXPECT(shmq_broadcast_create_memfd(NULL, &bad), SHMQ_ERR_NULL_ARGUMENT);

    shmq_publisher_t p, p2;
    shmq_subscriber_t a, o, at, gone;
    CHECK(shmq_publisher(b, &p));
    EXPECT(shmq_publisher(b2, &p2), SHMQ_ERR_ROLE_TAKEN);
    CHECK(shmq_subscribe(b2, SHMQ_START_LATEST, 0, &a));
    EXPECT(shmq_subscribe(b2, 99, 0, &gone), SHMQ_ERR_INVALID_ARGUMENT);
    for (uint64_t i = 0; i < 8; i++) CHECK(shmq_try_publish(p, &i));
    uint64_t v = 8, missed = 99;
    /* `a` has read nothing: the ring is full for it. */
    EXPECT(shmq_try_publish(p, &v), SHMQ_FULL);
    EXPECT(shmq_publish_timeout(p, &v, 1000), SHMQ_TIMEOUT);
    /* It stays full past max_lag: the publisher evicts `a` and goes on. */
    CHECK(shmq_publish_timeout(p, &v, DEADLINE));
    shmq_broadcast_stats_t st;
    CHECK(shmq_broadcast_stats(b, &st));
    WANT(st.evictions == 1 && st.subscribers_evicted == 1 && st.laps == 0);
    /* Positions 0..9 published, capacity 8: the oldest safe one is 9 - 7. */
    EXPECT(shmq_try_recv(a, &v, &missed), SHMQ_EVICTED);
    WANT(missed == 2);
    if (strstr(shmq_last_error_message(), "evicted") == NULL) return 1;
    for (uint64_t i = 2; i <= 8; i++) {
        if (recv_is(a, i)) return 1;
    }
    EXPECT(shmq_try_recv(a, &v, &missed), SHMQ_EMPTY);
    WANT(missed == 0);
    shmq_subscriber_info_t info;
    CHECK(shmq_subscriber_info(a, &info));
    WANT(info.position == 9 && info.lag == 0 && info.missed == 2);

    /* Start modes. */
    EXPECT(shmq_subscribe(b, SHMQ_START_AT, 1, &gone), SHMQ_ERR_START_GONE);
    if (strstr(shmq_last_error_message(), "2..9") == NULL) {
        fprintf(stderr, "peer: start-gone message: %s\n", shmq_last_error_message());
        return 1;
    }
    EXPECT(shmq_subscribe(b, SHMQ_START_AT, 10, &gone), SHMQ_ERR_START_GONE);
    CHECK(shmq_subscribe(b, SHMQ_START_AT, 5, &at));
    CHECK(shmq_subscribe(b, SHMQ_START_OLDEST, 0, &o));
    if (recv_is(at, 5) || recv_is(o, 2)) return 1;

    CHECK(shmq_broadcast_stats(b2, &st));
    WANT(st.elem_size == 8 && st.elem_align == 8 && st.capacity == 8);
    WANT(st.policy == SHMQ_POLICY_LOSSLESS && st.max_lag_ns == 20 * 1000 * 1000);
    WANT(st.published == 9 && st.publisher_attached && st.publisher_alive);
    WANT(st.publisher_pid == (uint32_t)getpid());
    WANT(st.subscribers == 3 && st.subscribers_alive == 3 && st.subscribers_evicted == 0);
    WANT(st.max_subscriber_lag == 6 && st.evictions == 1 && st.laps == 1);
    size_t count = 0;
    shmq_subscriber_stat_t subs[4];
    CHECK(shmq_broadcast_subscribers(b, NULL, 0, &count));
    WANT(count == 3);
    CHECK(shmq_broadcast_subscribers(b, subs, 2, &count));
    WANT(count == 3);
    CHECK(shmq_broadcast_subscribers(b, subs, 4, &count));
    WANT(count == 3);
    uint64_t cursors = 0;
    for (size_t i = 0; i < count; i++) {
        WANT(subs[i].alive && !subs[i].evicted && subs[i].pid == (uint32_t)getpid());
        WANT(subs[i].entry >= 1 && subs[i].lag == 9 - subs[i].cursor);
        cursors += subs[i].cursor;
    }
    WANT(cursors == 9 + 6 + 3);
    EXPECT(shmq_broadcast_subscribers(b, NULL, 1, &count), SHMQ_ERR_NULL_ARGUMENT);
    EXPECT(shmq_broadcast_stats(b, NULL), SHMQ_ERR_NULL_ARGUMENT);

    /* Misuse. */
    shmq_subscriber_t zero = {0}, as_sub = {p.id};
    shmq_publisher_t as_pub = {a.id};
    EXPECT(shmq_try_recv(zero, &v, NULL), SHMQ_ERR_INVALID_HANDLE);
    EXPECT(shmq_try_recv(as_sub, &v, NULL), SHMQ_ERR_INVALID_HANDLE);
    EXPECT(shmq_try_publish(as_pub, &v), SHMQ_ERR_INVALID_HANDLE);
    EXPECT(shmq_try_recv(a, NULL, NULL), SHMQ_ERR_NULL_ARGUMENT);
    EXPECT(shmq_try_publish(p, NULL), SHMQ_ERR_NULL_ARGUMENT);
    EXPECT(shmq_recv_timeout(a, &v, 1000, NULL), SHMQ_TIMEOUT);

    /* The publisher leaves: drained subscribers see it gone. */
    CHECK(shmq_publisher_free(p));
    EXPECT(shmq_publisher_free(p), SHMQ_ERR_INVALID_HANDLE);
    EXPECT(shmq_recv_timeout(a, &v, DEADLINE, NULL), SHMQ_DISCONNECTED);
    CHECK(shmq_broadcast_stats(b, &st));
    WANT(!st.publisher_attached);
    CHECK(shmq_subscriber_free(a));
    CHECK(shmq_subscriber_free(at));
    CHECK(shmq_subscriber_free(o));
    EXPECT(shmq_subscriber_free(o), SHMQ_ERR_INVALID_HANDLE);
    CHECK(shmq_broadcast_free(b));
    CHECK(shmq_broadcast_free(b2));
    EXPECT(shmq_broadcast_free(b2), SHMQ_ERR_INVALID_HANDLE);

    /* An overwrite ring never makes the publisher wait. */
    cfg = shmq_broadcast_config_default(4, 4);
    cfg.capacity = 4;
    cfg.policy = SHMQ_POLICY_OVERWRITE;
    CHECK(shmq_broadcast_create_memfd(&cfg, &b));
    CHECK(shmq_publisher(b, &p));
    CHECK(shmq_subscribe(b, SHMQ_START_LATEST, 0, &a));
    for (uint32_t i = 0; i < 10; i++) CHECK(shmq_try_publish(p, &i));
    uint32_t w = 0;
    EXPECT(shmq_try_recv(a, &w, &missed), SHMQ_LAGGED);
    WANT(missed == 7); /* 10 published, capacity 4: 7..9 still safe */
    CHECK(shmq_try_recv(a, &w, &missed));
    WANT(w == 7 && missed == 0);
    CHECK(shmq_broadcast_stats(b, &st));
    WANT(st.policy == SHMQ_POLICY_OVERWRITE && st.laps == 1 && st.max_lag_ns == 0);
    CHECK(shmq_subscriber_free(a));
    CHECK(shmq_publisher_free(p));
    CHECK(shmq_broadcast_free(b));
    return 0;
}

/* Claim a byte ring's producer, send three messages, say so, and wait to
 * be killed. */
static int bytes_hold(const char *name) {
    shmq_bytes_t r;
    shmq_bytes_producer_t p;
    CHECK(shmq_bytes_open(name, 0, 0, &r));
    CHECK(shmq_bytes_producer(r, &p));
    for (int i = 0; i < 3; i++) {
        char m[2] = {'m', (char)('0' + i)};
        CHECK(shmq_bytes_send_timeout(p, m, sizeof m, DEADLINE));
    }
    printf("ready\n");
    fflush(stdout);
    park();
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: peer MODE NAME [KIND] [N]\n");
        return 2;
    }
    const char *mode = argv[1], *name = argv[2];
    uint64_t n = argc > 4 ? strtoull(argv[4], NULL, 10) : 0;
    if (strcmp(mode, "produce") == 0) return produce(kind_of(argv[3]), name, n);
    if (strcmp(mode, "consume") == 0) return consume(kind_of(argv[3]), name, n);
    if (strcmp(mode, "hold") == 0) return hold(kind_of(argc > 3 ? argv[3] : "spsc"), name);
    if (strcmp(mode, "await-death") == 0)
        return await_death(kind_of(argc > 3 ? argv[3] : "spsc"), name);
    if (strcmp(mode, "errors") == 0) return errors(name);
    if (strcmp(mode, "fd-consume") == 0) return fd_consume(atoi(name), n);
    if (strcmp(mode, "memfd-local") == 0) return memfd_local();
    if (strcmp(mode, "stats") == 0) return stats(name);
    if (strcmp(mode, "bytes-produce") == 0) return bytes_produce(name, n);
    if (strcmp(mode, "bytes-consume") == 0) return bytes_consume(name, n);
    if (strcmp(mode, "bytes-hold") == 0) return bytes_hold(name);
    if (strcmp(mode, "bcast-subscribe") == 0) return bcast_subscribe(name, n);
    if (strcmp(mode, "bcast-publish") == 0) return bcast_publish(name, n);
    if (strcmp(mode, "bcast-hold") == 0) return bcast_hold(name);
    if (strcmp(mode, "bcast-await-death") == 0) return bcast_await_death(name);
    if (strcmp(mode, "bcast-lag") == 0) return bcast_lag(name);
    if (strcmp(mode, "bcast-local") == 0) return bcast_local();
    fprintf(stderr, "peer: unknown mode %s\n", mode);
    return 2;
}
