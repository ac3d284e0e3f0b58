/* The load of issue 29's "thousand live streams": N keep-alive connections,
 * each running one streaming chat completion after another, and how late
 * each chunk arrives.
 *
 * The upstream (upstream.c) writes its send time (CLOCK_MONOTONIC, µs) into
 * every content chunk as "s=<seq> t=<µs>"; the delay of a chunk is the time
 * it is read here minus that. The connections start spread over --ramp
 * seconds; new requests start until --duration seconds have passed, and the
 * streams then open run to their end (at most --drain seconds more). Delays
 * are recorded from the end of the ramp on (the steady state); chunks,
 * streams and errors are counted throughout.
 *
 * A stream that brought fewer content events than --chunks is a short
 * stream (chunks merged into one event, or lost); an event that carried
 * several chunks' stamps is counted as merged. Prints one JSON object.
 *
 *   client --port 9000 --streams 1000 --duration 60 [--host 127.0.0.1]
 *          [--path /v1/chat/completions] [--key KEY] [--model M]
 *          [--chunks 200] [--ramp 5] [--drain 30]
 *
 * One thread, epoll; HTTP/1.1 responses in chunked encoding, by
 * Content-Length or to the connection's close; SSE events split anywhere
 * across reads.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "hist.h"
#include "http_head.h"

#define MAX_HEAD 16384
#define MAX_LINE 65536
#define MAX_EVENT 262144
/* A stream that sends nothing for this long is given up as an error. */
#define IDLE_NS (30 * 1000000000LL)
#define RETRY_NS (200 * 1000000LL)

enum { S_WAIT, S_CONNECTING, S_SENDING, S_HEAD, S_BODY, S_DONE };
enum { CH_SIZE, CH_DATA, CH_DATA_END, CH_TRAILER };
enum { E_CONNECT, E_STATUS, E_RESET, E_INCOMPLETE, E_PROTOCOL, E_IDLE, E_EVENT, E_KINDS };
static const char *error_names[E_KINDS] = {"connect", "http_status", "reset", "incomplete",
                                           "protocol",  "idle",        "error_event"};

typedef struct {
    int fd, state, idx;
    int64_t start_at_ns, last_io_ns, sent_ns;
    size_t req_off;
    char *head;
    size_t head_len;
    /* the response */
    int status, chunked, close_after;
    int64_t body_left; /* -1: to the connection's close */
    int ch_state;
    uint64_t ch_left;
    char ch_line[32];
    size_t ch_line_len;
    /* SSE */
    char *line;
    size_t line_len;
    char *event;
    size_t event_len;
    int has_data;
    /* this stream */
    int events, stamps, done, first_seen;
} conn_t;

static struct {
    const char *host, *path, *key, *model;
    int port, streams, chunks;
    double duration, ramp, drain;
} opt = {"127.0.0.1", "/v1/chat/completions", "", "bench-live", 0, 0, 200, 60, 5, 30};

static int ep;
static char *request;
static size_t request_len;
static int64_t t0, record_from, stop_new_at, hard_stop_at;
static hist_t delay, first_chunk;
static uint64_t started, completed, chunks_seen, short_streams, merged_events, lost_chunks, cut_at_end;
static uint64_t errors[E_KINDS];
static int open_now, open_max, printed_errors;

static void die(const char *what) {
    perror(what);
    exit(1);
}

static void build_request(void) {
    char body[1024], auth[512] = "";
    int bl = snprintf(body, sizeof body,
                      "{\"model\":\"%s\",\"stream\":true,\"stream_options\":{\"include_usage\":true},"
                      "\"messages\":[{\"role\":\"user\",\"content\":\"Tell me a long story, one word at a time.\"}]}",
                      opt.model);
    if (opt.key[0]) snprintf(auth, sizeof auth, "Authorization: Bearer %s\r\n", opt.key);
    size_t cap = (size_t)bl + 2048;
    request = malloc(cap);
    if (!request) die("malloc");
    request_len = (size_t)snprintf(request, cap,
                                   "POST %s HTTP/1.1\r\nHost: %s:%d\r\nContent-Type: application/json\r\n"
                                   "Accept: text/event-stream\r\n%sContent-Length: %d\r\n\r\n%s",
                                   opt.path, opt.host, opt.port, auth, bl, body);
}

