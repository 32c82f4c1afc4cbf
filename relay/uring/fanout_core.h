/* fanout_core: the per-packet fan-out of one inbound RTP packet, in C.
 *
 * Python keeps every decision (who is active, layers, pauses, key-frame waits) and writes
 * what the packet path needs into these tables whenever it changes; fc_fan_out() then does,
 * per group, the copy and the header-extension id rewrite (or, for a group above the
 * packet's temporal layer, each consumer's skip), and per consumer its rewriter's bytes
 * 1-11 rewrite (rewriter_core.c: marker|PT, seq, timestamp, SSRC, syncing a (re)starting
 * consumer; a simulcast VP8 consumer's PictureID and TL0PICIDX), the transport-wide
 * sequence number and its send record, SRTP protect (libsrtp's srtp_protect, the one
 * pylibsrtp carries, given once to fc_set_protect) and the ring's rc_send (or, for an
 * ICE-TCP consumer or a batching pipe's, the RFC 4571 framing into a stream buffer).
 * Counters are kept per consumer for Python's stats.
 */
#ifndef RELAY_FANOUT_CORE_H
#define RELAY_FANOUT_CORE_H

#include "ring_core.h"
#include "rewriter_core.h"

/* fc_fan_out's result carries this bit when the packet's header extensions were malformed
 * (the packet was then not sent to the remaining groups). */
#define FC_MALFORMED 1073741824
/* fc_fan_out's result carries this bit when a consumer's stream buffer (ICE-TCP) went from
 * empty to holding a packet, or filled past half its capacity: the caller has the buffers
 * written (once per batch, at once past half). */
#define FC_STREAM_QUEUED 536870912
/* No longer returned (the core syncs (re)starting consumers itself); kept so a caller's
 * check stays valid. */
#define FC_NEEDS_SYNC -1
/* the longest packet fc_fan_out takes (the SRTP trailer must still fit its buffer) */
#define FC_MAX_PACKET 2028

/* One transport's transport-wide sequence numbers and what was sent with them: entry
 * (last & mask) holds the newest. Python copies the entries into its send history when it
 * reads feedback (relay.transport.send_estimation). */
struct fc_tcc {
    long long last;      /* the highest unwrapped number given (-1: none yet) */
    unsigned mask;       /* capacity - 1 (a power of two) */
    double *times;       /* send time of each number, the caller's clock */
    unsigned *sizes;     /* bytes (before SRTP) */
};

/* One SRTP session as the core sees it (owned by its Python SrtpSession). */
struct fc_srtp {
    void *ctx;           /* libsrtp's srtp_t */
    unsigned long long packets;
    unsigned long long failures;
    int last_error;
};

/* RFC 4571 framed packets (a 2-byte length before each) waiting to be written to one ICE-TCP
 * connection, or sent on a batching pipe transport (fc_stream_send); Python writes
 * buf[0:len] once per batch and sets len to 0. */
struct fc_stream {
    unsigned char *buf;
    unsigned len;
    unsigned cap;
};

/* One consumer: its output stream and where it goes. */
struct fc_consumer {
    struct fc_rewriter *rw;         /* its output stream (owned by its Python RtpRewriter) */
    int fd;
    int addressed;                  /* 0: connected socket (addr unused) */
    unsigned char addr[32];         /* RC_ADDR_SIZE, from rc_make_sockaddr */
    struct fc_srtp *srtp;           /* NULL: plain RTP */
    struct fc_tcc *tcc;             /* NULL: not numbered */
    struct fc_stream *stream;       /* not NULL: framed into it (ICE-TCP), not the ring */
    unsigned long long packets_sent;
    unsigned long long bytes_sent;
    unsigned long long payload_bytes;
    unsigned long long dropped;     /* PT not taken, older than a restart, SRTP failure */
    unsigned long long ring_drops;  /* ring full, or the stream buffer full */
    unsigned long long temporal_drops;  /* packets above its highest temporal layer */
};

/* Consumers sharing an extension-id table, a highest VP8 TID and a transport-cc id. */
struct fc_group {
    unsigned char ext_table[256];   /* old id -> new id, 0: not negotiated */
    int max_tid;                    /* 255: all */
    int tcc_id;                     /* 0: none */
    unsigned nconsumers;
    struct fc_consumer **consumers;
};

/* libsrtp's srtp_protect (srtp_err_status_t (*)(srtp_t, void *, int *), libsrtp 2.x). */
void fc_set_protect(void *srtp_protect);

/* Send packet[0:n] (input seq, ts; its SSRC is the input SSRC; older: not the newest of its
 * stream; tid: its VP8 temporal layer) to every consumer of groups whose max_tid >= tid;
 * the consumers of the other groups skip it (when it is not older). Returns the sends
 * queued, with FC_MALFORMED added when the extensions were malformed and FC_STREAM_QUEUED
 * when a stream buffer got a packet. */
int fc_fan_out(struct rc_ring *ring, const struct fc_group *groups, unsigned ngroups,
               const unsigned char *packet, unsigned n, unsigned seq, unsigned ts, int older,
               int tid, unsigned payload_size, double now);

/* A batching pipe transport's sends (relay/transport/pipe_batch.py): the frames in st go on
 * the ring to fd (addr: from rc_make_sockaddr, or NULL) in datagrams of at most max bytes,
 * in order. Two or more frames that fit go as one datagram, framed as they are (its first
 * byte, the high byte of a length under 2048, is below 0x80: never an RTP or RTCP packet's);
 * a frame alone goes as its bare packet. Then st is empty. Returns the datagrams queued;
 * adds to *batched the packets that went in datagrams of two or more, and to *dropped the
 * packets of datagrams the ring refused. */
int fc_stream_send(struct rc_ring *ring, struct fc_stream *st, int fd, const void *addr,
                   unsigned max, unsigned long long *batched, unsigned long long *dropped);

#endif
