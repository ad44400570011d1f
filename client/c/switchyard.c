/*
 * switchyard.c — see switchyard.h. C99 plus POSIX.1-2008 sockets.
 *
 * Sections: byte helpers, frame codec, MessagePack writer and reader,
 * protocol maps, SHA-256/HMAC/token, the client (addresses and sockets,
 * the resend buffer, receiving, sending, timers, API).
 *
 * Every decoder checks a length against the bytes left before it trusts it
 * (lengths are compared as "len <= n - pos", never "pos + len <= n", so no
 * sum can wrap), and nesting is bounded by SY_MAX_DEPTH, so any input ends in
 * a result or an SY_E* code.
 */
#define _POSIX_C_SOURCE 200809L

#include "switchyard.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#ifndef MSG_NOSIGNAL
#define MSG_NOSIGNAL 0 /* no SIGPIPE suppression: the caller ignores SIGPIPE */
#endif

/* ---- byte helpers ---- */

static uint32_t be32(const uint8_t *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | (uint32_t)p[3];
}

static uint16_t be16(const uint8_t *p) { return (uint16_t)(((unsigned)p[0] << 8) | p[1]); }

static void put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static int valid_id(const char *id)
{
    size_t n;
    if (id == NULL)
        return 0;
    for (n = 0; id[n] != '\0'; n++) {
        if (n >= SY_MAX_ID || (unsigned char)id[n] < 0x21 || (unsigned char)id[n] > 0x7E)
            return 0;
    }
    return n > 0;
}

/* ---- frame codec ---- */

int sy_frame_encode(uint8_t *buf, size_t cap, uint8_t type, uint8_t flags, uint32_t seq,
                    const uint8_t *payload, size_t n)
{
    if (n > (size_t)INT_MAX - SY_HEADER_SIZE || cap < SY_HEADER_SIZE || n > cap - SY_HEADER_SIZE)
        return SY_ESPACE;
    put32(buf, (uint32_t)(n + SY_HEADER_SIZE - 4));
    buf[4] = type;
    buf[5] = flags;
    put32(buf + 6, seq);
    if (n > 0)
        memmove(buf + SY_HEADER_SIZE, payload, n);
    return (int)(SY_HEADER_SIZE + n);
}

static int known_type(uint8_t t)
{
    switch (t) {
    case SY_HELLO: case SY_WELCOME: case SY_PING: case SY_PONG:
    case SY_DATA: case SY_ACK: case SY_GOAWAY: case SY_ERROR:
        return 1;
    default:
        return 0;
    }
}

int sy_frame_decode(const uint8_t *buf, size_t len, size_t max_payload, struct sy_frame *f)
{
    uint32_t length;
    size_t total;
    if (len < 4)
        return SY_EINCOMPLETE;
    length = be32(buf);
    if (length < SY_MIN_LENGTH)
        return SY_EBADFRAME;
    if ((uint64_t)length - SY_MIN_LENGTH > (uint64_t)max_payload ||
        (uint64_t)length + 4 > (uint64_t)INT_MAX)
        return SY_ETOOLARGE;
    if (len < SY_HEADER_SIZE)
        return SY_EINCOMPLETE;
    if (!known_type(buf[4]) || (buf[5] & ~SY_FLAG_ACK_REQUESTED) != 0)
        return SY_EBADFRAME;
    total = (size_t)length + 4;
    if (len < total)
        return SY_EINCOMPLETE;
    f->type = buf[4];
    f->flags = buf[5];
    f->seq = be32(buf + 6);
    f->payload = buf + SY_HEADER_SIZE;
    f->len = total - SY_HEADER_SIZE;
    return (int)total;
}

/* ---- MessagePack writer ---- */

void sy_mpw_init(struct sy_mpw *w, uint8_t *buf, size_t cap)
{
    w->buf = buf;
    w->cap = cap;
    w->len = 0;
    w->err = SY_OK;
}

static void mpw_raw(struct sy_mpw *w, const void *p, size_t n)
{
    if (w->err != SY_OK)
        return;
    if (n > w->cap - w->len) {
        w->err = SY_ESPACE;
        return;
    }
    if (n > 0)
        memcpy(w->buf + w->len, p, n);
    w->len += n;
}

static void mpw_byte(struct sy_mpw *w, uint8_t b) { mpw_raw(w, &b, 1); }

/* mpw_head writes a type byte and a big-endian size in 1, 2 or 4 bytes. */
static void mpw_head(struct sy_mpw *w, uint8_t code, uint32_t v, int size)
{
    uint8_t b[5];
    b[0] = code;
    if (size == 1) {
        b[1] = (uint8_t)v;
    } else if (size == 2) {
        b[1] = (uint8_t)(v >> 8);
        b[2] = (uint8_t)v;
    } else {
        put32(b + 1, v);
    }
    mpw_raw(w, b, (size_t)size + 1);
}

static void mpw_container(struct sy_mpw *w, uint32_t n, uint8_t fix, uint8_t c16, uint8_t c32)
{
    if (n < 16)
        mpw_byte(w, (uint8_t)(fix | n));
    else if (n <= 0xFFFF)
        mpw_head(w, c16, n, 2);
    else
        mpw_head(w, c32, n, 4);
}

void sy_mpw_map(struct sy_mpw *w, uint32_t n) { mpw_container(w, n, 0x80, 0xde, 0xdf); }
void sy_mpw_array(struct sy_mpw *w, uint32_t n) { mpw_container(w, n, 0x90, 0xdc, 0xdd); }

void sy_mpw_str(struct sy_mpw *w, const char *s, size_t n)
{
    if (n > 0xFFFFFFFFu) {
        w->err = SY_ESPACE;
        return;
    }
    if (n < 32)
        mpw_byte(w, (uint8_t)(0xa0 | n));
    else if (n <= 0xFF)
        mpw_head(w, 0xd9, (uint32_t)n, 1);
    else if (n <= 0xFFFF)
        mpw_head(w, 0xda, (uint32_t)n, 2);
    else
        mpw_head(w, 0xdb, (uint32_t)n, 4);
    mpw_raw(w, s, n);
}

void sy_mpw_cstr(struct sy_mpw *w, const char *s) { sy_mpw_str(w, s, strlen(s)); }

void sy_mpw_bin(struct sy_mpw *w, const uint8_t *p, size_t n)
{
    if (n > 0xFFFFFFFFu) {
        w->err = SY_ESPACE;
        return;
    }
    if (n <= 0xFF)
        mpw_head(w, 0xc4, (uint32_t)n, 1);
    else if (n <= 0xFFFF)
        mpw_head(w, 0xc5, (uint32_t)n, 2);
    else
        mpw_head(w, 0xc6, (uint32_t)n, 4);
    mpw_raw(w, p, n);
}

void sy_mpw_uint(struct sy_mpw *w, uint64_t v)
{
    uint8_t b[9];
    int i;
    if (v < 128) {
        mpw_byte(w, (uint8_t)v);
    } else if (v <= 0xFF) {
        mpw_head(w, 0xcc, (uint32_t)v, 1);
    } else if (v <= 0xFFFF) {
        mpw_head(w, 0xcd, (uint32_t)v, 2);
    } else if (v <= 0xFFFFFFFFu) {
        mpw_head(w, 0xce, (uint32_t)v, 4);
    } else {
        b[0] = 0xcf;
        for (i = 0; i < 8; i++)
            b[1 + i] = (uint8_t)(v >> (56 - 8 * i));
        mpw_raw(w, b, 9);
    }
}

void sy_mpw_int(struct sy_mpw *w, int64_t v)
{
    uint8_t b[9];
    uint64_t u = (uint64_t)v;
    int i;
    if (v >= 0) {
        sy_mpw_uint(w, u);
    } else if (v >= -32) {
        mpw_byte(w, (uint8_t)(u & 0xFF));
    } else if (v >= INT8_MIN) {
        mpw_head(w, 0xd0, (uint32_t)(u & 0xFF), 1);
    } else if (v >= INT16_MIN) {
        mpw_head(w, 0xd1, (uint32_t)(u & 0xFFFF), 2);
    } else if (v >= INT32_MIN) {
        mpw_head(w, 0xd2, (uint32_t)(u & 0xFFFFFFFFu), 4);
    } else {
        b[0] = 0xd3;
        for (i = 0; i < 8; i++)
            b[1 + i] = (uint8_t)(u >> (56 - 8 * i));
        mpw_raw(w, b, 9);
    }
}

