/* transport_cc_core: the per-packet and per-arrival loops of the transport-cc receiver
 * (relay.rtp.transport_cc.TransportCcReceiver), in C.
 *
 * Python keeps the receiver and its rules (reordering, loss, gaps, culling, the feedback's
 * chunks); the receive core records the common arrival, the next number in order, into the
 * receiver's own table while the receiver lends it (TransportCcReceiver.lend), and the bulk
 * feedback encoder computes its deltas here (relay.rtp.transport_cc.small_deltas is the
 * reference the tests compare). Measured: docs/performance.md, "Congestion feedback in C".
 */
#ifndef RELAY_TRANSPORT_CC_CORE_H
#define RELAY_TRANSPORT_CC_CORE_H

/* A receiver's table as lent to C: while limit >= 0, the arrival of the packet whose
 * transport-wide number is end's low 16 bits goes to times[end & mask] and end advances,
 * as long as end < limit. */
struct tcc_window {
    double *times;
    unsigned mask;
    unsigned ext_id;              /* the number's header-extension element (1..255) */
    long long end;
    long long limit;              /* -1: not lent */
    unsigned media_ssrc;          /* of the last packet recorded here */
    unsigned recorded;            /* since Python last took the table back */
};

/* The RTP packet p[0:n] (header checked by the caller): 1 when handled here (recorded, or
 * it carries no number, which the receiver ignores too), 0 when Python must record it (not
 * the next number, or no room: the table is taken away, limit = -1, so every later packet
 * goes to Python too and the order of arrivals is kept). */
int tcc_record(struct tcc_window *w, const unsigned char *p, unsigned n, unsigned ssrc,
               double now);

/* small_deltas(): out[i] = arrival i's delta from the previous one (from reference, in
 * 64 ms units, for the first) in 250 us ticks. 0, or -1 when one is not a small delta. */
int tcc_small_deltas(const double *arrivals, unsigned count, long long reference,
                     unsigned char *out);

#endif