/* -- the end of a stream, or of a connection ---------------------------------- */

static void fail(conn_t *c, int kind, const char *detail) {
    errors[kind]++;
    if (printed_errors < 5) {
        printed_errors++;
        fprintf(stderr, "client: connection %d: %s error%s%s\n", c->idx, error_names[kind], detail ? ": " : "",
                detail ? detail : "");
    }
}

static void conn_reset(conn_t *c, int64_t retry_at) {
    if (c->fd >= 0) {
        epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
        close(c->fd);
        c->fd = -1;
    }
    if (c->state == S_HEAD || c->state == S_BODY || c->state == S_SENDING) open_now--;
    c->state = retry_at ? S_WAIT : S_DONE;
    c->start_at_ns = retry_at;
}

static void begin_stream(conn_t *c);

static void stream_over(conn_t *c, int64_t now) {
    open_now--;
    c->state = S_WAIT; /* between streams */
    if (!c->done) {
        fail(c, E_INCOMPLETE, "the response ended before data: [DONE]");
    } else {
        completed++;
        if (c->events < opt.chunks) short_streams++;
        if (c->stamps < opt.chunks) lost_chunks += (uint64_t)(opt.chunks - c->stamps);
    }
    if (c->close_after || now >= stop_new_at) {
        conn_reset(c, now >= stop_new_at ? 0 : now);
        return;
    }
    begin_stream(c);
}

/* -- SSE ------------------------------------------------------------------------ */

static void on_event(conn_t *c, int64_t now) {
    const char *e = c->event;
    size_t n = c->event_len;
    if (n == 6 && memcmp(e, "[DONE]", 6) == 0) {
        c->done = 1;
        return;
    }
    const char *k = memmem(e, n, "\"content\"", 9);
    if (!k) {
        if (memmem(e, n, "\"error\"", 7)) fail(c, E_EVENT, "an error event in the stream");
        return;
    }
    const char *p = k + 9, *end = e + n;
    while (p < end && (*p == ' ' || *p == ':')) p++;
    if (p >= end || *p != '"') return; /* "content": null */
    const char *s = ++p;
    while (p < end && *p != '"') p += *p == '\\' ? 2 : 1;
    if (p > end) p = end;
    int stamps = 0;
    for (const char *q = s; q + 2 < p; q++) {
        if (q[0] != 't' || q[1] != '=' || (q > s && q[-1] != ' ')) continue;
        long long sent = strtoll(q + 2, NULL, 10);
        if (sent <= 0) continue;
        stamps++;
        int64_t us = now / 1000 - sent;
        if (now >= record_from) hist_add(&delay, us);
        if (!c->first_seen) {
            c->first_seen = 1;
            if (now >= record_from) hist_add(&first_chunk, (now - c->sent_ns) / 1000);
        }
    }
    if (!stamps) return; /* the role chunk, or an empty delta */
    c->events++;
    c->stamps += stamps;
    chunks_seen += (uint64_t)stamps;
    if (stamps > 1) merged_events++;
}

/* Returns 0 when the connection was given up. */
static int on_line(conn_t *c, int64_t now) {
    char *l = c->line;
    size_t n = c->line_len;
    if (n && l[n - 1] == '\r') n--;
    if (n == 0) {
        if (c->has_data) on_event(c, now);
        c->event_len = 0;
        c->has_data = 0;
        return 1;
    }
    if (n < 5 || memcmp(l, "data:", 5) != 0) return 1; /* comments, event:, id:, retry: */
    size_t off = n > 5 && l[5] == ' ' ? 6 : 5, add = n - off + (c->has_data ? 1 : 0);
    if (c->event_len + add > MAX_EVENT) {
        fail(c, E_PROTOCOL, "an SSE event over 256 KB");
        return 0;
    }
    if (c->has_data) c->event[c->event_len++] = '\n';
    memcpy(c->event + c->event_len, l + off, n - off);
    c->event_len += n - off;
    c->has_data = 1;
    return 1;
}

