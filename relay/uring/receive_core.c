/* receive_core: see receive_core.h. The same rules as the Python path it stands for
 * (relay/transport/plain.py and pipe.py drains, relay/transport/base.py _route_rtp,
 * relay/worker/producer.py receive, relay/worker/stream_receiver.py on_packet), which the
 * tests compare packet by packet; everything it does not take goes back to that path. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <math.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "receive_core.h"

typedef int (*unprotect_fn)(void *ctx, void *rtp, int *len);

static unprotect_fn srtp_unprotect_fn;

void rx_set_unprotect(void *srtp_unprotect)
{
    srtp_unprotect_fn = (unprotect_fn)srtp_unprotect;
}

struct rx_batch {
    struct mmsghdr msgs[RX_BATCH];
    struct iovec iov[RX_BATCH];
    struct sockaddr_storage addrs[RX_BATCH];
    unsigned char bufs[RX_BATCH][RX_BUF_SIZE];
};

void *rx_batch_new(void)
{
    struct rx_batch *b = calloc(1, sizeof(*b));

    if (b == NULL)
        return NULL;
    for (unsigned i = 0; i < RX_BATCH; i++) {
        b->iov[i].iov_base = b->bufs[i];
        b->iov[i].iov_len = RX_BUF_SIZE;
        b->msgs[i].msg_hdr.msg_iov = &b->iov[i];
        b->msgs[i].msg_hdr.msg_iovlen = 1;
        b->msgs[i].msg_hdr.msg_name = &b->addrs[i];
    }
    return b;
}

void rx_batch_free(void *batch)
{
    free(batch);
}

int rx_receive(struct rx_transport *t)
{
    struct rx_batch *b = t->batch;

    t->count = t->next = t->record_count = t->frame_pos = t->frame_end = 0;
    if (b == NULL)
        return -EINVAL;
    for (unsigned i = 0; i < RX_BATCH; i++) {
        b->msgs[i].msg_hdr.msg_namelen = sizeof(b->addrs[i]);
        b->msgs[i].msg_hdr.msg_flags = 0;
    }
    int got = recvmmsg(t->fd, b->msgs, RX_BATCH, MSG_DONTWAIT, NULL);
    if (got < 0)
        return -errno;
    t->count = (unsigned)got;
    return got;
}

static double seconds(clockid_t clock)
{
    struct timespec ts;
    clock_gettime(clock, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

int rx_recv_stamped(int fd, unsigned char *buf, unsigned size, void *addr, unsigned *addrlen,
                    unsigned long long *key, double *arrival)
{
    struct iovec iov = { .iov_base = buf, .iov_len = size };
    union {
        struct cmsghdr align;
        unsigned char space[CMSG_SPACE(sizeof(struct timespec))];
    } control;
    struct msghdr msg = {
        .msg_name = addr, .msg_namelen = sizeof(struct sockaddr_storage),
        .msg_iov = &iov, .msg_iovlen = 1,
        .msg_control = control.space, .msg_controllen = sizeof(control.space),
    };
    ssize_t n = recvmsg(fd, &msg, MSG_DONTWAIT);

    if (n < 0)
        return -errno;
    *addrlen = msg.msg_namelen;
    *key = 0;
    if (msg.msg_namelen >= sizeof(struct sockaddr_in)
            && ((struct sockaddr *)addr)->sa_family == AF_INET) {
        const struct sockaddr_in *v4 = addr;
        *key = ((unsigned long long)ntohl(v4->sin_addr.s_addr) << 16 | ntohs(v4->sin_port)) + 1;
    }
    double now = seconds(CLOCK_MONOTONIC);
    *arrival = now;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c != NULL; c = CMSG_NXTHDR(&msg, c)) {
        if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_TIMESTAMPNS) {
            struct timespec ts;
            memcpy(&ts, CMSG_DATA(c), sizeof(ts));
            /* the stamp is on the real-time clock: how long ago, moved to the monotonic */
            double waited = seconds(CLOCK_REALTIME)
                - ((double)ts.tv_sec + (double)ts.tv_nsec * 1e-9);
            if (waited > 0.0)
                *arrival = now - waited;
        }
    }
    return (int)n;
}

