/* A model that streams like a real one, for issue 29's "thousand live streams".
 *
 * An HTTP/1.1 server on 127.0.0.1 answering POST .../chat/completions with an
 * OpenAI chat-completions SSE stream in chunked transfer encoding (as OpenAI's
 * own API sends it): a first chunk with the assistant's role at once, then
 * CHUNKS content chunks INTERVAL_MS apart, then a final chunk with
 * finish_reason "stop" and usage, then "data: [DONE]". Each content chunk's
 * delta.content is "s=<seq> t=<µs>": its sequence number and the
 * CLOCK_MONOTONIC time it was written at (the clock is the machine's, so the
 * client on the same machine reads the delay off it). Keep-alive; a request
 * pipelined behind a stream is answered after it.
 *
 * One thread, epoll, one timerfd: each open stream's next chunk waits in a
 * binary heap ordered by when it is due, and the timerfd is armed for the
 * earliest, so 2,000 streams x 20 chunks a second cost 40,000 heap steps a
 * second, not a timer each. A stream's chunks stay on its own schedule
 * (due += interval): one written late does not push the rest back.
 *
 * The timer is armed on a grid of --slot-us (1 ms): what falls due within a
 * slot is written in one wake-up. Armed for each chunk, the timer woke the
 * process 40,000 times a second at 2,000 streams, and at 100 streams a chunk
 * cost 20-25 µs of CPU, most of it waking up. A chunk's stamp is taken as it
 * is written, so the slot moves the schedule (by at most a slot), never the
 * delay measured.
 *
 *   upstream --port 9000 [--chunks 200] [--interval-ms 50] [--slot-us 1000]
 *
 * GET /stats answers the server's own figures as JSON (streams open and the
 * most open at once, chunks written, how late the timer wrote them, its CPU);
 * GET /stats?reset=1 also starts the windowed figures (peak, lateness) anew.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include "hist.h"
#include "http_head.h"

#define MAX_HEAD 16384
#define MAX_BODY (8 * 1024 * 1024)
/* A reader this far behind is not reading: its connection is dropped. */
#define MAX_OUT (4 * 1024 * 1024)
#define MODEL "gpt-4o-mini"

typedef struct conn {
    int fd;
    char *in;
    size_t in_len, in_cap;
    char *out;
    size_t out_len, out_off, out_cap;
    int want_out;    /* EPOLLOUT registered */
    int streaming;   /* a stream is being written */
    int close_after; /* the request said Connection: close */
    int seq;         /* the next content chunk */
    int64_t due_ns;  /* when the next chunk is due */
    int heap_idx;    /* -1 when not scheduled */
    uint64_t stream_no;
    struct conn *next_dead;
} conn_t;

static int chunks = 200;
static int64_t interval_ns = 50 * 1000000LL;
static int64_t slot_ns = 1000000LL;
static int ep, tfd;
static conn_t **heap;
static int heap_len, heap_cap;
static int64_t armed_ns = -1;

static struct {
    uint64_t open, peak, started, completed, cut, chunks_sent, conns, requests_bad;
} st;
static hist_t late; /* how long after its due time a chunk was written, µs */
static uint64_t stream_counter;

static void die(const char *what) {
    perror(what);
    exit(1);
}

/* -- the schedule: a binary heap of streams by due time -------------------- */

static void heap_swap(int a, int b) {
    conn_t *t = heap[a];
    heap[a] = heap[b];
    heap[b] = t;
    heap[a]->heap_idx = a;
    heap[b]->heap_idx = b;
}

static void heap_up(int i) {
    while (i > 0) {
        int p = (i - 1) / 2;
        if (heap[p]->due_ns <= heap[i]->due_ns) break;
        heap_swap(i, p);
        i = p;
    }
}

static void heap_down(int i) {
    for (;;) {
        int l = 2 * i + 1, r = l + 1, m = i;
        if (l < heap_len && heap[l]->due_ns < heap[m]->due_ns) m = l;
        if (r < heap_len && heap[r]->due_ns < heap[m]->due_ns) m = r;
        if (m == i) return;
        heap_swap(i, m);
        i = m;
    }
}