static int sse_feed(conn_t *c, const char *p, size_t n, int64_t now) {
    while (n) {
        const char *nl = memchr(p, '\n', n);
        size_t take = nl ? (size_t)(nl - p) : n;
        if (c->line_len + take > MAX_LINE) {
            fail(c, E_PROTOCOL, "an SSE line over 64 KB");
            return 0;
        }
        memcpy(c->line + c->line_len, p, take);
        c->line_len += take;
        if (!nl) return 1;
        if (!on_line(c, now)) return 0;
        c->line_len = 0;
        p += take + 1;
        n -= take + 1;
    }
    return 1;
}

/* -- the HTTP response's body ----------------------------------------------------- */

/* Feed body bytes; 1: more wanted, 0: given up, 2: the response is whole. */
static int body_feed(conn_t *c, const char *p, size_t n, int64_t now, size_t *used) {
    const char *start = p;
    int whole = 0;
    if (!c->chunked) {
        size_t take = c->body_left < 0 || (uint64_t)c->body_left > n ? n : (size_t)c->body_left;
        if (c->status == 200 && !sse_feed(c, p, take, now)) return 0;
        if (c->body_left >= 0) {
            c->body_left -= (int64_t)take;
            whole = c->body_left == 0;
        }
        p += take;
        n -= take;
    }
    while (c->chunked && n && !whole) {
        if (c->ch_state == CH_DATA) {
            size_t take = c->ch_left < n ? (size_t)c->ch_left : n;
            if (c->status == 200 && !sse_feed(c, p, take, now)) return 0;
            c->ch_left -= take;
            p += take;
            n -= take;
            if (!c->ch_left) c->ch_state = CH_DATA_END;
            continue;
        }
        /* a line: the chunk's size, the CRLF after its data, or a trailer */
        char ch = *p++;
        n--;
        if (ch != '\n') {
            if (c->ch_line_len >= sizeof c->ch_line - 1) {
                if (c->ch_state == CH_TRAILER) continue; /* a long trailer is skipped */
                fail(c, E_PROTOCOL, "a chunk-size line too long");
                return 0;
            }
            c->ch_line[c->ch_line_len++] = ch;
            continue;
        }
        size_t ll = c->ch_line_len;
        if (ll && c->ch_line[ll - 1] == '\r') ll--;
        c->ch_line[ll] = 0;
        c->ch_line_len = 0;
        if (c->ch_state == CH_DATA_END) {
            if (ll) {
                fail(c, E_PROTOCOL, "no CRLF after a chunk's data");
                return 0;
            }
            c->ch_state = CH_SIZE;
        } else if (c->ch_state == CH_SIZE) {
            char *endp;
            unsigned long long size = strtoull(c->ch_line, &endp, 16);
            if (endp == c->ch_line) {
                fail(c, E_PROTOCOL, "a chunk size that is not hexadecimal");
                return 0;
            }
            c->ch_left = size;
            c->ch_state = size ? CH_DATA : CH_TRAILER;
        } else if (ll == 0) { /* the blank line after the last chunk's trailers */
            whole = 1;
        }
    }
    *used = (size_t)(p - start);
    return whole ? 2 : 1;
}

/* -- the HTTP response's head ----------------------------------------------------- */

/* The head is whole at head_len bytes; returns 0 when the connection was given up. */
static int on_head(conn_t *c, size_t head_len) {
    size_t vlen;
    if (head_len < 12 || memcmp(c->head, "HTTP/1.", 7) != 0) {
        fail(c, E_PROTOCOL, "not an HTTP/1.x response");
        return 0;
    }
    c->status = atoi(c->head + 9);
    const char *v = header_value(c->head, head_len, "transfer-encoding", &vlen);
    c->chunked = v && vlen >= 7 && strncasecmp(v + vlen - 7, "chunked", 7) == 0;
    v = header_value(c->head, head_len, "content-length", &vlen);
    c->body_left = c->chunked ? 0 : v ? strtoll(v, NULL, 10) : -1;
    v = header_value(c->head, head_len, "connection", &vlen);
    c->close_after = v && vlen == 5 && strncasecmp(v, "close", 5) == 0;
    c->ch_state = CH_SIZE;
    c->ch_line_len = 0;
    if (c->status != 200) {
        char detail[64];
        snprintf(detail, sizeof detail, "status %d", c->status);
        fail(c, E_STATUS, detail);
        /* Its body is read and dropped; the connection starts again a little later. */
        c->close_after = 1;
    }
    return 1;
}