unsigned char *rx_packet(struct rx_transport *t, unsigned index)
{
    struct rx_batch *b = t->batch;
    return b != NULL && index < RX_BATCH ? b->bufs[index] : NULL;
}

int rx_source(struct rx_transport *t, unsigned index, void *out, unsigned size)
{
    struct rx_batch *b = t->batch;

    if (b == NULL || index >= t->count)
        return -1;
    unsigned len = b->msgs[index].msg_hdr.msg_namelen;
    if (len > size)
        len = size;
    memcpy(out, &b->addrs[index], len);
    return (int)len;
}

int rx_set_remote(struct rx_transport *t, const char *ip, int port, unsigned flowinfo,
                  unsigned scope_id)
{
    memset(t->remote_addr, 0, sizeof(t->remote_addr));
    t->has_remote = 0;
    if (port < 0 || port > 65535)
        return -1;
    if (inet_pton(AF_INET, ip, t->remote_addr) == 1)
        t->remote_family = AF_INET;
    else if (inet_pton(AF_INET6, ip, t->remote_addr) == 1)
        t->remote_family = AF_INET6;
    else
        return -1;
    t->remote_port = htons((unsigned short)port);
    t->remote_flowinfo = flowinfo;
    t->remote_scope = scope_id;
    t->has_remote = 1;
    return 0;
}

/* the datagram came from the remote (Python: addr == the remote's tuple) */
static int from_remote(const struct rx_transport *t, const struct sockaddr_storage *a)
{
    if (!t->has_remote || a->ss_family != t->remote_family)
        return 0;
    if (a->ss_family == AF_INET) {
        const struct sockaddr_in *v4 = (const struct sockaddr_in *)a;
        return v4->sin_port == t->remote_port
            && memcmp(&v4->sin_addr, t->remote_addr, 4) == 0;
    }
    const struct sockaddr_in6 *v6 = (const struct sockaddr_in6 *)a;
    return v6->sin6_port == t->remote_port && memcmp(&v6->sin6_addr, t->remote_addr, 16) == 0
        && ntohl(v6->sin6_flowinfo) == t->remote_flowinfo
        && v6->sin6_scope_id == t->remote_scope;
}

static inline unsigned table_slot(unsigned ssrc)
{
    return (ssrc * 2654435761u) >> 26; /* 6 bits: RX_TABLE_SIZE 64 */
}

void rx_table_clear(struct rx_transport *t)
{
    memset(t->table, 0, sizeof(t->table));
}

int rx_table_add(struct rx_transport *t, unsigned ssrc, struct rx_stream *stream)
{
    unsigned used = 0;

    for (unsigned i = 0; i < RX_TABLE_SIZE; i++)
        used += t->table[i].stream != NULL;
    if (used >= RX_TABLE_SIZE / 2 || stream == NULL)
        return -1;
    for (unsigned i = table_slot(ssrc);; i = (i + 1) & (RX_TABLE_SIZE - 1)) {
        if (t->table[i].stream == NULL || t->table[i].ssrc == ssrc) {
            t->table[i].ssrc = ssrc;
            t->table[i].stream = stream;
            return 0;
        }
    }
}

static struct rx_stream *table_get(const struct rx_transport *t, unsigned ssrc)
{
    for (unsigned i = table_slot(ssrc);; i = (i + 1) & (RX_TABLE_SIZE - 1)) {
        if (t->table[i].stream == NULL)
            return NULL;
        if (t->table[i].ssrc == ssrc)
            return t->table[i].stream;
    }
}

/* relay.rtp.packet.rtp_payload_offset */
static int payload_offset(const unsigned char *p, unsigned n)
{
    if (n < 12 || p[0] >> 6 != 2)
        return -1;
    unsigned offset = 12 + ((p[0] & 0x0Fu) << 2);
    if (p[0] & 0x10) {
        if (offset + 4 > n)
            return -1;
        offset += 4 + ((((unsigned)p[offset + 2] << 8) | p[offset + 3]) << 2);
    }
    if (offset > n)
        return -1;
    if (p[0] & 0x20) {
        unsigned padding = p[n - 1];
        if (padding == 0 || offset + padding > n)
            return -1;
    }
    return (int)offset;
}