void sy_mpw_bool(struct sy_mpw *w, int v) { mpw_byte(w, v ? 0xc3 : 0xc2); }
void sy_mpw_nil(struct sy_mpw *w) { mpw_byte(w, 0xc0); }

/* ---- MessagePack reader ---- */

void sy_mpr_init(struct sy_mpr *r, const uint8_t *p, size_t n)
{
    r->p = p;
    r->n = n;
    r->pos = 0;
}

/* mpr_take returns n bytes at the reader's position, or NULL when fewer
 * are left (the position then does not move). */
static const uint8_t *mpr_take(struct sy_mpr *r, size_t n)
{
    const uint8_t *p;
    if (n > r->n - r->pos)
        return NULL;
    p = r->p + r->pos;
    r->pos += n;
    return p;
}

/* mpr_size reads a 1, 2 or 4 byte big-endian size. */
static int mpr_size(struct sy_mpr *r, int size, uint32_t *v)
{
    const uint8_t *p = mpr_take(r, (size_t)size);
    if (p == NULL)
        return SY_EMSGPACK;
    *v = size == 1 ? p[0] : size == 2 ? be16(p) : be32(p);
    return SY_OK;
}

static int mpr_peek(const struct sy_mpr *r)
{
    return r->pos < r->n ? r->p[r->pos] : -1;
}

static int mpr_container(struct sy_mpr *r, uint32_t *count, uint8_t fix, uint8_t c16, uint8_t c32)
{
    int c = mpr_peek(r);
    if (c < 0)
        return SY_EMSGPACK;
    if ((c & 0xF0) == fix) {
        r->pos++;
        *count = (uint32_t)c & 0x0F;
        return SY_OK;
    }
    if (c == c16 || c == c32) {
        r->pos++;
        return mpr_size(r, c == c16 ? 2 : 4, count);
    }
    return SY_EFIELD;
}

int sy_mpr_map(struct sy_mpr *r, uint32_t *count) { return mpr_container(r, count, 0x80, 0xde, 0xdf); }
int sy_mpr_array(struct sy_mpr *r, uint32_t *count) { return mpr_container(r, count, 0x90, 0xdc, 0xdd); }

/* mpr_blob reads a str (want_bin 0) or a bin or str (want_bin 1); nil is
 * the empty value. */
static int mpr_blob(struct sy_mpr *r, struct sy_bytes *out, int want_bin)
{
    int c = mpr_peek(r);
    uint32_t n;
    int size;
    out->p = r->p + r->pos;
    out->n = 0;
    if (c < 0)
        return SY_EMSGPACK;
    if (c == 0xc0) {
        r->pos++;
        return SY_OK;
    }
    if ((c & 0xE0) == 0xa0) {
        r->pos++;
        n = (uint32_t)c & 0x1F;
    } else {
        if (c == 0xd9 || (want_bin && c == 0xc4))
            size = 1;
        else if (c == 0xda || (want_bin && c == 0xc5))
            size = 2;
        else if (c == 0xdb || (want_bin && c == 0xc6))
            size = 4;
        else
            return SY_EFIELD;
        r->pos++;
        if (mpr_size(r, size, &n) != SY_OK)
            return SY_EMSGPACK;
    }
    out->p = mpr_take(r, n);
    if (out->p == NULL)
        return SY_EMSGPACK;
    out->n = n;
    return SY_OK;
}

int sy_mpr_str(struct sy_mpr *r, struct sy_bytes *s) { return mpr_blob(r, s, 0); }
int sy_mpr_bin(struct sy_mpr *r, struct sy_bytes *b) { return mpr_blob(r, b, 1); }

int sy_mpr_int(struct sy_mpr *r, int64_t *v)
{
    int c = mpr_peek(r);
    const uint8_t *p;
    uint64_t u = 0;
    size_t size, i;
    if (c < 0)
        return SY_EMSGPACK;
    if (c <= 0x7f || c >= 0xe0) {
        r->pos++;
        *v = c <= 0x7f ? c : c - 256;
        return SY_OK;
    }
    if (c == 0xc0) {
        r->pos++;
        *v = 0;
        return SY_OK;
    }
    if (c < 0xcc || c > 0xd3)
        return SY_EFIELD;
    size = (size_t)1 << ((c - 0xcc) & 3);
    r->pos++;
    p = mpr_take(r, size);
    if (p == NULL)
        return SY_EMSGPACK;
    for (i = 0; i < size; i++)
        u = (u << 8) | p[i];
    if (c <= 0xcf) { /* uint8..uint64 */
        if (u > (uint64_t)INT64_MAX)
            return SY_EFIELD;
        *v = (int64_t)u;
    } else if (size == 8) {
        *v = u > (uint64_t)INT64_MAX ? -(int64_t)(~u) - 1 : (int64_t)u;
    } else { /* sign-extend int8..int32 */
        uint64_t sign = (uint64_t)1 << (8 * size - 1);
        *v = (u & sign) ? (int64_t)u - (int64_t)(sign << 1) : (int64_t)u;
    }
    return SY_OK;
}

int sy_mpr_bool(struct sy_mpr *r, int *v)
{
    int c = mpr_peek(r);
    if (c < 0)
        return SY_EMSGPACK;
    if (c != 0xc0 && c != 0xc2 && c != 0xc3)
        return SY_EFIELD;
    r->pos++;
    *v = c == 0xc3;
    return SY_OK;
}

/* skip_len is the size of a value's body and the header bytes that hold
 * it, for the length-prefixed families (str, bin, ext). */
static int mpr_skip_sized(struct sy_mpr *r, int size, size_t extra)
{
    uint32_t n;
    if (mpr_size(r, size, &n) != SY_OK || mpr_take(r, extra) == NULL || mpr_take(r, n) == NULL)
        return SY_EMSGPACK;
    return SY_OK;
}

int sy_mpr_skip(struct sy_mpr *r, int depth)
{
    int c = mpr_peek(r);
    uint64_t items = 0, k;
    uint32_t n;
    if (c < 0 || depth < 0)
        return SY_EMSGPACK;
    r->pos++;
    if (c <= 0x7f || c >= 0xe0 || c == 0xc0 || c == 0xc2 || c == 0xc3)
        return SY_OK;
    if ((c & 0xE0) == 0xa0)
        return mpr_take(r, (size_t)c & 0x1F) ? SY_OK : SY_EMSGPACK;
    if ((c & 0xF0) == 0x80 || (c & 0xF0) == 0x90) {
        items = (uint64_t)(c & 0x0F) * ((c & 0xF0) == 0x80 ? 2 : 1);
    } else {
        switch (c) {
        case 0xc4: case 0xd9: return mpr_skip_sized(r, 1, 0);
        case 0xc5: case 0xda: return mpr_skip_sized(r, 2, 0);
        case 0xc6: case 0xdb: return mpr_skip_sized(r, 4, 0);
        case 0xc7: return mpr_skip_sized(r, 1, 1); /* ext8: size, type, data */
        case 0xc8: return mpr_skip_sized(r, 2, 1);
        case 0xc9: return mpr_skip_sized(r, 4, 1);
        case 0xca: case 0xd2: case 0xce: return mpr_take(r, 4) ? SY_OK : SY_EMSGPACK;
        case 0xcb: case 0xd3: case 0xcf: return mpr_take(r, 8) ? SY_OK : SY_EMSGPACK;
        case 0xcc: case 0xd0: return mpr_take(r, 1) ? SY_OK : SY_EMSGPACK;
        case 0xcd: case 0xd1: return mpr_take(r, 2) ? SY_OK : SY_EMSGPACK;
        case 0xd4: return mpr_take(r, 2) ? SY_OK : SY_EMSGPACK; /* fixext: type + 1..16 */
        case 0xd5: return mpr_take(r, 3) ? SY_OK : SY_EMSGPACK;
        case 0xd6: return mpr_take(r, 5) ? SY_OK : SY_EMSGPACK;
        case 0xd7: return mpr_take(r, 9) ? SY_OK : SY_EMSGPACK;
        case 0xd8: return mpr_take(r, 17) ? SY_OK : SY_EMSGPACK;
        case 0xdc: case 0xde:
            if (mpr_size(r, 2, &n) != SY_OK)
                return SY_EMSGPACK;
            items = (uint64_t)n * (c == 0xde ? 2 : 1);
            break;
        case 0xdd: case 0xdf:
            if (mpr_size(r, 4, &n) != SY_OK)
                return SY_EMSGPACK;
            items = (uint64_t)n * (c == 0xdf ? 2 : 1);
            break;
        default: /* 0xc1: never used */
            return SY_EMSGPACK;
        }
    }
    if (items > 0 && depth == 0)
        return SY_EMSGPACK;
    /* each item takes at least one byte: a count the bytes cannot back
     * fails on the first missing item, after at most n - pos rounds */
    for (k = 0; k < items; k++) {
        if (sy_mpr_skip(r, depth - 1) != SY_OK)
            return SY_EMSGPACK;
    }
    return SY_OK;
}