static void heap_push(conn_t *c) {
    if (heap_len == heap_cap) {
        heap_cap = heap_cap ? heap_cap * 2 : 1024;
        heap = realloc(heap, (size_t)heap_cap * sizeof(*heap));
        if (!heap) die("realloc");
    }
    heap[heap_len] = c;
    c->heap_idx = heap_len++;
    heap_up(c->heap_idx);
}

static void heap_remove(conn_t *c) {
    int i = c->heap_idx;
    if (i < 0) return;
    c->heap_idx = -1;
    heap_len--;
    if (i == heap_len) return;
    heap[i] = heap[heap_len];
    heap[i]->heap_idx = i;
    heap_up(i);
    heap_down(heap[i]->heap_idx);
}

/* The timerfd fires at the end of the slot the earliest due time falls in; re-armed only when that changes. */
static void arm_timer(void) {
    int64_t want = 0;
    if (heap_len) {
        want = heap[0]->due_ns;
        if (slot_ns > 1) want = (want + slot_ns - 1) / slot_ns * slot_ns;
    }
    if (want == armed_ns) return;
    struct itimerspec its = {0};
    if (want) {
        its.it_value.tv_sec = want / 1000000000LL;
        its.it_value.tv_nsec = want % 1000000000LL;
    }
    if (timerfd_settime(tfd, TFD_TIMER_ABSTIME, &its, NULL) < 0) die("timerfd_settime");
    armed_ns = want;
}

/* -- output ---------------------------------------------------------------- */

static void conn_close(conn_t *c);
static void serve_requests(conn_t *c);
/* Closed connections, freed at the end of the loop turn: later events of that turn may still name them. */
static conn_t *dead;

static void set_want_out(conn_t *c, int want) {
    if (c->want_out == want) return;
    struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP | (want ? EPOLLOUT : 0), .data.ptr = c};
    if (epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev) < 0) die("epoll_ctl mod");
    c->want_out = want;
}

/* Write what waits; 0 when the connection had to be closed. */
static int flush_out(conn_t *c) {
    while (c->out_off < c->out_len) {
        ssize_t w = write(c->fd, c->out + c->out_off, c->out_len - c->out_off);
        if (w < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK) break;
            if (errno == EINTR) continue;
            conn_close(c);
            return 0;
        }
        c->out_off += (size_t)w;
    }
    if (c->out_off == c->out_len) {
        c->out_off = c->out_len = 0;
        set_want_out(c, 0);
    } else {
        set_want_out(c, 1);
    }
    return 1;
}

/* Queue bytes and write them at once when nothing waits before them. */
static int send_bytes(conn_t *c, const char *p, size_t n) {
    if (c->out_len - c->out_off + n > MAX_OUT) {
        conn_close(c);
        return 0;
    }
    if (c->out_len + n > c->out_cap) {
        if (c->out_off) {
            memmove(c->out, c->out + c->out_off, c->out_len - c->out_off);
            c->out_len -= c->out_off;
            c->out_off = 0;
        }
        if (c->out_len + n > c->out_cap) {
            size_t cap = c->out_cap ? c->out_cap : 4096;
            while (cap < c->out_len + n) cap *= 2;
            c->out = realloc(c->out, cap);
            if (!c->out) die("realloc");
            c->out_cap = cap;
        }
    }
    memcpy(c->out + c->out_len, p, n);
    c->out_len += n;
    return flush_out(c);
}

/* One SSE event ("data: <json>\n\n") framed as one HTTP chunk, appended at p. */
static size_t put_event(char *p, size_t room, const char *json, size_t json_len) {
    size_t payload = json_len + 8; /* "data: " + "\n\n" */
    int n = snprintf(p, room, "%zx\r\ndata: %.*s\n\n\r\n", payload, (int)json_len, json);
    return n > 0 && (size_t)n < room ? (size_t)n : 0;
}

