/* A latency histogram in microseconds, shared by the upstream and the client.
 * Exact (1 µs buckets) below 100 ms, where the answers that matter fall; 1 ms
 * buckets from there to 120 s; anything later lands in the last bucket. The
 * maximum is kept exactly. 220,000 counters: 1.7 MB, allocated once. */
#ifndef LIVE_HIST_H
#define LIVE_HIST_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define HIST_FINE_US 100000LL
#define HIST_COARSE_MS 120000LL
#define HIST_BUCKETS (HIST_FINE_US + HIST_COARSE_MS)

typedef struct {
    uint64_t *counts;
    uint64_t n;
    int64_t max;
    double sum;
} hist_t;

static inline void hist_init(hist_t *h) {
    h->counts = calloc(HIST_BUCKETS, sizeof(uint64_t));
    if (!h->counts) {
        perror("calloc");
        exit(1);
    }
    h->n = 0;
    h->max = 0;
    h->sum = 0;
}

static inline void hist_reset(hist_t *h) {
    memset(h->counts, 0, HIST_BUCKETS * sizeof(uint64_t));
    h->n = 0;
    h->max = 0;
    h->sum = 0;
}

static inline void hist_add(hist_t *h, int64_t us) {
    /* Clocks of one machine: a negative value can only be rounding. */
    if (us < 0) us = 0;
    int64_t b = us < HIST_FINE_US ? us : HIST_FINE_US + (us - HIST_FINE_US) / 1000;
    if (b >= HIST_BUCKETS) b = HIST_BUCKETS - 1;
    h->counts[b]++;
    h->n++;
    h->sum += (double)us;
    if (us > h->max) h->max = us;
}

/* The value at quantile q (0..1): the bucket's lower edge, in µs. */
static inline int64_t hist_quantile(const hist_t *h, double q) {
    if (h->n == 0) return 0;
    uint64_t rank = (uint64_t)(q * (double)(h->n - 1)) + 1, seen = 0;
    for (int64_t b = 0; b < HIST_BUCKETS; b++) {
        seen += h->counts[b];
        if (seen >= rank) {
            int64_t v = b < HIST_FINE_US ? b : HIST_FINE_US + (b - HIST_FINE_US) * 1000;
            return v < h->max ? v : h->max;
        }
    }
    return h->max;
}

static inline void hist_json(FILE *f, const hist_t *h) {
    fprintf(f, "{\"n\":%llu,\"mean\":%.1f,\"p50\":%lld,\"p90\":%lld,\"p99\":%lld,\"p999\":%lld,\"max\":%lld}",
            (unsigned long long)h->n, h->n ? h->sum / (double)h->n : 0.0, (long long)hist_quantile(h, 0.50),
            (long long)hist_quantile(h, 0.90), (long long)hist_quantile(h, 0.99), (long long)hist_quantile(h, 0.999),
            (long long)h->max);
}

static inline int64_t mono_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

#endif