/* ---- protocol maps ---- */

static int key_is(struct sy_bytes k, const char *s)
{
    size_t n = strlen(s);
    return k.n == n && memcmp(k.p, s, n) == 0;
}

int sy_hello_encode(uint8_t *buf, size_t cap, const struct sy_hello *h)
{
    struct sy_mpw w;
    uint32_t n = 2;
    size_t i;
    int tok = h->token != NULL && h->token[0] != '\0';
    if (!valid_id(h->id) || h->ntags > SY_MAX_TAGS || (h->ntags > 0 && h->tags == NULL))
        return SY_EINVAL;
    n += (uint32_t)tok + (h->resume.n > 0 ? 2u : 0u) + (h->ntags > 0 ? 1u : 0u);
    sy_mpw_init(&w, buf, cap < SY_MAX_HELLO ? cap : SY_MAX_HELLO);
    sy_mpw_map(&w, n);
    sy_mpw_cstr(&w, "v");
    sy_mpw_uint(&w, 1);
    sy_mpw_cstr(&w, "id");
    sy_mpw_cstr(&w, h->id);
    if (tok) {
        sy_mpw_cstr(&w, "token");
        sy_mpw_cstr(&w, h->token);
    }
    if (h->resume.n > 0) {
        sy_mpw_cstr(&w, "resume");
        sy_mpw_bin(&w, h->resume.p, h->resume.n);
        sy_mpw_cstr(&w, "last");
        sy_mpw_uint(&w, h->last);
    }
    if (h->ntags > 0) {
        sy_mpw_cstr(&w, "tags");
        sy_mpw_map(&w, (uint32_t)h->ntags);
        for (i = 0; i < h->ntags; i++) {
            if (h->tags[i].key == NULL || h->tags[i].value == NULL)
                return SY_EINVAL;
            sy_mpw_cstr(&w, h->tags[i].key);
            sy_mpw_cstr(&w, h->tags[i].value);
        }
    }
    return w.err != SY_OK ? w.err : (int)w.len;
}

/* map_walk calls field(key) for each key of the map in p; field reads the
 * value of a key it knows and returns 1, or returns 0 and the value is
 * skipped. The whole payload must be that one map. */
typedef int (*field_fn)(void *out, struct sy_bytes key, struct sy_mpr *r);

static int map_walk(const uint8_t *p, size_t n, void *out, field_fn field)
{
    struct sy_mpr r;
    struct sy_bytes key;
    uint32_t count, i;
    int err;
    sy_mpr_init(&r, p, n);
    if ((err = sy_mpr_map(&r, &count)) != SY_OK)
        return err == SY_EFIELD ? SY_EMSGPACK : err;
    for (i = 0; i < count; i++) {
        if ((err = sy_mpr_str(&r, &key)) != SY_OK)
            return err;
        err = field(out, key, &r);
        if (err == 0)
            err = sy_mpr_skip(&r, SY_MAX_DEPTH - 1);
        else if (err == 1)
            err = SY_OK;
        if (err != SY_OK)
            return err;
    }
    return r.pos == r.n ? SY_OK : SY_EMSGPACK;
}

/* read_u32 reads an int that must fit a uint32 (seqs). */
static int read_u32(struct sy_mpr *r, uint32_t *v)
{
    int64_t x;
    int err = sy_mpr_int(r, &x);
    if (err != SY_OK)
        return err;
    if (x < 0 || x > (int64_t)0xFFFFFFFFu)
        return SY_EFIELD;
    *v = (uint32_t)x;
    return SY_OK;
}

static int ret1(int err) { return err == SY_OK ? 1 : err; }

static int welcome_field(void *out, struct sy_bytes k, struct sy_mpr *r)
{
    struct sy_welcome *w = out;
    if (key_is(k, "session"))
        return ret1(sy_mpr_str(r, &w->session));
    if (key_is(k, "resume"))
        return ret1(sy_mpr_bin(r, &w->resume));
    if (key_is(k, "node"))
        return ret1(sy_mpr_str(r, &w->node));
    if (key_is(k, "hb"))
        return ret1(sy_mpr_int(r, &w->hb));
    if (key_is(k, "max_frame"))
        return ret1(sy_mpr_int(r, &w->max_frame));
    if (key_is(k, "resumed"))
        return ret1(sy_mpr_bool(r, &w->resumed));
    if (key_is(k, "last"))
        return ret1(read_u32(r, &w->last));
    return 0;
}

int sy_welcome_decode(const uint8_t *p, size_t n, struct sy_welcome *w)
{
    memset(w, 0, sizeof *w);
    return map_walk(p, n, w, welcome_field);
}

static int goaway_field(void *out, struct sy_bytes k, struct sy_mpr *r)
{
    struct sy_goaway *g = out;
    struct sy_bytes s;
    uint32_t count, i;
    int err;
    if (key_is(k, "reason"))
        return ret1(sy_mpr_str(r, &g->reason));
    if (key_is(k, "retry_ms"))
        return ret1(sy_mpr_int(r, &g->retry_ms));
    if (!key_is(k, "redirect"))
        return 0;
    if (mpr_peek(r) == 0xc0) { /* nil: no redirect */
        r->pos++;
        return 1;
    }
    if ((err = sy_mpr_array(r, &count)) != SY_OK)
        return err;
    g->nredirect = 0;
    for (i = 0; i < count; i++) {
        if ((err = sy_mpr_str(r, &s)) != SY_OK)
            return err;
        if (g->nredirect < SY_MAX_REDIRECTS)
            g->redirect[g->nredirect++] = s;
    }
    return 1;
}

int sy_goaway_decode(const uint8_t *p, size_t n, struct sy_goaway *g)
{
    memset(g, 0, sizeof *g);
    return map_walk(p, n, g, goaway_field);
}

static int error_field(void *out, struct sy_bytes k, struct sy_mpr *r)
{
    struct sy_errmsg *e = out;
    if (key_is(k, "code"))
        return ret1(sy_mpr_int(r, &e->code));
    if (key_is(k, "message"))
        return ret1(sy_mpr_str(r, &e->message));
    return 0;
}

int sy_error_decode(const uint8_t *p, size_t n, struct sy_errmsg *e)
{
    int err;
    memset(e, 0, sizeof *e);
    if ((err = map_walk(p, n, e, error_field)) != SY_OK)
        return err;
    return e->code > 0 ? SY_OK : SY_EFIELD;
}

/* ---- SHA-256, HMAC, token ---- */

struct sha256 {
    uint32_t h[8];
    uint8_t block[64];
    size_t fill;
    uint64_t total;
};

static const uint32_t sha_k[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2};

static uint32_t ror(uint32_t x, int n) { return (x >> n) | (x << (32 - n)); }

static void sha_block(struct sha256 *s, const uint8_t *b)
{
    uint32_t w[64], a, bb, c, d, e, f, g, h, t1, t2;
    int i;
    for (i = 0; i < 16; i++)
        w[i] = be32(b + 4 * i);
    for (i = 16; i < 64; i++) {
        uint32_t s0 = ror(w[i - 15], 7) ^ ror(w[i - 15], 18) ^ (w[i - 15] >> 3);
        uint32_t s1 = ror(w[i - 2], 17) ^ ror(w[i - 2], 19) ^ (w[i - 2] >> 10);
        w[i] = w[i - 16] + s0 + w[i - 7] + s1;
    }
    a = s->h[0]; bb = s->h[1]; c = s->h[2]; d = s->h[3];
    e = s->h[4]; f = s->h[5]; g = s->h[6]; h = s->h[7];
    for (i = 0; i < 64; i++) {
        t1 = h + (ror(e, 6) ^ ror(e, 11) ^ ror(e, 25)) + ((e & f) ^ (~e & g)) + sha_k[i] + w[i];
        t2 = (ror(a, 2) ^ ror(a, 13) ^ ror(a, 22)) + ((a & bb) ^ (a & c) ^ (bb & c));
        h = g; g = f; f = e; e = d + t1;
        d = c; c = bb; bb = a; a = t1 + t2;
    }
    s->h[0] += a; s->h[1] += bb; s->h[2] += c; s->h[3] += d;
    s->h[4] += e; s->h[5] += f; s->h[6] += g; s->h[7] += h;
}