/* relay.rtp.keyframe.is_vp8_keyframe of payload[0:n] */
static int is_vp8_keyframe(const unsigned char *payload, unsigned n)
{
    if (n < 2)
        return 0;
    unsigned b0 = payload[0];
    if ((b0 & 0x17) != 0x10)
        return 0;
    unsigned pos = 1;
    if (b0 & 0x80) {
        unsigned x = payload[1];
        pos = 2;
        if (x & 0x80) {
            if (pos >= n)
                return 0;
            pos += payload[pos] & 0x80 ? 2 : 1;
        }
        if (x & 0x40)
            pos++;
        if (x & 0x30)
            pos++;
    }
    return pos < n && !(payload[pos] & 0x01);
}

/* The TID of a VP8 payload descriptor (RFC 7741 4.2; 0 without one), walked as
 * StreamReceiver._vp8_frame_start does; n >= 2. */
static unsigned vp8_tid(const unsigned char *payload, unsigned n)
{
    unsigned pos = 1;
    if (!(payload[0] & 0x80))
        return 0;
    unsigned x = payload[pos++];
    if ((x & 0x80) && pos < n)
        pos += payload[pos] & 0x80 ? 2 : 1;
    if (x & 0x40)
        pos++;
    if ((x & 0x20) && pos < n)
        return payload[pos] >> 6;
    return 0;
}

/* ReceiveStats.on_packet's fast path (started, 0 < seq - max_seq < MAX_DROPOUT, not a
 * retransmission): the caller checked the first two. Same double arithmetic as Python's. */
void rx_stats_packet(struct rx_stream *s, unsigned seq, unsigned ts, double now, unsigned n)
{
    if (seq < s->st_max_seq)
        s->st_cycles += 65536;
    s->st_max_seq = seq;
    double transit = now * s->clock_rate - (double)ts;
    if (s->st_has_transit) {
        double d = transit - s->st_last_transit;
        if (d < 0)
            d = -d;
        if (d >= 2147483648.0) {
            /* abs((d + 2**31) % 2**32 - 2**31), d >= 0 here, so fmod is Python's % */
            d = fmod(d + 2147483648.0, 4294967296.0) - 2147483648.0;
            if (d < 0)
                d = -d;
        }
        s->st_jitter += (d - s->st_jitter) / 16;
    }
    s->st_last_transit = transit;
    s->st_has_transit = 1;
    s->st_received++;
    s->st_bytes += n;
}

void rx_store_put(struct rx_store *s, unsigned seq, const unsigned char *packet, unsigned n,
                  double now)
{
    long long ext;

    seq &= 0xFFFF;
    if (n > s->slot_size)
        return; /* never: the transport's max RTP size is the slot size */
    if (s->highest < 0) {
        ext = s->highest = (long long)seq + 65536;
    } else {
        long long delta = (long long)((seq - (unsigned)s->highest) & 0xFFFF);
        if (delta >= 0x8000) {
            delta -= 0x10000;
            if (delta <= -(long long)s->capacity)
                return;
        }
        ext = s->highest + delta;
        if (delta > 0)
            s->highest = ext;
    }
    unsigned slot = (unsigned)(ext % s->capacity);
    s->seqs[slot] = ext;
    s->times[slot] = now;
    s->lens[slot] = n;
    memcpy(s->data + (size_t)slot * s->slot_size, packet, n);
    s->stored++;
}

int rx_store_get(struct rx_store *s, unsigned seq, double now, unsigned char *out,
                 unsigned size)
{
    if (s->highest < 0) {
        s->not_stored++;
        return -1;
    }
    long long delta = (long long)((seq - (unsigned)s->highest) & 0xFFFF);
    if (delta >= 0x8000)
        delta -= 0x10000;
    long long ext = s->highest + delta;
    if (ext > s->highest) {
        s->not_stored++;
        return -1;
    }
    if (ext <= s->highest - (long long)s->capacity) {
        s->evicted++;
        return -1;
    }
    unsigned slot = (unsigned)(ext % s->capacity);
    if (s->seqs[slot] != ext) {
        s->not_stored++;
        return -1;
    }
    if (now - s->times[slot] > s->max_age) {
        s->seqs[slot] = -1;
        s->too_old++;
        return -1;
    }
    unsigned n = s->lens[slot];
    if (n > size)
        return -1;
    memcpy(out, s->data + (size_t)slot * s->slot_size, n);
    s->hits++;
    return (int)n;
}

