/*
 * fuzz_map.c — libFuzzer target for the MessagePack reader and the maps a
 * gateway sends (WELCOME, GOAWAY, ERROR) (make test-c).
 *
 * Every view a decoder returns must lie inside the input; an ERROR map
 * that decodes is written again with the writer and must decode to the
 * same code and message; skipping a value never moves past the input.
 */
#include "../switchyard.h"

#include <stdlib.h>
#include <string.h>

static void inside(struct sy_bytes b, const uint8_t *p, size_t n)
{
    if (b.n > 0 && (b.p < p || b.p > p + n || b.n > (size_t)(p + n - b.p)))
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct sy_welcome w;
    struct sy_goaway g;
    struct sy_errmsg e, e2;
    struct sy_mpr r;
    struct sy_mpw wr;
    static uint8_t out[1 << 17];
    size_t i;
    if (sy_welcome_decode(data, size, &w) == SY_OK) {
        inside(w.session, data, size);
        inside(w.resume, data, size);
        inside(w.node, data, size);
    }
    if (sy_goaway_decode(data, size, &g) == SY_OK) {
        if (g.nredirect > SY_MAX_REDIRECTS)
            abort();
        inside(g.reason, data, size);
        for (i = 0; i < g.nredirect; i++)
            inside(g.redirect[i], data, size);
    }
    if (sy_error_decode(data, size, &e) == SY_OK) {
        inside(e.message, data, size);
        sy_mpw_init(&wr, out, sizeof out);
        sy_mpw_map(&wr, 2);
        sy_mpw_cstr(&wr, "code");
        sy_mpw_int(&wr, e.code);
        sy_mpw_cstr(&wr, "message");
        sy_mpw_str(&wr, (const char *)e.message.p, e.message.n);
        if (wr.err != SY_OK || sy_error_decode(out, wr.len, &e2) != SY_OK || e2.code != e.code ||
            e2.message.n != e.message.n || (e.message.n > 0 && memcmp(e2.message.p, e.message.p, e.message.n) != 0))
            abort();
    }
    sy_mpr_init(&r, data, size);
    while (r.pos < size && sy_mpr_skip(&r, SY_MAX_DEPTH) == SY_OK) {
        if (r.pos > size)
            abort();
    }
    return 0;
}
