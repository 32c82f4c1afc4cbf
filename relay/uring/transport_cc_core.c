/* transport_cc_core: see transport_cc_core.h. */
#include <math.h>

#include "rtp_extensions.h"
#include "transport_cc_core.h"

/* Offset of the value of element ext_id (2 bytes or more) of the RTP packet p[0:n], or -1;
 * as relay.rtp.transport_cc.read_transport_seq reads it. */
static int number_offset(const unsigned char *p, unsigned n, unsigned ext_id)
{
    if (n < 16 || !(p[0] & 0x10))
        return -1;
    unsigned i = 12 + ((p[0] & 0x0F) << 2);
    if (i + 4 > n)
        return -1;
    unsigned profile = ((unsigned)p[i] << 8) | p[i + 1];
    unsigned end = i + 4 + ((((unsigned)p[i + 2] << 8) | p[i + 3]) << 2);
    if (end > n)
        return -1;
    return rtp_extension_value_offset(p, i + 4, end, profile, ext_id);
}

int tcc_record(struct tcc_window *w, const unsigned char *p, unsigned n, unsigned ssrc,
               double now)
{
    if (w->limit < 0)
        return 0;
    int off = number_offset(p, n, w->ext_id);
    if (off < 0)
        return 1;
    unsigned seq = ((unsigned)p[off] << 8) | p[off + 1];
    if (seq != (unsigned)(w->end & 0xFFFF) || w->end >= w->limit) {
        w->limit = -1;
        return 0;
    }
    w->times[w->end & w->mask] = now;
    w->end++;
    w->media_ssrc = ssrc;
    w->recorded++;
    return 1;
}

/* floor(a / b) for b > 0 (Python's //) */
static long long floor_div(long long a, long long b)
{
    long long q = a / b;
    return (a % b != 0 && a < 0) ? q - 1 : q;
}

int tcc_small_deltas(const double *arrivals, unsigned count, long long reference,
                     unsigned char *out)
{
    long long previous = reference * 256; /* 64 ms in 250 us ticks */
    for (unsigned i = 0; i < count; i++) {
        /* Python's round(): to nearest, ties to even, as nearbyint() in the default mode */
        long long us = (long long)nearbyint(arrivals[i] * 1e6);
        long long ticks = floor_div(us + 125, 250);
        long long delta = ticks - previous;
        if (delta < 0 || delta > 0xFF)
            return -1;
        out[i] = (unsigned char)delta;
        previous = ticks;
    }
    return 0;
}