static size_t chunk_json(char *j, size_t room, const conn_t *c, const char *delta, const char *finish,
                         const char *extra) {
    int n = snprintf(j, room,
                     "{\"id\":\"chatcmpl-live%llu\",\"object\":\"chat.completion.chunk\",\"created\":%lld,"
                     "\"model\":\"" MODEL "\",\"system_fingerprint\":\"fp_live\","
                     "\"choices\":[{\"index\":0,\"delta\":%s,\"logprobs\":null,\"finish_reason\":%s}]%s}",
                     (unsigned long long)c->stream_no, (long long)time(NULL), delta, finish, extra);
    return n > 0 && (size_t)n < room ? (size_t)n : 0;
}

/* The next content chunk, and after the last one the end of the stream. */
static void write_chunk(conn_t *c, int64_t now) {
    char json[1024], delta[128], buf[4096];
    size_t len = 0;
    hist_add(&late, (now - c->due_ns) / 1000);
    snprintf(delta, sizeof delta, "{\"content\":\"s=%d t=%lld \"}", c->seq, (long long)(mono_ns() / 1000));
    size_t jl = chunk_json(json, sizeof json, c, delta, "null", "");
    len += put_event(buf + len, sizeof buf - len, json, jl);
    st.chunks_sent++;
    c->seq++;
    int last = c->seq >= chunks;
    if (last) {
        char usage[160];
        snprintf(usage, sizeof usage,
                 ",\"usage\":{\"prompt_tokens\":12,\"completion_tokens\":%d,\"total_tokens\":%d}", chunks,
                 chunks + 12);
        jl = chunk_json(json, sizeof json, c, "{}", "\"stop\"", usage);
        len += put_event(buf + len, sizeof buf - len, json, jl);
        len += put_event(buf + len, sizeof buf - len, "[DONE]", 6);
        memcpy(buf + len, "0\r\n\r\n", 5);
        len += 5;
        heap_remove(c);
        c->streaming = 0;
        st.open--;
        st.completed++;
    } else {
        c->due_ns += interval_ns;
        heap_down(c->heap_idx);
    }
    if (!send_bytes(c, buf, len) || !last) return;
    if (c->close_after) conn_close(c);
    else serve_requests(c); /* one pipelined behind the stream */
}

/* -- requests -------------------------------------------------------------- */

static void simple_answer(conn_t *c, const char *status, const char *type, const char *body) {
    char head[256];
    size_t n = strlen(body);
    int h = snprintf(head, sizeof head, "HTTP/1.1 %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n%s\r\n", status,
                     type, n, c->close_after ? "Connection: close\r\n" : "");
    if (!send_bytes(c, head, (size_t)h)) return;
    if (!send_bytes(c, body, n)) return;
    if (c->close_after) conn_close(c);
}

static void stats_answer(conn_t *c, int reset) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    char *body = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&body, &len);
    if (!f) die("open_memstream");
    fprintf(f,
            "{\"open\":%llu,\"peak\":%llu,\"started\":%llu,\"completed\":%llu,\"cut\":%llu,\"chunks_sent\":%llu,"
            "\"connections\":%llu,\"bad_requests\":%llu,\"cpu_s\":%.3f,\"late_us\":",
            (unsigned long long)st.open, (unsigned long long)st.peak, (unsigned long long)st.started,
            (unsigned long long)st.completed, (unsigned long long)st.cut, (unsigned long long)st.chunks_sent,
            (unsigned long long)st.conns, (unsigned long long)st.requests_bad,
            (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) + (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6);
    hist_json(f, &late);
    fputs("}\n", f);
    fclose(f);
    if (reset) {
        st.peak = st.open;
        hist_reset(&late);
    }
    simple_answer(c, "200 OK", "application/json", body);
    free(body);
}

