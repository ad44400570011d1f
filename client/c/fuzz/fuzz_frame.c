/*
 * fuzz_frame.c — libFuzzer target for the frame decoder (make test-c).
 *
 * The input is read as a stream the way the client's receive buffer reads
 * it: frame after frame, with a max_payload taken from the first byte, and
 * once more cut in two at a point taken from the second byte. Every frame
 * the decoder returns must lie inside the input and agree with its length
 * field; both readings must return the same frames. Anything else aborts.
 */
#include "../switchyard.h"

#include <stdlib.h>
#include <string.h>

static uint8_t buf[1 << 17];

/* walk decodes frames from p[0:n] and returns how many bytes they used;
 * sums the frames' fields into *sum so two walks can be compared. */
static size_t walk(const uint8_t *p, size_t n, size_t max, uint64_t *sum, int *end)
{
    size_t off = 0;
    struct sy_frame f;
    int k;
    while ((k = sy_frame_decode(p + off, n - off, max, &f)) > 0) {
        if ((size_t)k > n - off || (size_t)k != SY_HEADER_SIZE + f.len || f.len > max ||
            f.payload != p + off + SY_HEADER_SIZE || (f.flags & ~SY_FLAG_ACK_REQUESTED) != 0)
            abort();
        *sum = *sum * 31 + f.type + f.flags + f.seq + f.len + (f.len ? f.payload[f.len - 1] : 0);
        off += (size_t)k;
    }
    if (k != SY_EINCOMPLETE && k != SY_EBADFRAME && k != SY_ETOOLARGE)
        abort();
    *end = k;
    return off;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const size_t limits[4] = {0, 64, 4096, SY_DEFAULT_MAX_FRAME};
    uint64_t whole = 0, parts = 0;
    size_t max, cut, used, used1, used2;
    int end, end2;
    if (size < 2 || size > sizeof buf)
        return 0;
    max = limits[data[0] & 3];
    cut = data[1] % (size - 1);
    data += 2;
    size -= 2;
    used = walk(data, size, max, &whole, &end);
    /* the same bytes in two pieces, through a buffer: same frames */
    memcpy(buf, data, cut);
    used1 = walk(buf, cut, max, &parts, &end2);
    if (end2 != SY_EINCOMPLETE) {
        if (used1 != used || end2 != end)
            abort();
        return 0;
    }
    memmove(buf, buf + used1, cut - used1);
    memcpy(buf + cut - used1, data + cut, size - cut);
    used2 = walk(buf, size - used1, max, &parts, &end2);
    if (used1 + used2 != used || parts != whole || end2 != end)
        abort();
    return 0;
}