static void on_bytes(conn_t *c, const char *p, size_t n, int64_t now) {
    while (n && c->state != S_WAIT && c->state != S_DONE) {
        if (c->state == S_HEAD) {
            size_t take = n < MAX_HEAD - c->head_len ? n : MAX_HEAD - c->head_len;
            memcpy(c->head + c->head_len, p, take);
            size_t from = c->head_len > 3 ? c->head_len - 3 : 0;
            c->head_len += take;
            char *end = memmem(c->head + from, c->head_len - from, "\r\n\r\n", 4);
            if (!end) {
                if (c->head_len >= MAX_HEAD) {
                    fail(c, E_PROTOCOL, "a response head over 16 KB");
                    conn_reset(c, now + RETRY_NS);
                }
                return;
            }
            size_t head_len = (size_t)(end - c->head) + 4, rest = c->head_len - head_len;
            if (!on_head(c, head_len)) {
                conn_reset(c, now + RETRY_NS);
                return;
            }
            c->state = S_BODY;
            /* the bytes after the head in this read */
            size_t consumed = take - rest;
            p += consumed;
            n -= consumed;
            if (c->body_left == 0 && !c->chunked) {
                stream_over(c, now);
                return;
            }
            continue;
        }
        size_t used = n;
        int r = body_feed(c, p, n, now, &used);
        if (r == 0) {
            conn_reset(c, now + RETRY_NS);
            return;
        }
        if (r == 2) {
            int status = c->status;
            if (status != 200) { /* counted at its head; the connection starts again a little later */
                c->state = S_WAIT;
                open_now--;
                conn_reset(c, now >= stop_new_at ? 0 : now + RETRY_NS);
                return;
            }
            stream_over(c, now);
            if (used < n && c->state != S_WAIT && c->state != S_DONE) {
                /* a server does not answer a request not yet sent */
                fail(c, E_PROTOCOL, "bytes after the response");
                conn_reset(c, now + RETRY_NS);
            }
            return;
        }
        return;
    }
}

/* -- connections ------------------------------------------------------------------ */

static void want(conn_t *c, uint32_t events) {
    struct epoll_event ev = {.events = events, .data.ptr = c};
    if (epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev) < 0) die("epoll_ctl mod");
}

static void send_request(conn_t *c, int64_t now) {
    while (c->req_off < request_len) {
        ssize_t w = write(c->fd, request + c->req_off, request_len - c->req_off);
        if (w < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                want(c, EPOLLIN | EPOLLOUT);
                return;
            }
            if (errno == EINTR) continue;
            fail(c, E_RESET, strerror(errno));
            conn_reset(c, now + RETRY_NS);
            return;
        }
        c->req_off += (size_t)w;
    }
    want(c, EPOLLIN);
    c->state = S_HEAD;
}

static void begin_stream(conn_t *c) {
    int64_t now = mono_ns();
    c->state = S_SENDING;
    c->req_off = 0;
    c->head_len = 0;
    c->line_len = c->event_len = 0;
    c->has_data = c->events = c->stamps = c->done = c->first_seen = 0;
    c->sent_ns = c->last_io_ns = now;
    started++;
    if (++open_now > open_max) open_max = open_now;
    send_request(c, now);
}