static void sha_init(struct sha256 *s)
{
    static const uint32_t iv[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                                   0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
    memcpy(s->h, iv, sizeof iv);
    s->fill = 0;
    s->total = 0;
}

static void sha_update(struct sha256 *s, const uint8_t *p, size_t n)
{
    s->total += n;
    while (n > 0) {
        size_t take = 64 - s->fill < n ? 64 - s->fill : n;
        memcpy(s->block + s->fill, p, take);
        s->fill += take;
        p += take;
        n -= take;
        if (s->fill == 64) {
            sha_block(s, s->block);
            s->fill = 0;
        }
    }
}

static void sha_final(struct sha256 *s, uint8_t out[32])
{
    uint64_t bits = s->total * 8;
    uint8_t pad = 0x80, zero = 0, len[8];
    int i;
    sha_update(s, &pad, 1);
    while (s->fill != 56)
        sha_update(s, &zero, 1);
    for (i = 0; i < 8; i++)
        len[i] = (uint8_t)(bits >> (56 - 8 * i));
    sha_update(s, len, 8);
    for (i = 0; i < 8; i++)
        put32(out + 4 * i, s->h[i]);
}

void sy_sha256(const uint8_t *p, size_t n, uint8_t out[32])
{
    struct sha256 s;
    sha_init(&s);
    sha_update(&s, p, n);
    sha_final(&s, out);
}

/* hmac_start keys s for the inner hash and leaves the outer pad in opad. */
static void hmac_start(struct sha256 *s, const uint8_t *key, size_t klen, uint8_t opad[64])
{
    uint8_t k[64], ipad[64];
    int i;
    memset(k, 0, sizeof k);
    if (klen > 64)
        sy_sha256(key, klen, k);
    else if (klen > 0)
        memcpy(k, key, klen);
    for (i = 0; i < 64; i++) {
        ipad[i] = (uint8_t)(k[i] ^ 0x36);
        opad[i] = (uint8_t)(k[i] ^ 0x5c);
    }
    sha_init(s);
    sha_update(s, ipad, 64);
}

static void hmac_finish(struct sha256 *s, const uint8_t opad[64], uint8_t out[32])
{
    uint8_t inner[32];
    sha_final(s, inner);
    sha_init(s);
    sha_update(s, opad, 64);
    sha_update(s, inner, 32);
    sha_final(s, out);
}

void sy_hmac_sha256(const uint8_t *key, size_t klen, const uint8_t *p, size_t n, uint8_t out[32])
{
    struct sha256 s;
    uint8_t opad[64];
    hmac_start(&s, key, klen, opad);
    sha_update(&s, p, n);
    hmac_finish(&s, opad, out);
}

int sy_make_token(char *out, size_t cap, const uint8_t *secret, size_t secret_len,
                  const char *id, int64_t exp)
{
    static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    char digits[21];
    uint8_t mac[32], opad[64], dot = '.';
    struct sha256 s;
    size_t nd = 0, len, i, o;
    uint64_t e;
    if (!valid_id(id) || exp < 0)
        return SY_EINVAL;
    e = (uint64_t)exp;
    do {
        digits[sizeof digits - 1 - nd++] = (char)('0' + e % 10);
        e /= 10;
    } while (e > 0);
    len = nd + 1 + 43;
    if (cap < len + 1)
        return SY_ESPACE;
    memcpy(out, digits + sizeof digits - nd, nd);
    out[nd] = '.';
    hmac_start(&s, secret, secret_len, opad);
    sha_update(&s, (const uint8_t *)id, strlen(id));
    sha_update(&s, &dot, 1);
    sha_update(&s, (const uint8_t *)out, nd);
    hmac_finish(&s, opad, mac);
    for (i = 0, o = nd + 1; i < 32; i += 3) { /* 32 bytes: 10 groups of 3, then 2 */
        uint32_t v = (uint32_t)mac[i] << 16;
        if (i + 1 < 32)
            v |= (uint32_t)mac[i + 1] << 8;
        if (i + 2 < 32)
            v |= mac[i + 2];
        out[o++] = b64[(v >> 18) & 63];
        out[o++] = b64[(v >> 12) & 63];
        if (i + 1 < 32)
            out[o++] = b64[(v >> 6) & 63];
        if (i + 2 < 32)
            out[o++] = b64[v & 63];
    }
    out[o] = '\0';
    return (int)o;
}

/* ---- the client: addresses and sockets ---- */

/* split_addr splits "host:port" or "[v6]:port" into host and port. */
static int split_addr(const char *addr, char *host, size_t hcap, char *port, size_t pcap)
{
    const char *colon = strrchr(addr, ':');
    const char *h = addr, *hend;
    if (colon == NULL || colon[1] == '\0')
        return SY_EINVAL;
    hend = colon;
    if (addr[0] == '[') {
        h = addr + 1;
        if (colon == addr || colon[-1] != ']')
            return SY_EINVAL;
        hend = colon - 1;
    }
    if ((size_t)(hend - h) >= hcap || strlen(colon + 1) >= pcap)
        return SY_EINVAL;
    memcpy(host, h, (size_t)(hend - h));
    host[hend - h] = '\0';
    strcpy(port, colon + 1);
    return SY_OK;
}

static int default_resolve(void *ctx, const char *host, const char *port, void *out, unsigned *len)
{
    struct sockaddr_in *v4 = out;
    struct sockaddr_in6 *v6 = out;
    long p = 0;
    const char *c;
    (void)ctx;
    for (c = port; *c != '\0'; c++) {
        if (*c < '0' || *c > '9' || p > 65535)
            return -1;
        p = p * 10 + (*c - '0');
    }
    if (p < 1 || p > 65535)
        return -1;
    if (strcmp(host, "localhost") == 0 || host[0] == '\0')
        host = "127.0.0.1";
    if (*len >= sizeof *v4) {
        memset(v4, 0, sizeof *v4);
        if (inet_pton(AF_INET, host, &v4->sin_addr) == 1) {
            v4->sin_family = AF_INET;
            v4->sin_port = htons((uint16_t)p);
            *len = sizeof *v4;
            return 0;
        }
    }
    if (*len >= sizeof *v6) {
        memset(v6, 0, sizeof *v6);
        if (inet_pton(AF_INET6, host, &v6->sin6_addr) == 1) {
            v6->sin6_family = AF_INET6;
            v6->sin6_port = htons((uint16_t)p);
            *len = sizeof *v6;
            return 0;
        }
    }
    return -1;
}

static int open_socket(struct sy_client *c, const char *addr)
{
    char host[SY_MAX_ADDR], port[8];
    struct sockaddr_storage ss;
    unsigned len = sizeof ss;
    int fd, one = 1, err;
    sy_resolve_fn resolve = c->cfg.resolve ? c->cfg.resolve : default_resolve;
    if (split_addr(addr, host, sizeof host, port, sizeof port) != SY_OK ||
        resolve(c->cfg.resolve_ctx, host, port, &ss, &len) != 0) {
        errno = EINVAL;
        return -1;
    }
    fd = socket(ss.ss_family, SOCK_STREAM, 0);
    if (fd < 0)
        return -1;
    if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) != 0 ||
        fcntl(fd, F_SETFD, FD_CLOEXEC) != 0) {
        err = errno;
        close(fd);
        errno = err;
        return -1;
    }
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connect(fd, (struct sockaddr *)&ss, (socklen_t)len) != 0 && errno != EINPROGRESS) {
        err = errno;
        close(fd);
        errno = err;
        return -1;
    }
    return fd;
}

/* ---- the client: events and connection lifecycle ---- */

