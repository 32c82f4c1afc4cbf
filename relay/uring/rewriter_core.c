/* rewriter_core: see rewriter_core.h; the rules are in relay/uring/rewriter.py's doc. */
#include "rewriter_core.h"

#define SEQ_MASK 0xFFFFu

/* a - b as a 16-bit distance, is it 1..0x7FFF (a is after b)? */
static int seq_after(unsigned a, unsigned b)
{
    unsigned d = (a - b) & SEQ_MASK;
    return d > 0 && d < 0x8000;
}

void fc_rewriter_stop(struct fc_rewriter *rw, int stream_started, unsigned max_seq,
                      unsigned max_ts, double last_time)
{
    if (!rw->sync_required && stream_started) {
        rw->last_seq = (max_seq + rw->seq_offset) & SEQ_MASK;
        rw->last_ts = max_ts + rw->ts_offset;
        rw->last_time = last_time;
    }
    rw->sync_required = 1;
    rw->skip_seq = -1;
    rw->run_count = 0;
}

void fc_rewriter_sync(struct fc_rewriter *rw, unsigned in_ssrc, unsigned seq, unsigned ts,
                      double now)
{
    seq &= SEQ_MASK;
    if (!rw->started) {
        /* first packet ever: keep the sender's numbering (it is already random) */
        rw->seq_offset = 0;
        rw->ts_offset = 0;
        rw->started = 1;
    } else {
        rw->seq_offset = (rw->last_seq + 1 - seq) & SEQ_MASK;
        if ((long long)in_ssrc == rw->input_ssrc) {
            /* same stream: keep the offset (the pause's real time) unless that goes back */
            unsigned out_ts = ts + rw->ts_offset;
            if (out_ts - rw->last_ts >= 0x80000000u || out_ts == rw->last_ts)
                rw->ts_offset = rw->last_ts + 1 - ts;
        } else {
            /* a new stream: continue by the wall-clock time since the last packet */
            double ticks = (now - rw->last_time) * rw->clock_rate;
            unsigned long long step = 1;
            if (ticks >= 1.0)
                step = ticks < 1e18 ? (unsigned long long)ticks : 1000000000000000000ull;
            rw->ts_offset = (unsigned)(rw->last_ts + step - ts);
        }
    }
    rw->input_ssrc = in_ssrc;
    rw->sync_seq = (int)seq;
    rw->sync_required = 0;
    rw->syncs++;
}

void fc_rewriter_skip(struct fc_rewriter *rw, unsigned seq)
{
    seq &= SEQ_MASK;
    if (rw->sync_required)
        return;
    if (rw->run_count && rw->skip_seq >= 0 && ((seq - (unsigned)rw->skip_seq) & SEQ_MASK) == 1) {
        /* the same run of skips: nothing was sent in between */
        rw->run_seq[(rw->run_first + rw->run_count - 1) % FC_SKIP_RUNS] = seq;
    } else {
        if (rw->run_count == FC_SKIP_RUNS) {
            rw->run_first = (rw->run_first + 1) % FC_SKIP_RUNS; /* forget the oldest */
            rw->run_count--;
        }
        unsigned i = (rw->run_first + rw->run_count) % FC_SKIP_RUNS;
        rw->run_seq[i] = seq;
        rw->run_offset[i] = rw->seq_offset;
        rw->run_count++;
    }
    rw->seq_offset = (rw->seq_offset - 1) & SEQ_MASK;
    rw->skip_seq = (int)seq;
}

int fc_rewriter_input_seq(const struct fc_rewriter *rw, unsigned out_seq)
{
    unsigned n = rw->run_count;
    unsigned offset = rw->seq_offset;

    if (n == 0)
        return (int)((out_seq - offset) & SEQ_MASK);
    /* walk back through the runs: between run i-1 and run i the offset was run i's "before" */
    int after = (int)rw->run_seq[(rw->run_first + n - 1) % FC_SKIP_RUNS]; /* sent after it */
    int before = -1;                                                     /* ... and before */
    for (unsigned i = n;; i--) {
        unsigned in_seq = (out_seq - offset) & SEQ_MASK;
        if ((after < 0 || seq_after(in_seq, (unsigned)after))
            && (before < 0 || seq_after((unsigned)before, in_seq))) {
            if (after < 0 && i == 0 && n == FC_SKIP_RUNS)
                return -1; /* older than the runs remembered */
            return (int)in_seq;
        }
        if (i == 0)
            break;
        unsigned k = (rw->run_first + i - 1) % FC_SKIP_RUNS;
        before = (int)rw->run_seq[k];
        offset = rw->run_offset[k];
        after = i >= 2 ? (int)rw->run_seq[(rw->run_first + i - 2) % FC_SKIP_RUNS] : -1;
    }
    return -1;
}