static void connect_conn(conn_t *c, int64_t now) {
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0) {
        fail(c, E_CONNECT, strerror(errno));
        c->start_at_ns = now + 1000000000LL;
        return;
    }
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)opt.port)};
    inet_pton(AF_INET, opt.host, &sa.sin_addr);
    struct epoll_event ev = {.events = EPOLLOUT, .data.ptr = c};
    if (epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev) < 0) die("epoll_ctl add");
    c->last_io_ns = now;
    c->state = S_CONNECTING;
    if (connect(c->fd, (struct sockaddr *)&sa, sizeof sa) < 0 && errno != EINPROGRESS) {
        fail(c, E_CONNECT, strerror(errno));
        conn_reset(c, now + 1000000000LL);
    }
}

static void on_event_io(conn_t *c, uint32_t events) {
    int64_t now = mono_ns();
    if (c->state == S_CONNECTING) {
        int err = 0;
        socklen_t len = sizeof err;
        getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
        if (err) {
            fail(c, E_CONNECT, strerror(err));
            conn_reset(c, now + 1000000000LL);
            return;
        }
        begin_stream(c);
        return;
    }
    if (c->state == S_SENDING && (events & EPOLLOUT)) {
        send_request(c, now);
        if (c->state != S_HEAD) return;
    }
    if (!(events & (EPOLLIN | EPOLLHUP | EPOLLERR))) return;
    char buf[65536];
    for (int reads = 0; reads < 4 && c->fd >= 0; reads++) {
        ssize_t r = read(c->fd, buf, sizeof buf);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
        now = mono_ns();
        c->last_io_ns = now;
        if (r <= 0) {
            if (c->state == S_BODY && c->body_left < 0 && !c->chunked) { /* a body that ends with the connection */
                c->close_after = 1;
                if (c->status == 200) stream_over(c, now);
            } else if (c->state == S_HEAD || c->state == S_BODY || c->state == S_SENDING) {
                fail(c, E_RESET, r < 0 ? strerror(errno) : "the server closed the connection mid-response");
            }
            conn_reset(c, now >= stop_new_at ? 0 : now + RETRY_NS);
            return;
        }
        if (c->state != S_HEAD && c->state != S_BODY) {
            fail(c, E_PROTOCOL, "bytes while no request was open");
            conn_reset(c, now + RETRY_NS);
            return;
        }
        on_bytes(c, buf, (size_t)r, now);
        if ((size_t)r < sizeof buf) return;
    }
}

/* Every 100 ms: connections to (re)start, streams silent too long. */
static void housekeeping(conn_t *conns, int64_t now) {
    for (int i = 0; i < opt.streams; i++) {
        conn_t *c = &conns[i];
        if (c->state == S_WAIT && c->start_at_ns && c->start_at_ns <= now && now < stop_new_at) {
            if (c->fd >= 0) begin_stream(c);
            else connect_conn(c, now);
        } else if (c->state == S_WAIT && now >= stop_new_at) {
            conn_reset(c, 0);
        } else if (c->state != S_WAIT && c->state != S_DONE && now - c->last_io_ns > IDLE_NS) {
            fail(c, E_IDLE, "no byte for 30 s");
            conn_reset(c, now + RETRY_NS);
        }
    }
}

static double arg_num(const char *s, const char *name) {
    char *end;
    double v = strtod(s, &end);
    if (*end || v < 0) {
        fprintf(stderr, "client: %s takes a number, not %s\n", name, s);
        exit(2);
    }
    return v;
}