static uint32_t rnd(struct sy_client *c)
{
    uint32_t x = c->rng;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    c->rng = x;
    return x;
}

/* emit calls on_event; it returns 0 when the callback ended the connection
 * (sy_disconnect, sy_stop), so the caller stops touching it. */
static int emit(struct sy_client *c, const struct sy_event *ev)
{
    unsigned gen = c->gen;
    if (c->cfg.on_event != NULL)
        c->cfg.on_event(c->cfg.ctx, c, ev);
    return gen == c->gen;
}

static void conn_close(struct sy_client *c)
{
    if (c->io_opened && c->cfg.io_close != NULL)
        c->cfg.io_close(c->cfg.io_ctx);
    c->io_opened = 0;
    c->tx_wants_read = c->rx_wants_write = c->rx_more = 0;
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
    c->gen++;
    c->rx_len = c->tx_len = 0;
    c->ack_due = c->pong_due = 0;
    c->resend_at = 0;
}

static int fatal_code(int code)
{
    return code == SY_CODE_BAD_REQUEST || code == SY_CODE_UNAUTHORIZED ||
           code == SY_CODE_CONFLICT || code == SY_CODE_TOO_LARGE;
}

/* lost_r ends the connection: DISCONNECT (with result, the SY_E* that
 * ended it, or 0), then a reconnect at the GOAWAY's time, after a backoff,
 * or never (fatal ERROR codes). */
static void lost_r(struct sy_client *c, int64_t now, int code, int sys_errno, int result)
{
    struct sy_event ev;
    int64_t delay;
    int i;
    int was_ready = c->state == SY_READY;
    conn_close(c);
    c->state = SY_WAITING;
    memset(&ev, 0, sizeof ev);
    ev.type = SY_EV_DISCONNECT;
    ev.code = code;
    ev.sys_errno = sys_errno;
    ev.result = result;
    emit(c, &ev);
    if (c->state != SY_WAITING || c->fd >= 0)
        return; /* the callback stopped or restarted the client */
    if (fatal_code(code)) {
        c->state = SY_CLOSED;
        ev.type = SY_EV_CLOSED;
        emit(c, &ev);
        return;
    }
    if (!was_ready && c->target < c->nredirect + 1)
        c->target++; /* this address failed: the next redirect, then cfg.addr */
    if (c->target > c->nredirect)
        c->target = c->nredirect; /* cfg.addr from now on */
    if (c->goaway) {
        c->deadline = c->goaway_at > now ? c->goaway_at : now;
        c->goaway = 0;
        return;
    }
    if (was_ready) {
        /* a session was up: reconnect soon (jittered within the first
         * backoff step, so a gateway's devices do not all come back in
         * the same millisecond), back off only if that fails */
        c->attempt = 0;
        c->deadline = now + (int64_t)(rnd(c) % (uint32_t)(c->cfg.backoff_min_ms + 1));
        return;
    }
    delay = c->cfg.backoff_min_ms;
    for (i = 0; i < c->attempt && delay < c->cfg.backoff_max_ms; i++)
        delay *= 2;
    if (delay > c->cfg.backoff_max_ms)
        delay = c->cfg.backoff_max_ms;
    if (c->attempt < 31)
        c->attempt++;
    c->deadline = now + delay / 2 + (int64_t)(rnd(c) % (uint32_t)(delay / 2 + 1));
}

static void lost(struct sy_client *c, int64_t now, int code, int sys_errno)
{
    lost_r(c, now, code, sys_errno, 0);
}

/* lost_io ends the connection after a failed socket call or transport
 * callback (r is SY_ESYS with errno set, or another negative code). */
static void lost_io(struct sy_client *c, int64_t now, int r)
{
    if (r == SY_ESYS)
        lost_r(c, now, 0, errno, SY_ESYS);
    else
        lost_r(c, now, 0, EPROTO, SY_ETRANSPORT);
}

/* queue_hello writes HELLO into the empty transmit buffer. */
static int queue_hello(struct sy_client *c)
{
    struct sy_hello h;
    char token[SY_TOKEN_MAX];
    int n;
    memset(&h, 0, sizeof h);
    h.id = c->cfg.id;
    h.token = c->cfg.token;
    h.tags = c->cfg.tags;
    h.ntags = c->cfg.ntags;
    if (c->cfg.secret != NULL) {
        int64_t unix_now = c->cfg.unix_now ? c->cfg.unix_now : (int64_t)time(NULL);
        if (sy_make_token(token, sizeof token, c->cfg.secret, c->cfg.secret_len, c->cfg.id,
                          unix_now + c->cfg.token_ttl_s) < 0)
            return SY_EINVAL;
        h.token = token;
    }
    if (c->cfg.manual_ack)
        c->delivered = c->acked; /* what the application did not ACK comes again */
    if (c->resume_len > 0) {
        h.resume.p = c->resume;
        h.resume.n = c->resume_len;
        h.last = c->delivered;
    }
    n = sy_hello_encode(c->cfg.tx_buf + SY_HEADER_SIZE, c->cfg.tx_cap - SY_HEADER_SIZE, &h);
    if (n < 0)
        return n;
    sy_frame_encode(c->cfg.tx_buf, c->cfg.tx_cap, SY_HELLO, 0, 0, c->cfg.tx_buf + SY_HEADER_SIZE,
                    (size_t)n);
    c->tx_len = SY_HEADER_SIZE + (size_t)n;
    return SY_OK;
}

/* target_addr is the address connected to: a redirect or cfg.addr. */
static const char *target_addr(const struct sy_client *c)
{
    return c->target < c->nredirect ? c->redirect[c->target] : c->cfg.addr;
}

static void connected(struct sy_client *c, int64_t now)
{
    int err;
    if (c->cfg.io_open != NULL) {
        char host[SY_MAX_ADDR], port[8];
        if (split_addr(target_addr(c), host, sizeof host, port, sizeof port) != SY_OK)
            host[0] = '\0'; /* cannot happen: open_socket split it */
        errno = EPROTO;
        err = c->cfg.io_open(c->cfg.io_ctx, c->fd, host);
        if (err != SY_OK) {
            lost_io(c, now, err == SY_ESYS ? SY_ESYS : SY_ETRANSPORT);
            return;
        }
        c->io_opened = 1;
    }
    err = queue_hello(c);
    if (err != SY_OK) {
        conn_close(c);
        c->state = SY_CLOSED; /* a config fault: retrying cannot help */
        c->last_code = err;
        return;
    }
    c->state = SY_HANDSHAKE;
    c->last_recv = c->last_send = now;
}

static void connect_start(struct sy_client *c, int64_t now)
{
    c->fd = open_socket(c, target_addr(c));
    if (c->fd < 0) {
        c->state = SY_CONNECTING;
        lost_r(c, now, 0, errno, SY_ESYS);
        return;
    }
    c->state = SY_CONNECTING;
    c->deadline = now + c->cfg.connect_timeout_ms;
}

/* ---- the client: the resend buffer ----
 * Reliable upstream frames, encoded, back to back in seq order. */

static size_t frame_at(const struct sy_client *c, size_t off) { return 4 + (size_t)be32(c->cfg.resend_buf + off); }
static uint32_t seq_at(const struct sy_client *c, size_t off) { return be32(c->cfg.resend_buf + off + 6); }

/* drop_acked forgets the frames with seq <= seq. */
static void drop_acked(struct sy_client *c, uint32_t seq)
{
    size_t off = 0;
    while (off < c->resend_len && seq_at(c, off) <= seq)
        off += frame_at(c, off);
    if (off > 0) {
        memmove(c->cfg.resend_buf, c->cfg.resend_buf + off, c->resend_len - off);
        c->resend_len -= off;
    }
}

/* renumber numbers the kept frames from 1, for a new session that replaced
 * one that could not be resumed. */
static void renumber(struct sy_client *c)
{
    size_t off = 0;
    uint32_t seq = 1;
    for (; off < c->resend_len; off += frame_at(c, off))
        put32(c->cfg.resend_buf + off + 6, seq++);
    c->next_seq = seq;
}

/* ---- the client: receiving ---- */

