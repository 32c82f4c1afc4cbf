/* relay-loadtest's traffic core: paced RTP generation with sendmmsg, recvmmsg sinks that
 * count per consumer and measure one-way latency. Python drives it through cffi (see
 * _build.py); the self-test's reflector is in reflector_core.c. */
#ifndef LT_TRAFFIC_CORE_H
#define LT_TRAFFIC_CORE_H

#include <stdint.h>

#define LT_ADDR_SIZE 16
#define LT_HIST_BUCKETS 100000
#define LT_MAGIC 0x524c5431
#define LT_STAMP_SIZE 24
#define LT_VP8_PREFIX 2

/* libsrtp's srtp_protect / srtp_unprotect (srtp_t, buffer, in/out length). */
typedef int (*lt_srtp_fn)(void *ctx, void *buf, int *len);

/* One synthetic producer stream. fd and srtp are per stream: plain transports share the
 * generator's socket and key; with WebRTC each stream goes out on its transport's own
 * socket (the tuple ICE validated) under that transport's DTLS-exported key. */
struct lt_stream {
    int fd;
    uint32_t ssrc;
    uint8_t payload_type;
    uint8_t ext_id;
    uint8_t vp8;            /* 1: a VP8 payload descriptor precedes the stamp */
    uint8_t keyframe_interval;
    uint16_t stream_id;
    uint16_t size;
    uint16_t seq;
    uint32_t timestamp;
    uint32_t ts_step;
    uint32_t index;
    int64_t sent;
    int64_t frames;
    int64_t bytes;
    int64_t send_errors;
    void *srtp;             /* srtp_t, or NULL for clear RTP */
    unsigned char addr[16];
    /* transport-cc: the send transport's transport-wide sequence number, shared by the
     * streams of one transport and written (one-byte header extension element tcc_ext_id,
     * 2 bytes) into every packet; NULL: no such extension */
    uint16_t *tcc_seq;
    uint8_t tcc_ext_id;
};

struct lt_sink {
    uint32_t step_id;
    int nstreams;
    int nsinks;
    int nconsumers;
    uint32_t bits_mask;
    uint32_t bits_shift;
    int payload_skip;       /* bytes before the stamp (2 for VP8) */
    const int32_t *consumer_map;
    int64_t *per_consumer;
    int64_t *late_per_consumer; /* arrived later than late_after_ns */
    int64_t late_after_ns;
    int64_t late;
    uint64_t *bitmaps;
    uint32_t *hist;
    int64_t received;
    int64_t bytes;
    int64_t duplicates;
    int64_t stale;
    int64_t malformed;
    int64_t rtcp;
    int64_t rtcp_senders;   /* of which on send sockets: the worker's feedback to producers */
    int64_t tcc_feedback;   /* of those, transport-cc feedback (RTPFB FMT 15) */
    int64_t stun;           /* STUN (RFC 7983 first byte 0..3): consent-check answers */
    int64_t stun_errors;    /* of which error responses */
    int64_t dtls;           /* DTLS records (first byte 20..63), e.g. a retransmitted flight */
    int64_t unknown;
    int64_t srtp_failures;
    int64_t latency_max_ns;
    int64_t latency_sum_ns;
    int64_t recv_calls;
    int64_t kernel_timestamps;
    void **srtp;            /* per sink (nsinks entries) */
    int *fds;               /* nsinks sinks, then ncontrol send sockets */
    int ncontrol;           /* send sockets, drained only for STUN/DTLS/RTCP */
};

int64_t lt_now_ns(void);
int lt_enable_rx_timestamps(int fd);
int lt_make_addr(const char *ip, int port, unsigned char *out);
int lt_generate(struct lt_stream *streams, int n, int64_t t0_ns, int64_t now_ns,
                double rate_per_stream, double fps, uint32_t step_id, lt_srtp_fn protect);
int64_t lt_drain(struct lt_sink *st, int epfd, int timeout_ms, lt_srtp_fn unprotect);
int lt_epoll_create(void);
int lt_epoll_add(int epfd, int fd, uint32_t tag);

#endif