static void start_stream(conn_t *c) {
    static const char head[] = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream; charset=utf-8\r\n"
                               "Cache-Control: no-cache\r\nTransfer-Encoding: chunked\r\n";
    char buf[2048], json[1024];
    c->stream_no = ++stream_counter;
    size_t len = (size_t)snprintf(buf, sizeof buf, "%s%s\r\n", head, c->close_after ? "Connection: close\r\n" : "");
    size_t jl = chunk_json(json, sizeof json, c, "{\"role\":\"assistant\",\"content\":\"\",\"refusal\":null}",
                           "null", "");
    len += put_event(buf + len, sizeof buf - len, json, jl);
    c->streaming = 1;
    c->seq = 0;
    c->due_ns = mono_ns() + interval_ns;
    heap_push(c);
    st.open++;
    st.started++;
    if (st.open > st.peak) st.peak = st.open;
    send_bytes(c, buf, len);
}

/* Answer every whole request waiting in the buffer, one at a time: a stream
 * holds the connection until its end, so nothing after it is read before. */
static void serve_requests(conn_t *c) {
    while (!c->streaming && c->in_len) {
        char *end = memmem(c->in, c->in_len, "\r\n\r\n", 4);
        if (!end) {
            if (c->in_len > MAX_HEAD) {
                st.requests_bad++;
                c->close_after = 1;
                simple_answer(c, "431 Request Header Fields Too Large", "text/plain", "header too large\n");
            }
            return;
        }
        size_t head_len = (size_t)(end - c->in) + 4, vlen;
        long long body_len = 0;
        const char *v = header_value(c->in, head_len, "content-length", &vlen);
        if (v) body_len = strtoll(v, NULL, 10);
        if (header_value(c->in, head_len, "transfer-encoding", &vlen) || body_len < 0 || body_len > MAX_BODY) {
            st.requests_bad++;
            c->close_after = 1;
            simple_answer(c, "400 Bad Request", "text/plain", "a body by Content-Length, at most 8 MB\n");
            return;
        }
        if (c->in_len < head_len + (size_t)body_len) {
            v = header_value(c->in, head_len, "expect", &vlen);
            if (v && vlen == 12 && strncasecmp(v, "100-continue", 12) == 0 && c->in_len == head_len) {
                if (!send_bytes(c, "HTTP/1.1 100 Continue\r\n\r\n", 25)) return;
            }
            return;
        }
        v = header_value(c->in, head_len, "connection", &vlen);
        c->close_after = v && vlen == 5 && strncasecmp(v, "close", 5) == 0;
        char method[8] = {0}, path[256] = {0};
        sscanf(c->in, "%7s %255s", method, path);
        size_t used = head_len + (size_t)body_len;
        memmove(c->in, c->in + used, c->in_len - used);
        c->in_len -= used;
        size_t pl = strlen(path);
        int is_chat = pl >= 17 && strcmp(path + pl - 17, "/chat/completions") == 0;
        if (strcmp(method, "POST") == 0 && is_chat) {
            start_stream(c);
        } else if (strcmp(method, "GET") == 0 && strncmp(path, "/stats", 6) == 0) {
            stats_answer(c, strstr(path, "reset=1") != NULL);
        } else {
            simple_answer(c, "404 Not Found", "application/json",
                          "{\"error\":{\"message\":\"not found\",\"type\":\"invalid_request_error\"}}");
        }
        if (c->fd < 0) return;
    }
}

/* -- connections ----------------------------------------------------------- */

static void conn_close(conn_t *c) {
    if (c->fd < 0) return;
    if (c->streaming) {
        heap_remove(c);
        c->streaming = 0;
        st.open--;
        st.cut++;
    }
    epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    c->fd = -1;
    c->next_dead = dead;
    dead = c;
}