static void on_welcome(struct sy_client *c, const struct sy_frame *f, int64_t now)
{
    struct sy_welcome w;
    struct sy_event ev;
    size_t n;
    if (sy_welcome_decode(f->payload, f->len, &w) != SY_OK) {
        lost(c, now, 0, EPROTO);
        return;
    }
    n = w.session.n < sizeof c->session - 1 ? w.session.n : sizeof c->session - 1;
    memcpy(c->session, w.session.p, n);
    c->session[n] = '\0';
    n = w.node.n < sizeof c->node - 1 ? w.node.n : sizeof c->node - 1;
    memcpy(c->node, w.node.p, n);
    c->node[n] = '\0';
    c->resume_len = w.resume.n <= sizeof c->resume ? w.resume.n : 0;
    if (c->resume_len > 0)
        memcpy(c->resume, w.resume.p, c->resume_len);
    c->hb_ms = w.hb > 0 && w.hb < 86400 ? w.hb * 1000 : 30000;
    c->max_frame = w.max_frame > 0 ? w.max_frame : SY_DEFAULT_MAX_FRAME;
    if (w.resumed) {
        drop_acked(c, w.last);
        if (w.last > c->up_acked)
            c->up_acked = w.last;
        if (c->next_seq <= w.last)
            c->next_seq = w.last + 1;
        c->sent_upto = w.last;
    } else {
        renumber(c); /* a new session numbers from 1, both ways */
        c->up_acked = c->sent_upto = 0;
        c->delivered = c->acked = c->ack_sent = 0;
    }
    c->ack_sent = 0;
    c->state = SY_READY;
    c->attempt = 0;
    c->nredirect = c->target = 0;
    c->goaway = 0;
    c->last_code = 0;
    memset(&ev, 0, sizeof ev);
    ev.type = SY_EV_WELCOME;
    ev.resumed = w.resumed;
    ev.seq = w.last;
    ev.welcome = &w;
    emit(c, &ev);
}

static void on_goaway(struct sy_client *c, const struct sy_frame *f, int64_t now)
{
    struct sy_goaway g;
    struct sy_event ev;
    size_t i;
    int64_t retry;
    if (sy_goaway_decode(f->payload, f->len, &g) != SY_OK)
        memset(&g, 0, sizeof g); /* still a GOAWAY: reconnect */
    c->nredirect = c->target = 0;
    for (i = 0; i < g.nredirect; i++) {
        if (g.redirect[i].n > 0 && g.redirect[i].n < SY_MAX_ADDR) {
            memcpy(c->redirect[c->nredirect], g.redirect[i].p, g.redirect[i].n);
            c->redirect[c->nredirect++][g.redirect[i].n] = '\0';
        }
    }
    retry = g.retry_ms < 0 ? 0 : g.retry_ms > 3600000 ? 3600000 : g.retry_ms;
    c->goaway = 1;
    /* spread reconnects over retry_ms: the gateway serves us until then */
    c->goaway_at = now + (retry > 1 ? (int64_t)(rnd(c) % (uint32_t)(retry * 3 / 4 + 1)) : 0);
    memset(&ev, 0, sizeof ev);
    ev.type = SY_EV_GOAWAY;
    ev.data = g.reason;
    ev.goaway = &g;
    ev.code = (int)retry;
    emit(c, &ev);
}

/* on_error handles ERROR: 429 keeps the connection (resend everything not
 * ACKed a second later: the dropped frame made later ones gaps); any other
 * code is the gateway's last frame. */
static void on_error(struct sy_client *c, const struct sy_frame *f, int64_t now)
{
    struct sy_errmsg e;
    struct sy_event ev;
    if (sy_error_decode(f->payload, f->len, &e) != SY_OK || e.code > 999) {
        e.code = SY_CODE_INTERNAL;
        e.message.p = NULL;
        e.message.n = 0;
    }
    c->last_code = (int)e.code;
    memset(&ev, 0, sizeof ev);
    ev.type = SY_EV_ERROR;
    ev.code = (int)e.code;
    ev.data = e.message;
    if (!emit(c, &ev))
        return;
    if (e.code == SY_CODE_RATE_LIMITED) {
        c->resend_at = now + 1000;
        return;
    }
    lost(c, now, (int)e.code, 0);
}

static void on_data(struct sy_client *c, const struct sy_frame *f)
{
    struct sy_event ev;
    memset(&ev, 0, sizeof ev);
    ev.type = SY_EV_DATA;
    ev.data.p = f->payload;
    ev.data.n = f->len;
    if (!(f->flags & SY_FLAG_ACK_REQUESTED)) {
        emit(c, &ev);
        return;
    }
    if (f->seq <= c->delivered) { /* a redelivery we already had: ACK again */
        c->ack_due = 1;
        return;
    }
    c->delivered = f->seq;
    ev.seq = f->seq;
    if (!emit(c, &ev))
        return;
    if (!c->cfg.manual_ack) {
        c->acked = c->delivered;
        c->ack_due = 1;
    }
}

static void on_ack(struct sy_client *c, uint32_t seq)
{
    struct sy_event ev;
    if (seq <= c->up_acked || seq >= c->next_seq)
        return; /* old, or for a frame we never sent */
    c->up_acked = seq;
    drop_acked(c, seq);
    memset(&ev, 0, sizeof ev);
    ev.type = SY_EV_ACKED;
    ev.seq = seq;
    emit(c, &ev);
}

/* handle_frame returns 0 when the connection ended or changed under it. */
static int handle_frame(struct sy_client *c, const struct sy_frame *f, int64_t now)
{
    unsigned gen = c->gen;
    if (c->state == SY_HANDSHAKE && f->type != SY_WELCOME && f->type != SY_ERROR) {
        lost(c, now, 0, EPROTO);
        return 0;
    }
    switch (f->type) {
    case SY_WELCOME:
        if (c->state != SY_HANDSHAKE) {
            lost(c, now, 0, EPROTO);
            return 0;
        }
        on_welcome(c, f, now);
        break;
    case SY_ERROR:
        on_error(c, f, now);
        break;
    case SY_GOAWAY:
        on_goaway(c, f, now);
        break;
    case SY_PING:
        if (f->len <= SY_MAX_PING) {
            if (f->len > 0)
                memcpy(c->pong, f->payload, f->len);
            c->pong_len = f->len;
            c->pong_due = 1;
        }
        break;
    case SY_DATA:
        on_data(c, f);
        break;
    case SY_ACK:
        on_ack(c, f->seq);
        break;
    case SY_PONG:
        break;
    default: /* HELLO from a gateway */
        lost(c, now, 0, EPROTO);
        return 0;
    }
    return gen == c->gen && c->fd >= 0;
}

/* process decodes and handles the complete frames in rx_buf. */
static void process(struct sy_client *c, int64_t now)
{
    size_t off = 0;
    struct sy_frame f;
    int n;
    while (off < c->rx_len) {
        n = sy_frame_decode(c->cfg.rx_buf + off, c->rx_len - off, c->cfg.rx_cap - SY_HEADER_SIZE, &f);
        if (n == SY_EINCOMPLETE)
            break;
        if (n < 0) {
            lost(c, now, 0, n == SY_ETOOLARGE ? EMSGSIZE : EPROTO);
            return;
        }
        off += (size_t)n;
        if (!handle_frame(c, &f, now))
            return; /* rx_buf was reset with the connection */
    }
    if (off > 0) {
        memmove(c->cfg.rx_buf, c->cfg.rx_buf + off, c->rx_len - off);
        c->rx_len -= off;
    }
}

/* ---- the client: sending ---- */

static int tx_add(struct sy_client *c, uint8_t type, uint8_t flags, uint32_t seq, const uint8_t *p, size_t n)
{
    int w = sy_frame_encode(c->cfg.tx_buf + c->tx_len, c->cfg.tx_cap - c->tx_len, type, flags, seq, p, n);
    if (w < 0)
        return 0;
    c->tx_len += (size_t)w;
    return 1;
}

/* pump moves what is due into the transmit buffer: PONG, ACK, then the
 * reliable frames not yet sent on this connection, in seq order. */
