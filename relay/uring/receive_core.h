/* receive_core: the common case of a UDP transport's inbound RTP path, in C.
 *
 * One recvmmsg() drains up to RX_BATCH datagrams into preallocated buffers; rx_next() then
 * takes each in order: RTP/RTCP demux, source check, SRTP unprotect (pylibsrtp's libsrtp,
 * as fanout_core.c protects), header validation, SSRC -> producer stream (a small table
 * Python writes), the stream's receive bookkeeping (the fields of relay.rtp.rewriter's
 * InputStream, relay.rtp.receive_stats' ReceiveStats fast path and NackGenerator's in-order
 * step, which Python's C-backed objects read and write), the retransmission store copy,
 * and fc_fan_out() to the stream's consumer groups. A batching pipe's datagram of several
 * packets (relay/transport/pipe_batch.py) is taken frame by frame, each as a datagram.
 *
 * Python keeps every decision and every rare event: rx_next() stops at the first datagram
 * it does not take whole and returns it (RX_RAW: untouched, Python handles it from the
 * start; RX_ROUTE: decrypted and validated, Python routes it), before changing any state
 * for it, so Python sees packets in arrival order and the C and Python paths stay one.
 */
#ifndef RELAY_RECEIVE_CORE_H
#define RELAY_RECEIVE_CORE_H

#include "fanout_core.h"
#include "transport_cc_core.h"

#define RX_BATCH 32
#define RX_BUF_SIZE 2048
/* SSRC table slots (a power of two): more SSRCs than half of it go to Python */
#define RX_TABLE_SIZE 64
/* rx_next's results */
#define RX_DONE 0
#define RX_RAW 1
#define RX_ROUTE 2
/* taken whole, and fc_fan_out said an ICE-TCP connection's buffer of the stream's consumers
 * wants writing (FC_STREAM_QUEUED): Python tells the connection, then goes on */
#define RX_QUEUED 3
/* nothing for Python but the feedback records, which filled their table: record, go on */
#define RX_MORE 4

/* A retransmission store (relay.rtp.nack_buffer.NackBuffer's rules, fixed-size slots). */
struct rx_store {
    unsigned capacity;
    unsigned slot_size;
    double max_age;
    long long highest;            /* -1: nothing stored */
    long long *seqs;              /* extended seq per slot, -1: empty */
    double *times;
    unsigned *lens;
    unsigned char *data;          /* capacity * slot_size */
    unsigned long long stored, hits, too_old, evicted, not_stored;
};

/* One producer stream. Python writes the first block when its state changes. */
struct rx_stream {
    int fast;                     /* C may take the stream's packets whole */
    int vp8;                      /* VP8 key frames go to Python */
    /* StreamReceiver's per-temporal-layer bytes (VP8): the TID is read once per frame */
    long long frame_ts;           /* RTP timestamp of the frame whose TID was read, -1 none */
    unsigned frame_tid;
    unsigned long long tid_bytes[4];
    unsigned char known_pt[128];
    const struct fc_group *groups;
    unsigned ngroups;
    struct rx_store *store;       /* NULL: no store */
    int nack;                     /* a NACK generator runs */
    int nack_busy;                /* it waits for packets (entries) */
    long long nack_oldest;        /* the oldest entry's extended seq (when busy) */
    long long nack_max_age;       /* its max_packet_age: older entries go, in Python */
    /* InputStream */
    int in_started;
    unsigned in_max_seq;
    unsigned in_max_ts;
    double in_last_time;
    /* ReceiveStats (the rest of it stays in Python) */
    int st_started;
    unsigned st_max_seq;
    long long st_cycles;
    long long st_received;
    long long st_bytes;
    double st_jitter;
    double st_last_transit;
    int st_has_transit;
    double clock_rate;
    /* NackGenerator._newest */
    long long nack_newest;
    /* the producer's counters, added to its Python ones */
    unsigned long long packets;
    unsigned long long bytes;
    unsigned long long malformed_extensions;
};

struct rx_entry {
    unsigned ssrc;
    struct rx_stream *stream;     /* NULL: empty */
};