int fc_rewriter_rewrite(struct fc_rewriter *rw, unsigned char *buf, unsigned in_b1,
                        unsigned in_ssrc, unsigned seq, unsigned ts, int older, double now)
{
    seq &= SEQ_MASK;
    if (rw->sync_required)
        fc_rewriter_sync(rw, in_ssrc, seq, ts, now);
    else if (older && (((seq - (unsigned)rw->sync_seq) & SEQ_MASK) >= 0x8000
                       || (rw->skip_seq >= 0
                           && ((seq - (unsigned)rw->skip_seq) & SEQ_MASK) >= 0x8000)))
        return 0; /* older than the sync point or a skip that moved the offset */
    unsigned pt = rw->payload_types[in_b1 & 0x7F];
    if (pt == FC_NO_PAYLOAD_TYPE)
        return 0;
    unsigned s = (seq + rw->seq_offset) & SEQ_MASK;
    unsigned t = ts + rw->ts_offset;
    buf[1] = (unsigned char)((in_b1 & 0x80) | pt);
    buf[2] = (unsigned char)(s >> 8);
    buf[3] = (unsigned char)s;
    buf[4] = (unsigned char)(t >> 24);
    buf[5] = (unsigned char)(t >> 16);
    buf[6] = (unsigned char)(t >> 8);
    buf[7] = (unsigned char)t;
    buf[8] = (unsigned char)(rw->ssrc >> 24);
    buf[9] = (unsigned char)(rw->ssrc >> 16);
    buf[10] = (unsigned char)(rw->ssrc >> 8);
    buf[11] = (unsigned char)rw->ssrc;
    return 1;
}

void fc_vp8_rewrite(struct fc_rewriter *rw, const unsigned char *in, unsigned char *out,
                    unsigned offset, unsigned n, int update)
{
    if (offset + 2 > n || !(in[offset] & 0x80))
        return; /* no extension byte X */
    unsigned x = in[offset + 1];
    unsigned pos = offset + 2;
    int pid_pos = -1, tl0_pos = -1, wide = 0;
    unsigned in_pid = 0, in_tl0 = 0;

    if (x & 0x80) { /* I: PictureID */
        if (pos >= n)
            return;
        pid_pos = (int)pos;
        wide = in[pos] & 0x80;
        pos += wide ? 2 : 1;
    }
    if (x & 0x40) { /* L: TL0PICIDX */
        if (pos >= n)
            return;
        tl0_pos = (int)pos;
    }
    if (pid_pos < 0 && tl0_pos < 0)
        return;
    if (wide) {
        if ((unsigned)pid_pos + 1 >= n)
            return;
        in_pid = ((in[pid_pos] & 0x7Fu) << 8) | in[pid_pos + 1];
    } else if (pid_pos >= 0) {
        in_pid = in[pid_pos] & 0x7Fu;
    }
    if (tl0_pos >= 0)
        in_tl0 = in[tl0_pos];
    if (update && rw->vp8_syncs != (long long)rw->syncs) {
        /* the first packet after a (re)start: continue from the last picture sent */
        rw->vp8_syncs = (long long)rw->syncs;
        if (rw->vp8_started) {
            if (pid_pos >= 0 && rw->last_pid >= 0)
                rw->pid_offset = ((unsigned)rw->last_pid + 1 - in_pid) & 0x7FFF;
            if (tl0_pos >= 0 && rw->last_tl0 >= 0)
                rw->tl0_offset = ((unsigned)rw->last_tl0 + 1 - in_tl0) & 0xFF;
        }
        rw->vp8_started = 1;
    }
    if (pid_pos >= 0) {
        unsigned mask = wide ? 0x7FFF : 0x7F;
        unsigned pid = (in_pid + rw->pid_offset) & mask;
        if (wide) {
            out[pid_pos] = (unsigned char)(0x80 | (pid >> 8));
            out[pid_pos + 1] = (unsigned char)pid;
        } else {
            out[pid_pos] = (unsigned char)pid;
        }
        if (update) {
            unsigned ahead = (pid - (unsigned)rw->last_pid) & mask;
            if (rw->last_pid < 0 || (ahead > 0 && ahead < (mask + 1) / 2))
                rw->last_pid = (int)pid;
        }
    }
    if (tl0_pos >= 0) {
        unsigned tl0 = (in_tl0 + rw->tl0_offset) & 0xFF;
        out[tl0_pos] = (unsigned char)tl0;
        if (update) {
            unsigned ahead = (tl0 - (unsigned)rw->last_tl0) & 0xFF;
            if (rw->last_tl0 < 0 || (ahead > 0 && ahead < 0x80))
                rw->last_tl0 = (int)tl0;
        }
    }
}