static void pump(struct sy_client *c)
{
    size_t off, fl;
    uint32_t ack;
    if (c->state != SY_READY)
        return;
    if (c->pong_due && tx_add(c, SY_PONG, 0, 0, c->pong, c->pong_len))
        c->pong_due = 0;
    ack = c->acked;
    if (c->ack_due && ack > 0 && tx_add(c, SY_ACK, 0, ack, NULL, 0)) {
        c->ack_due = 0;
        c->ack_sent = ack;
    } else if (c->ack_due && ack == 0) {
        c->ack_due = 0;
    }
    if (c->resend_at != 0)
        return; /* after a 429: wait, then go back */
    for (off = 0; off < c->resend_len; off += fl) {
        fl = frame_at(c, off);
        if (seq_at(c, off) <= c->sent_upto)
            continue;
        if (fl > c->cfg.tx_cap - c->tx_len)
            break;
        memcpy(c->cfg.tx_buf + c->tx_len, c->cfg.resend_buf + off, fl);
        c->tx_len += fl;
        c->sent_upto = seq_at(c, off);
    }
}

static int has_output(const struct sy_client *c)
{
    if (c->tx_len > 0)
        return 1;
    if (c->state != SY_READY)
        return 0;
    return c->pong_due || c->ack_due ||
           (c->resend_at == 0 && c->resend_len > 0 && c->sent_upto + 1 < c->next_seq);
}

/* io_send writes through the transport, or the socket without one: the
 * count written (> 0), SY_WANT_WRITE, SY_WANT_READ or a failure. */
static int io_send(struct sy_client *c, const uint8_t *p, size_t n)
{
    ssize_t w;
    int r;
    if (n > INT_MAX)
        n = INT_MAX;
    if (c->cfg.io_send != NULL) {
        errno = EPROTO;
        r = c->cfg.io_send(c->cfg.io_ctx, p, n);
        if (r == 0 || r > (int)n) /* a transport that wrote nothing, or more than it got */
            return SY_ETRANSPORT;
        return r;
    }
    w = send(c->fd, p, n, MSG_NOSIGNAL);
    if (w < 0)
        return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ? SY_WANT_WRITE : SY_ESYS;
    return w == 0 ? SY_WANT_WRITE : (int)w;
}

/* io_recv reads through the transport or the socket: a count (> 0), 0 at
 * the peer's close, SY_WANT_READ, SY_WANT_WRITE or a failure. */
static int io_recv(struct sy_client *c, uint8_t *p, size_t n)
{
    ssize_t r;
    if (n > INT_MAX)
        n = INT_MAX;
    if (c->cfg.io_recv != NULL) {
        int k;
        errno = EPROTO;
        k = c->cfg.io_recv(c->cfg.io_ctx, p, n);
        return k > (int)n ? SY_ETRANSPORT : k;
    }
    r = recv(c->fd, p, n, 0);
    if (r < 0)
        return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ? SY_WANT_READ : SY_ESYS;
    return (int)r;
}

/* flush writes until the socket or the work runs out. */
static int flush(struct sy_client *c, int64_t now)
{
    int n;
    int rounds;
    for (rounds = 0; rounds < 64; rounds++) {
        pump(c);
        if (c->tx_len == 0)
            return SY_OK;
        n = io_send(c, c->cfg.tx_buf, c->tx_len);
        if (n == SY_WANT_WRITE)
            return SY_OK;
        if (n == SY_WANT_READ) { /* e.g. TLS: the handshake waits for the peer */
            c->tx_wants_read = 1;
            return SY_OK;
        }
        if (n < 0) {
            lost_io(c, now, n);
            return n == SY_ESYS ? SY_ESYS : SY_ETRANSPORT;
        }
        c->tx_wants_read = 0;
        memmove(c->cfg.tx_buf, c->cfg.tx_buf + n, c->tx_len - (size_t)n);
        c->tx_len -= (size_t)n;
        c->last_send = now;
    }
    return SY_OK;
}

/* ---- the client: API ---- */

int sy_init(struct sy_client *c, const struct sy_config *cfg)
{
    char host[SY_MAX_ADDR], port[8];
    memset(c, 0, sizeof *c);
    c->fd = -1;
    if (cfg == NULL || cfg->addr == NULL || !valid_id(cfg->id) || cfg->ntags > SY_MAX_TAGS ||
        split_addr(cfg->addr, host, sizeof host, port, sizeof port) != SY_OK)
        return SY_EINVAL;
    if (cfg->rx_buf == NULL || cfg->rx_cap < SY_HEADER_SIZE + 256 || cfg->tx_buf == NULL ||
        cfg->tx_cap < SY_HEADER_SIZE + SY_MAX_HELLO || (cfg->resend_cap > 0 && cfg->resend_buf == NULL))
        return SY_ESPACE;
    if ((cfg->io_send == NULL) != (cfg->io_recv == NULL) ||
        (cfg->io_send == NULL && (cfg->io_open != NULL || cfg->io_close != NULL)))
        return SY_EINVAL; /* half a transport */
    if (cfg->resolve == NULL) { /* fail now, not in every reconnect, on a name we cannot resolve */
        struct sockaddr_storage ss;
        unsigned len = sizeof ss;
        if (default_resolve(NULL, host, port, &ss, &len) != 0)
            return SY_EINVAL;
    }
    c->cfg = *cfg;
    if (c->cfg.token_ttl_s <= 0)
        c->cfg.token_ttl_s = 3600;
    if (c->cfg.connect_timeout_ms <= 0)
        c->cfg.connect_timeout_ms = 10000;
    if (c->cfg.resend_timeout_ms <= 0)
        c->cfg.resend_timeout_ms = 10000;
    if (c->cfg.backoff_min_ms <= 0)
        c->cfg.backoff_min_ms = 100;
    if (c->cfg.backoff_min_ms > 3600000)
        c->cfg.backoff_min_ms = 3600000;
    if (c->cfg.backoff_max_ms <= 0)
        c->cfg.backoff_max_ms = 30000;
    if (c->cfg.backoff_max_ms < c->cfg.backoff_min_ms)
        c->cfg.backoff_max_ms = c->cfg.backoff_min_ms;
    if (c->cfg.backoff_max_ms > 3600000)
        c->cfg.backoff_max_ms = 3600000;
    c->rng = cfg->seed ? cfg->seed : (uint32_t)time(NULL) ^ 0x9e3779b9u;
    if (c->rng == 0)
        c->rng = 1;
    c->next_seq = 1;
    c->hb_ms = 30000;
    c->max_frame = SY_DEFAULT_MAX_FRAME;
    c->state = SY_IDLE;
    return SY_OK;
}

int sy_start(struct sy_client *c, int64_t now_ms)
{
    if (c->state != SY_IDLE && c->state != SY_CLOSED)
        return SY_ESTATE;
    c->attempt = 0;
    c->target = 0;
    c->nredirect = 0;
    connect_start(c, now_ms);
    return SY_OK;
}

void sy_stop(struct sy_client *c)
{
    conn_close(c);
    c->state = SY_IDLE;
}

void sy_disconnect(struct sy_client *c, int64_t now_ms)
{
    if (c->state == SY_IDLE || c->state == SY_CLOSED)
        return;
    conn_close(c);
    c->state = SY_WAITING;
    c->deadline = now_ms;
}

int sy_fd(const struct sy_client *c) { return c->fd; }

short sy_want_events(const struct sy_client *c)
{
    short ev = POLLIN;
    if (c->fd < 0)
        return 0;
    if (c->state == SY_CONNECTING)
        return POLLOUT;
    /* a send that waits for the peer (SY_WANT_READ) would spin on POLLOUT */
    if ((has_output(c) && !c->tx_wants_read) || c->rx_wants_write)
        ev |= POLLOUT;
    return ev;
}

/* read_burst reads and handles what the connection has, in at most 64
 * reads; it returns SY_OK while the connection lives. */
static int read_burst(struct sy_client *c, int64_t now_ms)
{
    int n, rounds;
    unsigned gen = c->gen;
    c->rx_more = c->rx_wants_write = 0;
    for (rounds = 0; c->fd >= 0 && gen == c->gen; rounds++) {
        if (rounds == 64) {
            /* let the caller's other work run; bytes a transport holds
             * decrypted do not wake poll, so sy_tick reads on */
            c->rx_more = c->cfg.io_recv != NULL;
            break;
        }
        if (c->rx_len == c->cfg.rx_cap) /* cannot happen: decode refuses frames over rx_cap */
            return SY_ESPACE;
        n = io_recv(c, c->cfg.rx_buf + c->rx_len, c->cfg.rx_cap - c->rx_len);
        if (n == SY_WANT_READ)
            break;
        if (n == SY_WANT_WRITE) { /* e.g. TLS: the peer asked for a key update */
            c->rx_wants_write = 1;
            break;
        }
        if (n < 0) {
            lost_io(c, now_ms, n);
            return n == SY_ESYS ? SY_ESYS : SY_ETRANSPORT;
        }
        if (n == 0) {
            lost(c, now_ms, 0, ECONNRESET);
            return SY_ESTATE;
        }
        c->rx_len += (size_t)n;
        c->last_recv = now_ms;
        process(c, now_ms);
    }
    return c->fd >= 0 && gen == c->gen ? SY_OK : SY_ESTATE;
}