static void on_readable(conn_t *c) {
    for (;;) {
        if (c->in_cap - c->in_len < 4096) {
            if (c->in_cap >= MAX_HEAD + MAX_BODY + 8192) {
                conn_close(c);
                return;
            }
            c->in_cap = c->in_cap ? c->in_cap * 2 : 8192;
            c->in = realloc(c->in, c->in_cap);
            if (!c->in) die("realloc");
        }
        ssize_t r = read(c->fd, c->in + c->in_len, c->in_cap - c->in_len);
        if (r > 0) {
            c->in_len += (size_t)r;
            continue;
        }
        if (r < 0 && errno == EINTR) continue;
        if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
        conn_close(c); /* 0: the peer closed; <0: reset */
        return;
    }
    serve_requests(c);
}

static void on_accept(int lfd) {
    for (;;) {
        int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED) continue;
            if (errno == EMFILE || errno == ENFILE) fprintf(stderr, "upstream: accept: out of descriptors\n");
            return;
        }
        int one = 1;
        /* Each chunk is its own small write: Nagle would hold it for the last one's ACK. */
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        conn_t *c = calloc(1, sizeof *c);
        if (!c) die("calloc");
        c->fd = fd;
        c->heap_idx = -1;
        struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP, .data.ptr = c};
        if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0) die("epoll_ctl add");
        st.conns++;
    }
}

static void fire_due(void) {
    int64_t now = mono_ns();
    while (heap_len && heap[0]->due_ns <= now) {
        write_chunk(heap[0], now);
        now = mono_ns();
    }
}

int main(int argc, char **argv) {
    int port = 0;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--port")) port = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--chunks")) chunks = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--interval-ms")) interval_ns = (int64_t)(atof(argv[i + 1]) * 1e6);
        else if (!strcmp(argv[i], "--slot-us")) slot_ns = (int64_t)(atof(argv[i + 1]) * 1e3);
        else {
            fprintf(stderr, "usage: upstream --port P [--chunks 200] [--interval-ms 50] [--slot-us 1000]\n");
            return 2;
        }
    }
    if (port <= 0 || chunks <= 0 || interval_ns <= 0 || slot_ns < 0) {
        fprintf(stderr, "upstream: --port, --chunks and --interval-ms must be positive, --slot-us not negative\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    /* The kernel may fire a timer up to the slack late (50 µs by default); a chunk's time is what is measured. */
    prctl(PR_SET_TIMERSLACK, 1UL, 0, 0, 0);
    hist_init(&late);
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(lfd, (struct sockaddr *)&sa, sizeof sa) < 0) die("bind");
    if (listen(lfd, 4096) < 0) die("listen");
    ep = epoll_create1(EPOLL_CLOEXEC);
    tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    if (ep < 0 || tfd < 0) die("epoll/timerfd");
    static int lmark, tmark;
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &lmark};
    epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);
    ev.data.ptr = &tmark;
    epoll_ctl(ep, EPOLL_CTL_ADD, tfd, &ev);
    fprintf(stderr, "upstream: 127.0.0.1:%d, %d chunks %.1f ms apart\n", port, chunks, interval_ns / 1e6);

    struct epoll_event evs[512];
    for (;;) {
        fire_due();
        arm_timer();
        int n = epoll_wait(ep, evs, 512, -1);
        if (n < 0) {
            if (errno == EINTR) continue;
            die("epoll_wait");
        }
        for (int i = 0; i < n; i++) {
            void *p = evs[i].data.ptr;
            if (p == &lmark) {
                on_accept(lfd);
            } else if (p == &tmark) {
                uint64_t expirations;
                if (read(tfd, &expirations, sizeof expirations) < 0 && errno != EAGAIN) die("read timerfd");
                armed_ns = -1; /* a fired timer is disarmed */
            } else {
                conn_t *c = p;
                if (c->fd < 0) continue;
                if (evs[i].events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) on_readable(c);
                if (c->fd >= 0 && (evs[i].events & EPOLLOUT) && flush_out(c) && c->fd >= 0) serve_requests(c);
            }
        }
        while (dead) {
            conn_t *c = dead;
            dead = c->next_dead;
            free(c->in);
            free(c->out);
            free(c);
        }
    }
}
