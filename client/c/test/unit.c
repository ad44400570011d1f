/*
 * unit.c — unit tests of switchyard.c: the frame codec, MessagePack, the
 * maps, SHA-256/HMAC/token, the protocol test vectors
 * (protocol/testdata/vectors.txt) and the client's buffers, without a
 * network. Built by `make test-c` with -fsanitize=address,undefined.
 *
 *   unit VECTORS_FILE                 run the tests
 *   unit VECTORS_FILE --seeds DIR     also write fuzz seeds (frames, maps) into DIR
 */
#define _POSIX_C_SOURCE 200809L

#include "../switchyard.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int failures;

#define CHECK(cond)                                                              \
    do {                                                                         \
        if (!(cond)) {                                                           \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
            failures++;                                                          \
        }                                                                        \
    } while (0)

/* ---- the vectors file ---- */

#define MAX_VECTORS 64
#define MAX_VECTOR_BYTES 1024

struct vector {
    char name[64];
    uint8_t b[MAX_VECTOR_BYTES];
    size_t n;
};

static struct vector vectors[MAX_VECTORS];
static size_t nvectors;

static int hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

static void load_vectors(const char *path)
{
    static char line[4096];
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        perror(path);
        exit(2);
    }
    while (fgets(line, sizeof line, f) != NULL) {
        char *sep = strstr(line, ": ");
        struct vector *v;
        size_t i;
        if (line[0] == '#' || line[0] == '\n' || sep == NULL)
            continue;
        if (nvectors == MAX_VECTORS || (size_t)(sep - line) >= sizeof v->name) {
            fprintf(stderr, "vectors: too many or too long: %s", line);
            exit(2);
        }
        v = &vectors[nvectors++];
        memcpy(v->name, line, (size_t)(sep - line));
        v->name[sep - line] = '\0';
        for (i = 0, sep += 2; hexval(sep[0]) >= 0 && hexval(sep[1]) >= 0; sep += 2) {
            if (i == MAX_VECTOR_BYTES) {
                fprintf(stderr, "vectors: %s too long\n", v->name);
                exit(2);
            }
            v->b[i++] = (uint8_t)(hexval(sep[0]) << 4 | hexval(sep[1]));
        }
        v->n = i;
    }
    fclose(f);
    if (nvectors < 10) {
        fprintf(stderr, "vectors: only %zu in %s\n", nvectors, path);
        exit(2);
    }
}

static const struct vector *vec(const char *name)
{
    size_t i;
    for (i = 0; i < nvectors; i++) {
        if (strcmp(vectors[i].name, name) == 0)
            return &vectors[i];
    }
    fprintf(stderr, "vectors: no %s\n", name);
    exit(2);
}

static int bytes_eq(struct sy_bytes b, const char *s) { return b.n == strlen(s) && memcmp(b.p, s, b.n) == 0; }

/* decode_whole decodes a vector that must be exactly one good frame. */
static struct sy_frame decode_whole(const char *name)
{
    const struct vector *v = vec(name);
    struct sy_frame f;
    int n = sy_frame_decode(v->b, v->n, SY_DEFAULT_MAX_FRAME, &f);
    if (n != (int)v->n) {
        fprintf(stderr, "%s: decode = %d, want %zu\n", name, n, v->n);
        failures++;
        memset(&f, 0, sizeof f);
    }
    return f;
}

/* ---- tests ---- */

static void test_sha256(void)
{
    static const uint8_t abc[32] = {0xba, 0x78, 0x16, 0xbf, 0x8f, 0x01, 0xcf, 0xea, 0x41, 0x41, 0x40,
                                    0xde, 0x5d, 0xae, 0x22, 0x23, 0xb0, 0x03, 0x61, 0xa3, 0x96, 0x17,
                                    0x7a, 0x9c, 0xb4, 0x10, 0xff, 0x61, 0xf2, 0x00, 0x15, 0xad};
    /* RFC 4231 test case 2 */
    static const uint8_t jefe[32] = {0x5b, 0xdc, 0xc1, 0x46, 0xbf, 0x60, 0x75, 0x4e, 0x6a, 0x04, 0x24,
                                     0x26, 0x08, 0x95, 0x75, 0xc7, 0x5a, 0x00, 0x3f, 0x08, 0x9d, 0x27,
                                     0x39, 0x83, 0x9d, 0xec, 0x58, 0xb9, 0x64, 0xec, 0x38, 0x43};
    static const char *msg = "what do ya want for nothing?";
    uint8_t out[32], big[200];
    sy_sha256((const uint8_t *)"abc", 3, out);
    CHECK(memcmp(out, abc, 32) == 0);
    sy_hmac_sha256((const uint8_t *)"Jefe", 4, (const uint8_t *)msg, strlen(msg), out);
    CHECK(memcmp(out, jefe, 32) == 0);
    memset(big, 0xaa, sizeof big); /* a key longer than a block is hashed first */
    sy_hmac_sha256(big, 131, (const uint8_t *)"x", 1, out);
    CHECK(out[0] != 0 || out[1] != 0);
}