struct rx_transport {
    int fd;
    struct rc_ring *ring;
    int enabled;                  /* 0: every datagram to Python */
    int has_remote;
    int remote_family;
    unsigned short remote_port;   /* network order */
    unsigned char remote_addr[16];
    unsigned remote_flowinfo;
    unsigned remote_scope;
    void *srtp;                   /* libsrtp srtp_t for unprotect; NULL: none */
    int srtp_required;            /* SRTP on but no key yet: to Python */
    int batched;                  /* the remote may batch (a pipe, fc_stream_send): a
                                   * datagram from it whose first byte is below 0x80 is a run
                                   * of RFC 4571 frames, each taken as a datagram of its own */
    unsigned max_rtp_size;
    int record_feedback;          /* congestion feedback records every packet (Python's
                                   * record() is called on the ones listed below, those
                                   * tcc did not record) */
    struct tcc_window tcc;        /* the transport-cc receiver's table while it lends it */
    struct rx_entry table[RX_TABLE_SIZE];
    /* counters Python adds to its own after each drain, then zeroes */
    unsigned long long rtp_packets;
    unsigned long long rtp_bytes;
    unsigned long long malformed;
    unsigned long long too_large;
    unsigned long long srtp_packets;
    unsigned long long srtp_failures;
    unsigned long long batched_datagrams;
    unsigned long long batched_packets;
    int srtp_last_error;
    int sends;                    /* queued by rx_next since Python last zeroed it */
    /* the batch */
    void *batch;                  /* rx_batch_new() */
    unsigned count;               /* datagrams in the batch */
    unsigned next;                /* the next one rx_next takes */
    unsigned event;               /* the one rx_next returned */
    unsigned event_offset;        /* where its packet starts in its buffer (a frame of a
                                   * batched datagram; else 0) */
    unsigned event_length;
    unsigned frame_pos;           /* the batched datagram next - 1: its next frame, */
    unsigned frame_end;           /* and its end (frame_pos == frame_end: none) */
    /* packets taken whose arrival Python must still record for feedback, in order: it
     * records them before it handles an event or ends the batch, then zeroes the count */
    unsigned record_count;
    unsigned record_offset[RX_BATCH]; /* in the batch's buffers, one after the other */
    unsigned record_length[RX_BATCH];
    unsigned record_ssrc[RX_BATCH];
};

/* libsrtp's srtp_unprotect (srtp_err_status_t (*)(srtp_t, void *, int *), libsrtp 2.x). */
void rx_set_unprotect(void *srtp_unprotect);

void *rx_batch_new(void);
void rx_batch_free(void *batch);

/* recvmmsg() up to RX_BATCH datagrams from t->fd (non-blocking). The count, or -errno. */
int rx_receive(struct rx_transport *t);

/* Take the batch's datagrams (and the frames of batched ones) from t->next on, until one
 * needs Python (RX_RAW or RX_ROUTE: t->event is its datagram's index, t->event_offset and
 * t->event_length where its packet is in rx_packet(); or RX_QUEUED, the same for a packet
 * taken), the feedback records are full (RX_MORE) or none is left (RX_DONE). */
int rx_next(struct rx_transport *t, double now);

unsigned char *rx_packet(struct rx_transport *t, unsigned index);

/* One datagram from fd (non-blocking; on a socket with SO_TIMESTAMPNS on) into buf, as
 * recvfrom(): its source into addr (room for a struct sockaddr_storage; its length into
 * *addrlen), an
 * IPv4 source also as *key (address << 16 | port, plus 1; 0 for any other family: a cache
 * key that needs no bytes object), and its arrival into *arrival, on CLOCK_MONOTONIC: when
 * the kernel received it (now, less how long it waited in the socket), or now when the kernel
 * gave no stamp. The length, or -errno. */
int rx_recv_stamped(int fd, unsigned char *buf, unsigned size, void *addr, unsigned *addrlen,
                    unsigned long long *key, double *arrival);

/* The source address of datagram index (a struct sockaddr) copied into out; its length. */
int rx_source(struct rx_transport *t, unsigned index, void *out, unsigned size);

/* The remote the transport takes packets from (ip text); 0, or -1 if ip is no address. */
int rx_set_remote(struct rx_transport *t, const char *ip, int port, unsigned flowinfo,
                  unsigned scope_id);

/* Empty the SSRC table; add one entry (0, or -1 when the table is half full). */
void rx_table_clear(struct rx_transport *t);
int rx_table_add(struct rx_transport *t, unsigned ssrc, struct rx_stream *stream);

/* The store: NackBuffer.store / get / clear. rx_store_get returns the length copied to out
 * (at most size), or -1 (counted by cause as NackBuffer does). */
void rx_store_put(struct rx_store *s, unsigned seq, const unsigned char *packet, unsigned n,
                  double now);
int rx_store_get(struct rx_store *s, unsigned seq, double now, unsigned char *out,
                 unsigned size);
void rx_store_clear(struct rx_store *s);
unsigned rx_store_count(const struct rx_store *s);

/* The ReceiveStats fast path as rx_next runs it (Python's tests compare it). */
void rx_stats_packet(struct rx_stream *s, unsigned seq, unsigned ts, double now, unsigned n);

#endif