int sy_on_readable(struct sy_client *c, int64_t now_ms)
{
    int r;
    if (c->fd < 0)
        return SY_ESTATE;
    if (c->state == SY_CONNECTING)
        return sy_on_writable(c, now_ms);
    c->tx_wants_read = 0; /* a send waiting for the peer may go on now */
    r = read_burst(c, now_ms);
    if (r == SY_ESTATE)
        return SY_OK; /* the connection ended (reported by an event) */
    if (r != SY_OK)
        return r;
    if (has_output(c))
        return flush(c, now_ms);
    return SY_OK;
}

int sy_on_writable(struct sy_client *c, int64_t now_ms)
{
    int err = 0;
    socklen_t len = sizeof err;
    if (c->fd < 0)
        return SY_ESTATE;
    if (c->state == SY_CONNECTING) {
        if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0)
            err = errno;
        if (err == 0) {
            struct sockaddr_storage peer;
            socklen_t plen = sizeof peer;
            if (getpeername(c->fd, (struct sockaddr *)&peer, &plen) != 0 && errno == ENOTCONN)
                return SY_OK; /* woken before the connect finished */
        }
        if (err == EINPROGRESS || err == EALREADY)
            return SY_OK;
        if (err != 0) {
            lost_r(c, now_ms, 0, err, SY_ESYS);
            return SY_ESYS;
        }
        connected(c, now_ms);
        if (c->fd < 0)
            return c->state == SY_CLOSED ? SY_EINVAL : SY_ETRANSPORT;
    }
    if (c->rx_wants_write) { /* the transport's read waited for this */
        int r = read_burst(c, now_ms);
        if (r == SY_ESTATE)
            return SY_OK;
        if (r != SY_OK)
            return r;
    }
    return flush(c, now_ms);
}

static int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }

int sy_tick(struct sy_client *c, int64_t now)
{
    int64_t next = now + 1000;
    if (c->rx_more && c->fd >= 0 && read_burst(c, now) == SY_OK && has_output(c))
        flush(c, now);
    if (c->rx_more && c->fd >= 0)
        return 0; /* more to read that poll cannot see */
    switch (c->state) {
    case SY_WAITING:
        if (now >= c->deadline) {
            connect_start(c, now);
            return 0; /* poll the new socket at once */
        }
        next = min64(next, c->deadline);
        break;
    case SY_CONNECTING:
    case SY_HANDSHAKE:
        if (now >= c->deadline) {
            lost(c, now, 0, ETIMEDOUT);
            return 0;
        }
        next = min64(next, c->deadline);
        break;
    case SY_READY:
        if (now - c->last_recv >= 3 * c->hb_ms) { /* the gateway went silent */
            lost(c, now, 0, ETIMEDOUT);
            return 0;
        }
        if (c->goaway && now >= c->goaway_at) {
            lost(c, now, 0, 0); /* reconnect (redirect first) while we are still served */
            return 0;
        }
        if (c->goaway)
            next = min64(next, c->goaway_at);
        if (c->resend_at != 0 && now >= c->resend_at) {
            c->resend_at = 0;
            c->sent_upto = c->up_acked; /* go back: resend all not ACKed */
        }
        /* The oldest unACKed frame's wait restarts with every ACK that
         * moves and while nothing waits; past resend_timeout_ms, go back
         * to the last ACK (duplicates are re-ACKed by the gateway). */
        if (c->sent_upto <= c->up_acked || c->up_acked != c->ack_seen) {
            c->ack_wait = now;
            c->ack_seen = c->up_acked;
        } else if (c->resend_at == 0 && now - c->ack_wait >= c->cfg.resend_timeout_ms) {
            c->sent_upto = c->up_acked;
            c->ack_wait = now;
        }
        if (c->sent_upto > c->up_acked)
            next = min64(next, c->ack_wait + c->cfg.resend_timeout_ms);
        if (c->resend_at != 0)
            next = min64(next, c->resend_at);
        if (now - c->last_send >= c->hb_ms && c->tx_len == 0 && tx_add(c, SY_PING, 0, 0, NULL, 0))
            c->last_send = now;
        next = min64(next, c->last_send + c->hb_ms);
        if (has_output(c))
            flush(c, now);
        break;
    default:
        return 1000;
    }
    return next > now ? (int)(next - now) : 0;
}

int64_t sy_send(struct sy_client *c, const uint8_t *p, size_t n, int reliable)
{
    uint32_t seq;
    if (c->state == SY_CLOSED)
        return SY_ESTATE;
    if ((int64_t)n > c->max_frame || n > c->cfg.tx_cap - SY_HEADER_SIZE)
        return SY_ETOOLARGE;
    if (!reliable) {
        if (c->state != SY_READY)
            return SY_ESTATE;
        if (c->sent_upto + 1 < c->next_seq && c->resend_len > 0)
            return SY_EAGAIN; /* reliable frames wait before it: keep the order */
        return tx_add(c, SY_DATA, 0, 0, p, n) ? 0 : SY_EAGAIN;
    }
    if (c->cfg.resend_cap < SY_HEADER_SIZE || c->resend_len > c->cfg.resend_cap - SY_HEADER_SIZE ||
        n > c->cfg.resend_cap - SY_HEADER_SIZE - c->resend_len)
        return SY_EFULL;
    seq = c->next_seq++;
    sy_frame_encode(c->cfg.resend_buf + c->resend_len, c->cfg.resend_cap - c->resend_len, SY_DATA,
                    SY_FLAG_ACK_REQUESTED, seq, p, n);
    c->resend_len += SY_HEADER_SIZE + n;
    pump(c); /* into the transmit buffer now, so best-effort DATA after it stays behind it */
    return seq;
}

void sy_ack(struct sy_client *c, uint32_t seq)
{
    if (seq > c->delivered)
        seq = c->delivered;
    if (seq > c->acked) {
        c->acked = seq;
        c->ack_due = 1;
    }
}

enum sy_state sy_state(const struct sy_client *c) { return c->state; }
int sy_last_code(const struct sy_client *c) { return c->last_code; }
const char *sy_session(const struct sy_client *c) { return c->session; }
const char *sy_node(const struct sy_client *c) { return c->node; }

size_t sy_unacked(const struct sy_client *c)
{
    size_t off, k = 0;
    for (off = 0; off < c->resend_len; off += frame_at(c, off))
        k++;
    return k;
}

size_t sy_resume_token(const struct sy_client *c, const uint8_t **tok, uint32_t *last)
{
    *tok = c->resume;
    *last = c->cfg.manual_ack ? c->acked : c->delivered;
    return c->resume_len;
}

int sy_set_resume(struct sy_client *c, const uint8_t *tok, size_t n, uint32_t last)
{
    if (n > sizeof c->resume)
        return SY_ESPACE;
    if (n > 0)
        memcpy(c->resume, tok, n);
    c->resume_len = n;
    c->delivered = c->acked = last;
    return SY_OK;
}

const char *sy_strerror(int r)
{
    switch (r) {
    case SY_OK: return "ok";
    case SY_EINCOMPLETE: return "incomplete frame";
    case SY_EBADFRAME: return "malformed frame";
    case SY_ETOOLARGE: return "frame too large";
    case SY_EMSGPACK: return "malformed MessagePack";
    case SY_EFIELD: return "map field of the wrong type";
    case SY_ESPACE: return "buffer too small";
    case SY_EFULL: return "resend buffer full";
    case SY_ESTATE: return "not possible in this state";
    case SY_EINVAL: return "invalid argument";
    case SY_ESYS: return "socket error";
    case SY_EAGAIN: return "transmit buffer full";
    case SY_WANT_READ: return "transport waits to read";
    case SY_WANT_WRITE: return "transport waits to write";
    case SY_ETRANSPORT: return "transport failed";
    default: return "unknown result";
    }
}