static void test_token(void)
{
    static const char *secret = "switchyard-test-vector-secret";
    const struct vector *v = vec("token");
    char tok[SY_TOKEN_MAX];
    int n = sy_make_token(tok, sizeof tok, (const uint8_t *)secret, strlen(secret), "sensor-42", 1800000000);
    CHECK(n == (int)v->n && memcmp(tok, v->b, v->n) == 0);
    CHECK(sy_make_token(tok, 20, (const uint8_t *)secret, 1, "sensor-42", 1) == SY_ESPACE);
    CHECK(sy_make_token(tok, sizeof tok, (const uint8_t *)secret, 1, "bad id", 1) == SY_EINVAL);
    CHECK(sy_make_token(tok, sizeof tok, (const uint8_t *)secret, 1, "x", -1) == SY_EINVAL);
}

/* test_hello: the C encoder writes the HELLO vectors byte for byte. */
static void test_hello(void)
{
    static const char *secret = "switchyard-test-vector-secret";
    static const uint8_t resume[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    static const struct sy_tag tags[1] = {{"ver", "2"}};
    uint8_t buf[SY_HEADER_SIZE + SY_MAX_HELLO];
    char tok[SY_TOKEN_MAX];
    struct sy_hello h;
    int n;
    memset(&h, 0, sizeof h);
    h.id = "sensor-42";
    n = sy_hello_encode(buf + SY_HEADER_SIZE, SY_MAX_HELLO, &h);
    CHECK(n > 0 && sy_frame_encode(buf, sizeof buf, SY_HELLO, 0, 0, buf + SY_HEADER_SIZE, (size_t)n) == (int)vec("hello")->n);
    CHECK(memcmp(buf, vec("hello")->b, vec("hello")->n) == 0);

    sy_make_token(tok, sizeof tok, (const uint8_t *)secret, strlen(secret), "sensor-42", 1800000000);
    h.token = tok;
    n = sy_hello_encode(buf + SY_HEADER_SIZE, SY_MAX_HELLO, &h);
    CHECK(n > 0 && sy_frame_encode(buf, sizeof buf, SY_HELLO, 0, 0, buf + SY_HEADER_SIZE, (size_t)n) == (int)vec("hello_token")->n);
    CHECK(memcmp(buf, vec("hello_token")->b, vec("hello_token")->n) == 0);

    h.token = NULL;
    h.resume.p = resume;
    h.resume.n = sizeof resume;
    h.last = 3;
    h.tags = tags;
    h.ntags = 1;
    n = sy_hello_encode(buf + SY_HEADER_SIZE, SY_MAX_HELLO, &h);
    CHECK(n > 0 && sy_frame_encode(buf, sizeof buf, SY_HELLO, 0, 0, buf + SY_HEADER_SIZE, (size_t)n) == (int)vec("hello_resume")->n);
    CHECK(memcmp(buf, vec("hello_resume")->b, vec("hello_resume")->n) == 0);

    h.id = "a b";
    CHECK(sy_hello_encode(buf, sizeof buf, &h) == SY_EINVAL);
    h.id = "";
    CHECK(sy_hello_encode(buf, sizeof buf, &h) == SY_EINVAL);
    h.id = "d";
    CHECK(sy_hello_encode(buf, 8, &h) == SY_ESPACE);
    h.ntags = 17;
    CHECK(sy_hello_encode(buf, sizeof buf, &h) == SY_EINVAL);
}

static void test_gateway_maps(void)
{
    struct sy_frame f;
    struct sy_welcome w;
    struct sy_goaway g;
    struct sy_errmsg e;
    f = decode_whole("welcome");
    CHECK(f.type == SY_WELCOME && sy_welcome_decode(f.payload, f.len, &w) == SY_OK);
    CHECK(bytes_eq(w.session, "s-0001") && bytes_eq(w.node, "gw-1") && w.hb == 30 && w.max_frame == 65536);
    CHECK(!w.resumed && w.last == 0 && w.resume.n == 8 && w.resume.p[7] == 8);
    f = decode_whole("welcome_resumed");
    CHECK(sy_welcome_decode(f.payload, f.len, &w) == SY_OK && w.resumed && w.last == 5 && bytes_eq(w.node, "gw-2"));
    f = decode_whole("goaway");
    CHECK(f.type == SY_GOAWAY && sy_goaway_decode(f.payload, f.len, &g) == SY_OK);
    CHECK(bytes_eq(g.reason, "draining") && g.retry_ms == 5000 && g.nredirect == 2);
    CHECK(bytes_eq(g.redirect[0], "10.0.0.2:7400") && bytes_eq(g.redirect[1], "10.0.0.3:7400"));
    f = decode_whole("error_401");
    CHECK(f.type == SY_ERROR && sy_error_decode(f.payload, f.len, &e) == SY_OK);
    CHECK(e.code == 401 && bytes_eq(e.message, "authentication failed"));
    f = decode_whole("error_429");
    CHECK(sy_error_decode(f.payload, f.len, &e) == SY_OK && e.code == 429);
    f = decode_whole("data_reliable");
    CHECK(f.type == SY_DATA && f.flags == SY_FLAG_ACK_REQUESTED && f.seq == 1 && f.len == 5 && memcmp(f.payload, "hello", 5) == 0);
    f = decode_whole("data_best_effort");
    CHECK(f.type == SY_DATA && f.flags == 0 && f.seq == 0 && f.len == 2);
    f = decode_whole("ack");
    CHECK(f.type == SY_ACK && f.seq == 7 && f.len == 0);
    f = decode_whole("ping");
    CHECK(f.type == SY_PING && f.len == 2);
    f = decode_whole("pong");
    CHECK(f.type == SY_PONG && f.len == 2);
}

static void test_bad_frames(void)
{
    struct sy_frame f;
    const struct vector *v = vec("bad_length_400");
    CHECK(sy_frame_decode(v->b, v->n, SY_DEFAULT_MAX_FRAME, &f) == SY_EBADFRAME);
    v = vec("bad_type_400");
    CHECK(sy_frame_decode(v->b, v->n, SY_DEFAULT_MAX_FRAME, &f) == SY_EBADFRAME);
    v = vec("bad_flags_400");
    CHECK(sy_frame_decode(v->b, v->n, SY_DEFAULT_MAX_FRAME, &f) == SY_EBADFRAME);
    v = vec("too_large_413");
    CHECK(sy_frame_decode(v->b, v->n, SY_DEFAULT_MAX_FRAME, &f) == SY_ETOOLARGE);
    CHECK(sy_frame_decode(v->b, 3, SY_DEFAULT_MAX_FRAME, &f) == SY_EINCOMPLETE);
    /* a length field of 2^32-1 with a huge limit: no overflow, refused */
    {
        static const uint8_t huge[4] = {0xff, 0xff, 0xff, 0xff};
        CHECK(sy_frame_decode(huge, 4, (size_t)-1, &f) == SY_ETOOLARGE);
    }
}

/* stream_decode decodes the frames of buf[0:n] as if it arrived in pieces
 * of the given cuts, through an rx buffer like the client's, and returns
 * how many frames matched want (all or -1). */
static int stream_decode(const uint8_t *stream, size_t n, const size_t *cuts, size_t ncuts,
                         const struct sy_frame *want, size_t nwant)
{
    static uint8_t rx[4096];
    size_t rx_len = 0, got = 0, fed = 0, i;
    for (i = 0; i <= ncuts; i++) {
        size_t end = i < ncuts ? cuts[i] : n, off = 0;
        struct sy_frame f;
        int k;
        memcpy(rx + rx_len, stream + fed, end - fed);
        rx_len += end - fed;
        fed = end;
        while ((k = sy_frame_decode(rx + off, rx_len - off, SY_DEFAULT_MAX_FRAME, &f)) > 0) {
            if (got >= nwant || f.type != want[got].type || f.flags != want[got].flags || f.seq != want[got].seq ||
                f.len != want[got].len || memcmp(f.payload, want[got].payload, f.len) != 0)
                return -1;
            got++;
            off += (size_t)k;
        }
        if (k != SY_EINCOMPLETE)
            return -1;
        memmove(rx, rx + off, rx_len - off);
        rx_len -= off;
    }
    return rx_len == 0 ? (int)got : -1;
}

/* test_split: the split procedure of docs/protocol.md, and one byte at a
 * time. */
static void test_split(void)
{
    static uint8_t stream[8192];
    static struct sy_frame want[MAX_VECTORS];
    static size_t cuts[8192];
    size_t n = 0, nwant = 0, i, k;
    for (i = 0; i < nvectors; i++) {
        const struct vector *v = &vectors[i];
        size_t len = strlen(v->name);
        if (strcmp(v->name, "token") == 0 || (len > 4 && (strcmp(v->name + len - 4, "_400") == 0 ||
                                                          strcmp(v->name + len - 4, "_413") == 0)))
            continue;
        memcpy(stream + n, v->b, v->n);
        want[nwant] = decode_whole(v->name);
        want[nwant].payload = stream + n + SY_HEADER_SIZE; /* compare against the copy */
        n += v->n;
        nwant++;
    }
    CHECK(nwant == 13);
    for (k = 0; k <= n; k++) {
        if (stream_decode(stream, n, &k, 1, want, nwant) != (int)nwant) {
            fprintf(stderr, "split at %zu failed\n", k);
            failures++;
            break;
        }
    }
    for (k = 0; k < n; k++)
        cuts[k] = k + 1;
    CHECK(stream_decode(stream, n, cuts, n - 1, want, nwant) == (int)nwant);
}

static void test_msgpack_ints(void)
{
    static const int64_t vals[] = {0, 1, 127, 128, 255, 256, 65535, 65536, 4294967295LL, 4294967296LL,
                                   INT64_MAX, -1, -32, -33, -128, -129, -32768, -32769,
                                   -2147483647LL - 1, -2147483649LL, INT64_MIN};
    uint8_t buf[16];
    size_t i;
    for (i = 0; i < sizeof vals / sizeof vals[0]; i++) {
        struct sy_mpw w;
        struct sy_mpr r;
        int64_t got = 12345;
        sy_mpw_init(&w, buf, sizeof buf);
        sy_mpw_int(&w, vals[i]);
        sy_mpr_init(&r, buf, w.len);
        CHECK(w.err == SY_OK && sy_mpr_int(&r, &got) == SY_OK && got == vals[i] && r.pos == w.len);
        sy_mpr_init(&r, buf, w.len);
        CHECK(sy_mpr_skip(&r, 0) == SY_OK && r.pos == w.len);
        if (w.len > 1) { /* cut: an error, never a read past the end */
            sy_mpr_init(&r, buf, w.len - 1);
            CHECK(sy_mpr_int(&r, &got) == SY_EMSGPACK);
        }
    }
    { /* uint64 above INT64_MAX does not fit */
        static const uint8_t big[9] = {0xcf, 0x80, 0, 0, 0, 0, 0, 0, 0};
        struct sy_mpr r;
        int64_t got;
        sy_mpr_init(&r, big, sizeof big);
        CHECK(sy_mpr_int(&r, &got) == SY_EFIELD);
    }
}

static void test_msgpack_sizes(void)
{
    static uint8_t data[70000], buf[2 * 70000 + 100];
    static const size_t sizes[] = {0, 1, 31, 32, 255, 256, 65535, 65536};
    size_t i;
    memset(data, 'x', sizeof data);
    for (i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        struct sy_mpw w;
        struct sy_mpr r;
        struct sy_bytes s;
        uint32_t n;
        sy_mpw_init(&w, buf, sizeof buf);
        sy_mpw_str(&w, (const char *)data, sizes[i]);
        sy_mpw_bin(&w, data, sizes[i]);
        sy_mpw_map(&w, (uint32_t)sizes[i]);
        sy_mpw_array(&w, (uint32_t)sizes[i]);
        CHECK(w.err == SY_OK);
        sy_mpr_init(&r, buf, w.len);
        CHECK(sy_mpr_str(&r, &s) == SY_OK && s.n == sizes[i]);
        CHECK(sy_mpr_bin(&r, &s) == SY_OK && s.n == sizes[i]);
        CHECK(sy_mpr_map(&r, &n) == SY_OK && n == sizes[i]);
        CHECK(sy_mpr_array(&r, &n) == SY_OK && n == sizes[i]);
        CHECK(r.pos == w.len);
        sy_mpw_init(&w, buf, 3); /* overflow is sticky */
        sy_mpw_str(&w, (const char *)data, sizes[i] + 3);
        sy_mpw_nil(&w);
        CHECK(w.err == SY_ESPACE && w.len <= 3);
    }
}

static void test_msgpack_skip(void)
{
    /* every kind of value, in a map with an unknown key, before the known ones */
    static const uint8_t all[] = {0x83, 0xa1, 'x', 0xdc, 0, 16, /* array16 of 16 */
                                  0xc0, 0xc2, 0xc3, 0xcb, 0, 0, 0, 0, 0, 0, 0, 0, 0xca, 0, 0, 0, 0,
                                  0xd4, 1, 1, 0xd5, 1, 1, 2, 0xd6, 1, 1, 2, 3, 4,
                                  0xd7, 1, 1, 2, 3, 4, 5, 6, 7, 8,
                                  0xd8, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                                  0xc7, 1, 5, 9, 0xc8, 0, 1, 5, 9, 0xc9, 0, 0, 0, 1, 5, 9,
                                  0xde, 0, 1, 0xa1, 'k', 0xd1, 0xff, 0xff, 0xdc, 0, 0, 0xdd, 0, 0, 0, 0,
                                  0xa4, 'c', 'o', 'd', 'e', 0xcd, 0x01, 0x91,
                                  0xa7, 'm', 'e', 's', 's', 'a', 'g', 'e', 0xa2, 'h', 'i'};
    static const uint8_t lying[][9] = {
        {0x81, 0xa1, 'x', 0xdb, 0xdd, 0xeb, 0x1d, 0x01, 0}, /* str32 of 3.7 GB */
        {0x81, 0xa1, 'x', 0xdd, 0x7f, 0xff, 0xff, 0xff, 0}, /* array32 of 2^31-1 */
        {0x81, 0xa1, 'x', 0xdf, 0x7f, 0xff, 0xff, 0xff, 0}, /* map32 of 2^31-1 */
        {0x81, 0xa1, 'x', 0xc9, 0xff, 0xff, 0xff, 0xff, 1}, /* ext32 */
        {0x81, 0xa1, 'x', 0xc1, 0, 0, 0, 0, 0},             /* never used */
    };
    uint8_t deep[64];
    struct sy_errmsg e;
    size_t i, n = 0, cut;
    CHECK(sy_error_decode(all, sizeof all, &e) == SY_OK && e.code == 401 && bytes_eq(e.message, "hi"));
    for (cut = 0; cut < sizeof all; cut++) /* every prefix is an error */
        CHECK(sy_error_decode(all, cut, &e) != SY_OK);
    for (i = 0; i < sizeof lying / sizeof lying[0]; i++)
        CHECK(sy_error_decode(lying[i], sizeof lying[i], &e) == SY_EMSGPACK);
    /* 15 arrays inside the value: fine; 16: too deep (the map is a level) */
    deep[n++] = 0x82;
    deep[n++] = 0xa4; memcpy(deep + n, "code", 4); n += 4; deep[n++] = 0x05;
    deep[n++] = 0xa1; deep[n++] = 'x';
    for (i = 0; i < SY_MAX_DEPTH - 1; i++)
        deep[n++] = 0x91;
    deep[n++] = 0xc0;
    CHECK(sy_error_decode(deep, n, &e) == SY_OK);
    memmove(deep + 11, deep + 10, n - 10);
    deep[10] = 0x91;
    CHECK(sy_error_decode(deep, n + 1, &e) == SY_EMSGPACK);
    { /* trailing bytes, non-str keys, wrong types, not a map */
        static const uint8_t trailing[] = {0x81, 0xa4, 'c', 'o', 'd', 'e', 0x05, 0xc0};
        static const uint8_t intkey[] = {0x81, 0x01, 0x05};
        static const uint8_t strcode[] = {0x81, 0xa4, 'c', 'o', 'd', 'e', 0xa1, '5'};
        static const uint8_t notmap[] = {0x91, 0x05};
        struct sy_welcome w;
        static const uint8_t badlast[] = {0x81, 0xa4, 'l', 'a', 's', 't', 0xff};
        CHECK(sy_error_decode(trailing, sizeof trailing, &e) == SY_EMSGPACK);
        CHECK(sy_error_decode(intkey, sizeof intkey, &e) == SY_EFIELD);
        CHECK(sy_error_decode(strcode, sizeof strcode, &e) == SY_EFIELD);
        CHECK(sy_error_decode(notmap, sizeof notmap, &e) == SY_EMSGPACK);
        CHECK(sy_error_decode(notmap, 0, &e) == SY_EMSGPACK);
        CHECK(sy_welcome_decode(badlast, sizeof badlast, &w) == SY_EFIELD);
    }
}

/* every prefix and every one-byte corruption of the gateway's vectors:
 * a result or an error code, never a crash (the sanitizers watch). */
static void test_maps_total(void)
{
    static const char *names[] = {"welcome", "welcome_resumed", "goaway", "error_401"};
    size_t i, k;
    int b;
    for (i = 0; i < sizeof names / sizeof names[0]; i++) {
        const struct vector *v = vec(names[i]);
        uint8_t p[MAX_VECTOR_BYTES];
        size_t n = v->n - SY_HEADER_SIZE;
        struct sy_welcome w;
        struct sy_goaway g;
        struct sy_errmsg e;
        memcpy(p, v->b + SY_HEADER_SIZE, n);
        for (k = 0; k < n; k++) {
            CHECK(sy_welcome_decode(p, k, &w) != SY_OK);
            CHECK(sy_goaway_decode(p, k, &g) != SY_OK);
            CHECK(sy_error_decode(p, k, &e) != SY_OK);
            for (b = 0; b < 256; b += 17) {
                uint8_t keep = p[k];
                p[k] = (uint8_t)b;
                (void)sy_welcome_decode(p, n, &w);
                (void)sy_goaway_decode(p, n, &g);
                (void)sy_error_decode(p, n, &e);
                p[k] = keep;
            }
        }
    }
}

static void on_event_none(void *ctx, struct sy_client *c, const struct sy_event *ev)
{
    (void)ctx;
    (void)c;
    (void)ev;
}

static int io_open_none(void *ctx, int fd, const char *host)
{
    (void)ctx;
    (void)fd;
    (void)host;
    return SY_OK;
}
static int io_send_none(void *ctx, const uint8_t *p, size_t n)
{
    (void)ctx;
    (void)p;
    (void)n;
    return SY_WANT_WRITE;
}
static int io_recv_none(void *ctx, uint8_t *p, size_t n)
{
    (void)ctx;
    (void)p;
    (void)n;
    return SY_WANT_READ;
}
static void io_close_none(void *ctx) { (void)ctx; }

/* test_client_buffers: sy_init checks, reliable numbering and the bounded
 * resend buffer, without a connection. */
static void test_client_buffers(void)
{
    static uint8_t rx[1024], tx[SY_HEADER_SIZE + SY_MAX_HELLO], resend[3 * (SY_HEADER_SIZE + 20)];
    struct sy_config cfg;
    struct sy_client c;
    uint8_t payload[20] = {0};
    memset(&cfg, 0, sizeof cfg);
    cfg.addr = "127.0.0.1:1";
    cfg.id = "unit-1";
    cfg.rx_buf = rx;
    cfg.rx_cap = sizeof rx;
    cfg.tx_buf = tx;
    cfg.tx_cap = sizeof tx;
    cfg.resend_buf = resend;
    cfg.resend_cap = sizeof resend;
    cfg.on_event = on_event_none;
    CHECK(sy_init(&c, &cfg) == SY_OK && sy_state(&c) == SY_IDLE && sy_fd(&c) == -1);
    CHECK(sy_send(&c, payload, 20, 1) == 1);
    CHECK(sy_send(&c, payload, 20, 1) == 2);
    CHECK(sy_send(&c, payload, 20, 1) == 3);
    CHECK(sy_send(&c, payload, 1, 1) == SY_EFULL);
    CHECK(sy_unacked(&c) == 3);
    CHECK(sy_send(&c, payload, 1, 0) == SY_ESTATE); /* best effort needs a session */
    CHECK(sy_send(&c, payload, SY_DEFAULT_MAX_FRAME + 1, 1) == SY_ETOOLARGE);
    cfg.id = "bad id";
    CHECK(sy_init(&c, &cfg) == SY_EINVAL);
    cfg.id = "unit-1";
    cfg.addr = "no-port";
    CHECK(sy_init(&c, &cfg) == SY_EINVAL);
    cfg.addr = "gateway.example:7400"; /* a DNS name needs cfg.resolve */
    CHECK(sy_init(&c, &cfg) == SY_EINVAL);
    cfg.addr = "127.0.0.1:99999";
    CHECK(sy_init(&c, &cfg) == SY_EINVAL);
    cfg.addr = "[::1]:7400";
    CHECK(sy_init(&c, &cfg) == SY_OK);
    cfg.tx_cap = 100;
    CHECK(sy_init(&c, &cfg) == SY_ESPACE);
    cfg.tx_cap = sizeof tx;
    /* a transport is io_send and io_recv, io_open and io_close optional */
    cfg.io_send = io_send_none;
    CHECK(sy_init(&c, &cfg) == SY_EINVAL);
    cfg.io_recv = io_recv_none;
    CHECK(sy_init(&c, &cfg) == SY_OK);
    cfg.io_open = io_open_none;
    cfg.io_close = io_close_none;
    CHECK(sy_init(&c, &cfg) == SY_OK);
    cfg.io_send = NULL;
    cfg.io_recv = NULL;
    CHECK(sy_init(&c, &cfg) == SY_EINVAL); /* io_open without a transport */
    CHECK(strcmp(sy_strerror(SY_ETRANSPORT), "transport failed") == 0);
    CHECK(strcmp(sy_strerror(SY_WANT_READ), "unknown result") != 0);
    CHECK(strcmp(sy_strerror(SY_WANT_WRITE), "unknown result") != 0);
}

/* write_seeds writes each vector as a fuzz_frame seed and each map payload
 * as a fuzz_map seed. */
static void write_seeds(const char *dir)
{
    char path[512];
    size_t i;
    for (i = 0; i < nvectors; i++) {
        FILE *f;
        snprintf(path, sizeof path, "%s/frame-%s", dir, vectors[i].name);
        if ((f = fopen(path, "wb")) == NULL) {
            perror(path);
            exit(2);
        }
        fwrite("\x03\x07", 1, 2, f); /* fuzz_frame's max_payload 65536 and cut selectors */
        fwrite(vectors[i].b, 1, vectors[i].n, f);
        fclose(f);
        if (vectors[i].n > SY_HEADER_SIZE && vectors[i].b[SY_HEADER_SIZE] >= 0x80 &&
            vectors[i].b[SY_HEADER_SIZE] <= 0x8f) {
            snprintf(path, sizeof path, "%s/map-%s", dir, vectors[i].name);
            if ((f = fopen(path, "wb")) == NULL) {
                perror(path);
                exit(2);
            }
            fwrite(vectors[i].b + SY_HEADER_SIZE, 1, vectors[i].n - SY_HEADER_SIZE, f);
            fclose(f);
        }
    }
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s VECTORS_FILE [--seeds DIR]\n", argv[0]);
        return 2;
    }
    load_vectors(argv[1]);
    if (argc == 4 && strcmp(argv[2], "--seeds") == 0)
        write_seeds(argv[3]);
    test_sha256();
    test_token();
    test_hello();
    test_gateway_maps();
    test_bad_frames();
    test_split();
    test_msgpack_ints();
    test_msgpack_sizes();
    test_msgpack_skip();
    test_maps_total();
    test_client_buffers();
    if (failures > 0) {
        fprintf(stderr, "FAIL: %d checks failed\n", failures);
        return 1;
    }
    printf("ok: %zu vectors, all unit checks passed\n", nvectors);
    return 0;
}