void rx_store_clear(struct rx_store *s)
{
    for (unsigned i = 0; i < s->capacity; i++)
        s->seqs[i] = -1;
    s->highest = -1;
}

unsigned rx_store_count(const struct rx_store *s)
{
    unsigned count = 0;
    for (unsigned i = 0; i < s->capacity; i++)
        count += s->seqs[i] >= 0;
    return count;
}

/* The RTP packet p[0:*np] from the remote (a datagram, or a frame of a batched one, at
 * `at` in the batch's buffers): RX_DONE when taken whole, else what Python must do (*np is
 * then its length, decrypted for RX_ROUTE). */
static int take_packet(struct rx_transport *t, unsigned char *p, unsigned *np, unsigned at,
                       double now)
{
    unsigned n = *np;

    if (n < 12)
        return RX_RAW;
    unsigned pt = p[1] & 0x7F;
    if (pt >= 64 && pt <= 95) /* RTCP (RFC 5761) */
        return RX_RAW;
    if (t->srtp != NULL) {
        int len = (int)n;
        /* the trailer's room: the buffer is RX_BUF_SIZE, n at most that */
        int rc = srtp_unprotect_fn ? srtp_unprotect_fn(t->srtp, p, &len) : -1;
        if (rc) {
            t->srtp_failures++;
            t->srtp_last_error = rc;
            return RX_DONE;
        }
        t->srtp_packets++;
        n = *np = (unsigned)len;
    } else if (t->srtp_required) {
        return RX_RAW;
    }
    /* decrypted: from here on Python continues at _route_rtp */
    if (n > t->max_rtp_size) {
        t->too_large++;
        return RX_DONE;
    }
    int offset = payload_offset(p, n);
    if (offset < 0) {
        t->malformed++;
        return RX_DONE;
    }
    unsigned ssrc = ((unsigned)p[8] << 24) | ((unsigned)p[9] << 16) | ((unsigned)p[10] << 8)
                    | p[11];
    struct rx_stream *s = table_get(t, ssrc);
    if (s == NULL || !s->fast || !s->known_pt[p[1] & 0x7F])
        return RX_ROUTE;
    unsigned seq = ((unsigned)p[2] << 8) | p[3];
    unsigned ts = ((unsigned)p[4] << 24) | ((unsigned)p[5] << 16) | ((unsigned)p[6] << 8) | p[7];
    /* InputStream.update: the newest of the stream (an older one goes to Python) */
    unsigned delta = (seq - s->in_max_seq) & 0xFFFF;
    if (!s->in_started || delta == 0 || delta >= 0x8000)
        return RX_ROUTE;
    /* ReceiveStats' fast path */
    unsigned udelta = (seq - s->st_max_seq) & 0xFFFF;
    if (!s->st_started || udelta == 0 || udelta >= 3000)
        return RX_ROUTE;
    /* NackGenerator.on_packet for the next packet: nothing to NACK; with entries pending,
     * none of them becomes too old (Python drops those and may ask for a key frame) */
    if (s->nack && (s->nack_newest < 0 || ((seq - (unsigned)s->nack_newest) & 0xFFFF) != 1
                    || (s->nack_busy
                        && s->nack_oldest < s->nack_newest + 1 - s->nack_max_age)))
        return RX_ROUTE;
    if (s->vp8 && is_vp8_keyframe(p + offset, n - (unsigned)offset))
        return RX_ROUTE;

    /* taken: the state changes Python's path would make, in its order */
    t->rtp_packets++;
    t->rtp_bytes += n;
    if (t->record_feedback && !tcc_record(&t->tcc, p, n, ssrc, now)
        && t->record_count < RX_BATCH) { /* (rx_next stops before it is full) */
        t->record_offset[t->record_count] = at;
        t->record_length[t->record_count] = n;
        t->record_ssrc[t->record_count] = ssrc;
        t->record_count++;
    }
    s->packets++;
    s->bytes += n;
    s->in_max_seq = seq;
    s->in_max_ts = ts;
    s->in_last_time = now;
    rx_stats_packet(s, seq, ts, now, n);
    if (s->vp8) {  /* StreamReceiver.on_packet: the bytes of each temporal layer */
        if ((long long)ts != s->frame_ts && offset > 0 && (unsigned)offset + 1 < n) {
            s->frame_ts = ts;
            s->frame_tid = vp8_tid(p + offset, n - (unsigned)offset);
        }
        s->tid_bytes[s->frame_tid & 3] += n;
    }
    if (s->store != NULL)
        rx_store_put(s->store, seq, p, n, now);
    if (s->nack)
        s->nack_newest++;
    if (s->ngroups) {
        int sends = fc_fan_out(t->ring, s->groups, s->ngroups, p, n, seq, ts, 0, 0,
                               n - (unsigned)offset, now);
        if (sends >= FC_MALFORMED) {
            s->malformed_extensions++;
            sends -= FC_MALFORMED;
        }
        int queued = sends & FC_STREAM_QUEUED;
        t->sends += sends & ~FC_STREAM_QUEUED;
        if (queued)
            return RX_QUEUED;
    }
    return RX_DONE;
}

