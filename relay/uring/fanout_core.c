/* fanout_core: see fanout_core.h. The same steps as relay.worker.fanout.fan_out (the
 * Python path, kept for the consumers this core does not take), which the tests compare
 * packet by packet. */
#include <stdint.h>
#include <string.h>

#include "fanout_core.h"
#include "rtp_extensions.h"

typedef int (*protect_fn)(void *ctx, void *rtp, int *len);

static protect_fn srtp_protect_fn;

/* room left after a packet for what srtp_protect appends (auth tag, MKI) */
#define FC_SRTP_TRAILER 20

void fc_set_protect(void *srtp_protect)
{
    srtp_protect_fn = (protect_fn)srtp_protect;
}

/* RFC 8285 element ids of buf[start:end] rewritten through table, as
 * relay.rtp.packet.rewrite_extension_ids. 0 when the element list is malformed. */
static int rewrite_extension_ids(unsigned char *buf, unsigned start, unsigned end,
                                 unsigned profile, const unsigned char *table)
{
    unsigned i = start, id, value, size;
    int one_byte = profile == 0xBEDE, more;

    while ((more = rtp_next_extension(buf, &i, end, profile, &id, &value, &size)) > 0) {
        unsigned new_id = table[id];
        unsigned header = value - (one_byte ? 1 : 2);
        if (new_id == id)
            continue;
        if (new_id == 0 || (one_byte && new_id > 14))
            memset(buf + header, 0, value + size - header);
        else
            buf[header] = (unsigned char)(one_byte ? (new_id << 4) | (buf[header] & 0x0F) : new_id);
    }
    return more == 0;
}

static inline void put16(unsigned char *p, unsigned v)
{
    p[0] = (unsigned char)(v >> 8);
    p[1] = (unsigned char)v;
}

static inline void put32(unsigned char *p, unsigned v)
{
    p[0] = (unsigned char)(v >> 24);
    p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
}

/* SRTP-protect the n = *len bytes at p in place (it grows by the trailer); 0: failed,
 * counted. */
static int protect(struct fc_consumer *c, unsigned char *p, int *len)
{
    int rc = srtp_protect_fn ? srtp_protect_fn(c->srtp->ctx, p, len) : -1;
    if (rc) {
        c->srtp->failures++;
        c->srtp->last_error = rc;
        c->dropped++;
        return 0;
    }
    c->srtp->packets++;
    return 1;
}

static inline void count_sent(struct fc_consumer *c, unsigned n, unsigned payload_size)
{
    c->packets_sent++;
    c->bytes_sent += n;
    c->payload_bytes += payload_size;
}

