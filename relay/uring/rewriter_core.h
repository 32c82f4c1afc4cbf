/* rewriter_core: one consumer's output RTP stream (its SSRC, payload types and continuous
 * sequence numbers and timestamps), the only implementation of the rules in
 * relay/uring/rewriter.py's module doc. fc_fan_out applies it per packet and consumer; the
 * Python wrapper (relay.uring.rewriter.RtpRewriter) owns the struct and calls the rare
 * operations (stop on a pause, input_seq for a NACK).
 */
#ifndef RELAY_REWRITER_CORE_H
#define RELAY_REWRITER_CORE_H

#define FC_NO_PAYLOAD_TYPE 255
/* runs of skipped packets remembered to map NACKed numbers back (seconds of video) */
#define FC_SKIP_RUNS 256

struct fc_rewriter {
    unsigned ssrc;
    unsigned clock_rate;
    unsigned seq_offset;            /* mod 2^16 */
    unsigned ts_offset;             /* mod 2^32 */
    int sync_required;              /* the next packet sent (re)starts the stream */
    int started;                    /* a packet was ever sent */
    unsigned last_seq;              /* output seq and ts of the newest packet at the last stop */
    unsigned last_ts;
    double last_time;               /* ... and when it arrived */
    long long input_ssrc;           /* input SSRC of the last sync, -1 none */
    int sync_seq;                   /* input seq of the last sync */
    int skip_seq;                   /* input seq of the last skip while running, -1 none */
    unsigned long long syncs;       /* (re)starts so far (VP8 PictureIDs re-base on them) */
    /* runs of skips, oldest first from run_first (a ring): the input seq of the run's last
     * packet and the seq offset before the run */
    unsigned run_first;
    unsigned run_count;
    unsigned run_seq[FC_SKIP_RUNS];
    unsigned run_offset[FC_SKIP_RUNS];
    unsigned char payload_types[128];  /* input PT -> output PT, FC_NO_PAYLOAD_TYPE: drop */
    /* VP8 PictureID / TL0PICIDX continuity (a consumer switching simulcast streams):
     * offsets re-chosen at the first packet after each sync so the next picture is the
     * last one sent + 1 (relay/uring/vp8_rewriter.py) */
    int vp8;                        /* rewrite them (fc_fan_out calls fc_vp8_rewrite) */
    long long vp8_syncs;            /* the syncs count the offsets were chosen at, -1 none */
    unsigned pid_offset;            /* mod 2^15 */
    unsigned tl0_offset;            /* mod 2^8 */
    int last_pid;                   /* the newest output PictureID, -1 none yet */
    int last_tl0;                   /* the newest output TL0PICIDX, -1 none yet */
    int vp8_started;
};

/* The consumer stops receiving its input stream (pause, producer pause, SSRC change); the
 * stream's newest packet (if it started) is where the output got to. */
void fc_rewriter_stop(struct fc_rewriter *rw, int stream_started, unsigned max_seq,
                      unsigned max_ts, double last_time);

/* Choose the offsets for a (re)start at input packet (in_ssrc, seq, ts). */
void fc_rewriter_sync(struct fc_rewriter *rw, unsigned in_ssrc, unsigned seq, unsigned ts,
                      double now);

/* The in-order input packet seq is not sent (a temporal layer above the consumer's): the
 * next packet sent takes its output number. */
void fc_rewriter_skip(struct fc_rewriter *rw, unsigned seq);

/* The input seq of the packet sent as out_seq, across the runs of skips; -1: unknown. */
int fc_rewriter_input_seq(const struct fc_rewriter *rw, unsigned out_seq);

/* Write bytes 1-11 (marker|PT, seq, ts, SSRC) of this consumer's copy of an RTP packet in
 * buf, syncing first if due; the input packet's byte 1 (marker|PT), SSRC, seq and ts are
 * given (buf may hold another consumer's rewrite); older: not the newest of its stream.
 * Returns 1, or 0 (buf untouched) when it is not sent: a payload type the consumer does not
 * take, or older than its sync point or last skip (its number may be taken). */
int fc_rewriter_rewrite(struct fc_rewriter *rw, unsigned char *buf, unsigned in_b1,
                        unsigned in_ssrc, unsigned seq, unsigned ts, int older, double now);

/* Rewrite the VP8 payload descriptor's PictureID and TL0PICIDX: read from in[offset:n] (the
 * input packet), written to out at the same positions (in may be out). No-op for a
 * descriptor without them or a malformed one. update: the newest packet sent (0 for a
 * resend: apply the offsets, change nothing). */
void fc_vp8_rewrite(struct fc_rewriter *rw, const unsigned char *in, unsigned char *out,
                    unsigned offset, unsigned n, int update);

#endif