/* The next frame of the batched datagram i (t->frame_pos on): RX_DONE when it and the rest
 * were taken whole (or dropped as malformed), else as take_packet, with t->event_offset set. */
static int take_frames(struct rx_transport *t, struct rx_batch *b, unsigned i, double now)
{
    unsigned char *p = b->bufs[i];

    while (t->frame_pos < t->frame_end) {
        unsigned pos = t->frame_pos;
        unsigned n = pos + 2 <= t->frame_end ? ((unsigned)p[pos] << 8) | p[pos + 1] : 0;
        if (n == 0 || pos + 2 + n > t->frame_end) {
            t->malformed++; /* a cut frame: the rest of the datagram goes with it */
            t->frame_pos = t->frame_end;
            break;
        }
        t->frame_pos = pos + 2 + n;
        if (p[pos + 2] < 0x80) { /* a batch in a batch: the rest goes with it too */
            t->malformed++;
            t->frame_pos = t->frame_end;
            break;
        }
        t->batched_packets++;
        int kind = take_packet(t, p + pos + 2, &n, i * RX_BUF_SIZE + pos + 2, now);
        if (kind != RX_DONE) {
            t->event = i;
            t->event_offset = pos + 2;
            t->event_length = n;
            return kind;
        }
        if (t->record_count == RX_BATCH && t->frame_pos < t->frame_end)
            return RX_MORE;
    }
    return RX_DONE;
}

int rx_next(struct rx_transport *t, double now)
{
    struct rx_batch *b = t->batch;

    if (b == NULL)
        return RX_DONE;
    if (t->frame_pos < t->frame_end) { /* the rest of a batched datagram */
        int kind = take_frames(t, b, t->next - 1, now);
        if (kind != RX_DONE)
            return kind;
    }
    while (t->next < t->count) {
        if (t->record_count == RX_BATCH)
            return RX_MORE;
        unsigned i = t->next++;
        unsigned char *p = b->bufs[i];
        unsigned n = b->msgs[i].msg_len;
        int kind;
        if (!t->enabled || n == 0 || n > RX_BUF_SIZE || !from_remote(t, &b->addrs[i])) {
            kind = RX_RAW;
        } else if (t->batched && p[0] < 0x80) {
            t->batched_datagrams++;
            t->frame_pos = 0;
            t->frame_end = n;
            kind = take_frames(t, b, i, now);
            if (kind != RX_DONE)
                return kind;
            continue;
        } else {
            kind = take_packet(t, p, &n, i * RX_BUF_SIZE, now);
        }
        if (kind != RX_DONE) {
            t->event = i;
            t->event_offset = 0;
            t->event_length = n;
            return kind;
        }
    }
    return RX_DONE;
}