int fc_fan_out(struct rc_ring *ring, const struct fc_group *groups, unsigned ngroups,
               const unsigned char *packet, unsigned n, unsigned seq, unsigned ts, int older,
               int tid, unsigned payload_size, double now)
{
    /* the group's copy, and an SRTP consumer's copy (protect grows it by its trailer) */
    unsigned char out[FC_MAX_PACKET + FC_SRTP_TRAILER];
    unsigned char enc[FC_MAX_PACKET + FC_SRTP_TRAILER];
    unsigned profile = 0, ext_start = 0, ext_end = 0;
    int has_ext = packet[0] & 0x10;
    int sends = 0;
    int streamed = 0;

    if (ring == NULL || n < 12 || n > FC_MAX_PACKET)
        return 0;
    if (has_ext) {
        if (12u + ((packet[0] & 0x0Fu) << 2) + 4 > n)
            return FC_MALFORMED;
        /* the transport validated the header: the extension block fits in n */
        unsigned off = 12 + ((packet[0] & 0x0F) << 2);
        profile = ((unsigned)packet[off] << 8) | packet[off + 1];
        ext_start = off + 4;
        ext_end = ext_start + ((((unsigned)packet[off + 2] << 8) | packet[off + 3]) << 2);
        if (ext_end > n)
            return FC_MALFORMED;
    }
    unsigned in_b1 = packet[1];
    unsigned in_ssrc = ((unsigned)packet[8] << 24) | ((unsigned)packet[9] << 16)
                       | ((unsigned)packet[10] << 8) | packet[11];

    for (unsigned g = 0; g < ngroups; g++) {
        const struct fc_group *grp = &groups[g];
        if (tid > grp->max_tid) {
            /* not sent to this group: its number goes to the next packet (an older packet's
             * number was already given to a later one, or never was) */
            if (!older)
                for (unsigned k = 0; k < grp->nconsumers; k++) {
                    grp->consumers[k]->temporal_drops++;
                    fc_rewriter_skip(grp->consumers[k]->rw, seq);
                }
            continue;
        }
        memcpy(out, packet, n);
        int tcc_offset = -1;
        if (has_ext) {
            if (!rewrite_extension_ids(out, ext_start, ext_end, profile, grp->ext_table))
                return sends | streamed | FC_MALFORMED;
            if (grp->tcc_id)
                tcc_offset = rtp_extension_value_offset(out, ext_start, ext_end, profile,
                                                    (unsigned)grp->tcc_id);
        }
        for (unsigned k = 0; k < grp->nconsumers; k++) {
            struct fc_consumer *c = grp->consumers[k];
            if (!fc_rewriter_rewrite(c->rw, out, in_b1, in_ssrc, seq, ts, older, now)) {
                c->dropped++;
                continue;
            }
            if (c->rw->vp8 && payload_size <= n) /* from the input: out may hold another's */
                fc_vp8_rewrite(c->rw, packet, out, n - payload_size, n, 1);
            if (tcc_offset > 0 && c->tcc) {
                struct fc_tcc *t = c->tcc;
                long long wide = ++t->last;
                t->times[wide & t->mask] = now;
                t->sizes[wide & t->mask] = n;
                put16(out + tcc_offset, (unsigned)wide);
            }
            if (c->stream) {
                /* ICE-TCP: length prefix, then the packet (protected in place) */
                struct fc_stream *st = c->stream;
                if (st->cap - st->len < 2 + n + FC_SRTP_TRAILER) {
                    c->ring_drops++;
                    continue;
                }
                unsigned char *frame = st->buf + st->len;
                int len = (int)n;
                memcpy(frame + 2, out, n);
                if (c->srtp && !protect(c, frame + 2, &len))
                    continue;
                put16(frame, (unsigned)len);
                unsigned before = st->len;
                st->len += 2 + (unsigned)len;
                count_sent(c, n, payload_size);
                sends++;
                /* Python acts when a buffer stops being empty (a write is due at the end of
                 * the loop turn) or fills past half (write now), not on every packet */
                if (before == 0 || (before < st->cap / 2 && st->len >= st->cap / 2))
                    streamed = FC_STREAM_QUEUED;
                continue;
            }
            const unsigned char *data = out;
            int len = (int)n;
            if (c->srtp) {
                memcpy(enc, out, n);
                if (!protect(c, enc, &len))
                    continue;
                data = enc;
            }
            if (rc_send(ring, c->fd, data, (unsigned)len, c->addressed ? c->addr : NULL)
                == RC_QUEUED) {
                count_sent(c, n, payload_size);
                sends++;
            } else {
                c->ring_drops++;
            }
        }
    }
    return sends | streamed;
}

/* One datagram of fc_stream_send: frames [start, end) of st, count of them. */
static int send_run(struct rc_ring *ring, const unsigned char *buf, unsigned start,
                    unsigned end, unsigned count, int fd, const void *addr,
                    unsigned long long *batched, unsigned long long *dropped)
{
    if (count == 1) /* alone: the bare packet, as an unbatched pipe sends it */
        start += 2;
    if (rc_send(ring, fd, buf + start, end - start, addr) != RC_QUEUED) {
        *dropped += count;
        return 0;
    }
    if (count > 1)
        *batched += count;
    return 1;
}

int fc_stream_send(struct rc_ring *ring, struct fc_stream *st, int fd, const void *addr,
                   unsigned max, unsigned long long *batched, unsigned long long *dropped)
{
    const unsigned char *buf = st->buf;
    unsigned pos = 0, start = 0, count = 0;
    int sends = 0;

    while (pos + 2 <= st->len) {
        unsigned size = 2 + (((unsigned)buf[pos] << 8) | buf[pos + 1]);
        if (pos + size > st->len)
            break; /* never: the core writes whole frames */
        if (count > 0 && pos + size - start > max) {
            sends += send_run(ring, buf, start, pos, count, fd, addr, batched, dropped);
            start = pos;
            count = 0;
        }
        pos += size;
        count++;
    }
    if (count > 0)
        sends += send_run(ring, buf, start, pos, count, fd, addr, batched, dropped);
    st->len = 0;
    return sends;
}
