/* Reading an HTTP/1.1 head, shared by the upstream (a request's) and the
 * client (a response's). */
#ifndef LIVE_HTTP_HEAD_H
#define LIVE_HTTP_HEAD_H

#include <string.h>
#include <strings.h>

/* The value of header `name` (case-insensitive) in the head's first head_len
 * bytes, its length in *vlen, trimmed; NULL when there is none. */
static inline const char *header_value(const char *head, size_t head_len, const char *name, size_t *vlen) {
    size_t nl = strlen(name);
    const char *p = memchr(head, '\n', head_len), *end = head + head_len;
    while (p && p + 1 < end) {
        p++;
        if ((size_t)(end - p) > nl + 1 && strncasecmp(p, name, nl) == 0 && p[nl] == ':') {
            const char *v = p + nl + 1, *e = memchr(v, '\n', (size_t)(end - v));
            if (!e) e = end;
            while (v < e && (*v == ' ' || *v == '\t')) v++;
            while (e > v && (e[-1] == '\r' || e[-1] == ' ' || e[-1] == '\t')) e--;
            *vlen = (size_t)(e - v);
            return v;
        }
        p = memchr(p, '\n', (size_t)(end - p));
    }
    return NULL;
}

#endif