int main(int argc, char **argv) {
    for (int i = 1; i + 1 < argc; i += 2) {
        const char *a = argv[i], *v = argv[i + 1];
        if (!strcmp(a, "--host")) opt.host = v;
        else if (!strcmp(a, "--port")) opt.port = (int)arg_num(v, a);
        else if (!strcmp(a, "--path")) opt.path = v;
        else if (!strcmp(a, "--key")) opt.key = v;
        else if (!strcmp(a, "--model")) opt.model = v;
        else if (!strcmp(a, "--streams")) opt.streams = (int)arg_num(v, a);
        else if (!strcmp(a, "--chunks")) opt.chunks = (int)arg_num(v, a);
        else if (!strcmp(a, "--duration")) opt.duration = arg_num(v, a);
        else if (!strcmp(a, "--ramp")) opt.ramp = arg_num(v, a);
        else if (!strcmp(a, "--drain")) opt.drain = arg_num(v, a);
        else {
            fprintf(stderr, "client: unknown option %s\n", a);
            return 2;
        }
    }
    if (opt.port <= 0 || opt.streams <= 0 || opt.duration <= 0 || strlen(opt.key) > 400 || strlen(opt.model) > 200 ||
        strlen(opt.path) > 1000 || strlen(opt.host) > 100) {
        fprintf(stderr, "usage: client --port P --streams N --duration S [--host H] [--path P] [--key K] "
                        "[--model M] [--chunks 200] [--ramp 5] [--drain 30]\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    hist_init(&delay);
    hist_init(&first_chunk);
    build_request();
    ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0) die("epoll_create1");

    t0 = mono_ns();
    record_from = t0 + (int64_t)(opt.ramp * 1e9);
    stop_new_at = t0 + (int64_t)(opt.duration * 1e9);
    hard_stop_at = stop_new_at + (int64_t)(opt.drain * 1e9);
    conn_t *conns = calloc((size_t)opt.streams, sizeof *conns);
    if (!conns) die("calloc");
    for (int i = 0; i < opt.streams; i++) {
        conn_t *c = &conns[i];
        c->fd = -1;
        c->idx = i;
        c->state = S_WAIT;
        /* spread over the ramp; never 0, which means "never" */
        c->start_at_ns = t0 + 1 + (int64_t)(opt.ramp * 1e9 * i / opt.streams);
        c->head = malloc(MAX_HEAD);
        c->line = malloc(MAX_LINE);
        c->event = malloc(MAX_EVENT);
        if (!c->head || !c->line || !c->event) die("malloc");
    }

    struct epoll_event evs[512];
    int64_t next_house = 0;
    for (;;) {
        int64_t now = mono_ns();
        if (now >= next_house) {
            housekeeping(conns, now);
            next_house = now + (now < record_from ? 5000000LL : 100000000LL);
        }
        if (now >= stop_new_at && open_now <= 0) break;
        if (now >= hard_stop_at) break;
        int timeout_ms = (int)((next_house - now) / 1000000) + 1;
        int n = epoll_wait(ep, evs, 512, timeout_ms);
        if (n < 0) {
            if (errno == EINTR) continue;
            die("epoll_wait");
        }
        for (int i = 0; i < n; i++) {
            conn_t *c = evs[i].data.ptr;
            if (c->fd >= 0) on_event_io(c, evs[i].events);
        }
    }
    for (int i = 0; i < opt.streams; i++) {
        conn_t *c = &conns[i];
        if (c->state == S_HEAD || c->state == S_BODY || c->state == S_SENDING) cut_at_end++;
    }

    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double cpu_s =
        (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) + (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
    uint64_t errors_total = 0;
    for (int k = 0; k < E_KINDS; k++) errors_total += errors[k];
    printf("{\"n\":%d,\"duration\":%.1f,\"ramp\":%.1f,\"chunks_per_stream\":%d,\"elapsed_s\":%.2f,"
           "\"streams_started\":%llu,\"streams_completed\":%llu,\"chunks\":%llu,\"errors\":%llu,\"error_kinds\":{",
           opt.streams, opt.duration, opt.ramp, opt.chunks, (mono_ns() - t0) / 1e9, (unsigned long long)started,
           (unsigned long long)completed, (unsigned long long)chunks_seen, (unsigned long long)errors_total);
    for (int k = 0; k < E_KINDS; k++) printf("%s\"%s\":%llu", k ? "," : "", error_names[k], (unsigned long long)errors[k]);
    printf("},\"short_streams\":%llu,\"merged_events\":%llu,\"lost_chunks\":%llu,\"cut_at_end\":%llu,"
           "\"open_max\":%d,\"cpu_s\":%.3f,\"delay_us\":",
           (unsigned long long)short_streams, (unsigned long long)merged_events, (unsigned long long)lost_chunks,
           (unsigned long long)cut_at_end, open_max, cpu_s);
    hist_json(stdout, &delay);
    printf(",\"first_chunk_us\":");
    hist_json(stdout, &first_chunk);
    printf("}\n");
    return 0;
}
