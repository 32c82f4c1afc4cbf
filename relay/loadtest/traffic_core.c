/* See traffic_core.h. Every syscall's result is checked; nothing here allocates. */
#define _GNU_SOURCE
#include "traffic_core.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BATCH 64
#define BUF_SIZE 1600
#define MAX_PACKETS_PER_CALL 4096

static unsigned char g_bufs[BATCH][BUF_SIZE];
static struct mmsghdr g_msgs[BATCH];
static struct iovec g_iovs[BATCH];
static union {
    char buf[CMSG_SPACE(sizeof(struct timespec))];
    struct cmsghdr align;
} g_ctl[BATCH];

int64_t lt_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static int64_t realtime_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* The kernel stamps each datagram as it reaches the socket (CLOCK_REALTIME), so latency
 * does not include how long the sink took to come round to it. */
int lt_enable_rx_timestamps(int fd)
{
    int on = 1;
    return setsockopt(fd, SOL_SOCKET, SO_TIMESTAMPNS, &on, sizeof on) < 0 ? -errno : 0;
}

int lt_make_addr(const char *ip, int port, unsigned char *out)
{
    struct sockaddr_in sin;
    memset(&sin, 0, sizeof sin);
    sin.sin_family = AF_INET;
    sin.sin_port = htons((uint16_t)port);
    if (port < 1 || port > 65535 || inet_pton(AF_INET, ip, &sin.sin_addr) != 1)
        return -1;
    memcpy(out, &sin, sizeof sin);
    return 0;
}

/* Write one RTP packet of stream s into buf; returns its length (before SRTP). */
static int build_packet(struct lt_stream *s, unsigned char *buf, int marker, uint32_t step_id,
                        int64_t now, int frame_start)
{
    int off = 12;
    buf[0] = 0x80;
    buf[1] = (unsigned char)((marker ? 0x80 : 0) | (s->payload_type & 0x7f));
    buf[2] = (unsigned char)(s->seq >> 8);
    buf[3] = (unsigned char)s->seq;
    uint32_t v = htonl(s->timestamp);
    memcpy(buf + 4, &v, 4);
    v = htonl(s->ssrc);
    memcpy(buf + 8, &v, 4);
    if (s->ext_id || s->tcc_seq) { /* RFC 8285 one-byte header extension elements */
        unsigned char *e = buf + 16;
        int len = 0;
        if (s->ext_id) { /* audio level: one byte */
            e[0] = (unsigned char)(s->ext_id << 4);
            e[1] = 0x90;
            len = 2;
        }
        if (s->tcc_seq) { /* transport-wide sequence number: two bytes */
            uint16_t t = (*s->tcc_seq)++;
            e[len] = (unsigned char)((s->tcc_ext_id << 4) | 1);
            e[len + 1] = (unsigned char)(t >> 8);
            e[len + 2] = (unsigned char)t;
            len += 3;
        }
        while (len & 3)
            e[len++] = 0;
        buf[0] = 0x90;
        buf[12] = 0xbe; buf[13] = 0xde; buf[14] = 0; buf[15] = (unsigned char)(len >> 2);
        off = 16 + len;
    }
    if (s->vp8) { /* RFC 7741 descriptor (S=1 at a frame's start) and a payload header byte
                     whose P bit is 0 on key frames: the first frame of a step, then every
                     keyframe_interval frames, so consumers start and never wait long */
        int key = s->keyframe_interval ? (s->frames % s->keyframe_interval) == 0 : 0;
        buf[off] = frame_start ? 0x10 : 0x00;
        buf[off + 1] = (frame_start && key) ? 0x00 : 0x01;
        off += LT_VP8_PREFIX;
    }
    uint32_t magic = LT_MAGIC, flags = s->stream_id;
    memcpy(buf + off, &magic, 4);
    memcpy(buf + off + 4, &step_id, 4);
    memcpy(buf + off + 8, &flags, 4);
    memcpy(buf + off + 12, &s->index, 4);
    memcpy(buf + off + 16, &now, 8);
    s->seq++;
    s->index++;
    return s->size;
}

static void send_batch(struct lt_stream *s, int count)
{
    int done = 0;
    while (done < count) {
        int rc = sendmmsg(s->fd, g_msgs + done, (unsigned)(count - done), 0);
        if (rc < 0) {
            if (errno == EINTR)
                continue;
            s->send_errors++; /* skip the datagram that failed, keep the rest */
            done++;
            continue;
        }
        for (int i = done; i < done + rc; i++) {
            s->sent++;
            s->bytes += g_msgs[i].msg_len;
        }
        done += rc;
    }
}

/* Queue `count` packets of s (marker on the last when `frame_end`), flushing per BATCH. */
static void send_packets(struct lt_stream *s, int count, int frame_end, uint32_t step_id,
                         lt_srtp_fn protect, int audio)
{
    int first = 1;
    while (count > 0) {
        int n = count < BATCH ? count : BATCH;
        int64_t now = realtime_ns();
        for (int i = 0; i < n; i++) {
            int marker = frame_end && i == n - 1 && count == n;
            int len = build_packet(s, g_bufs[i], marker, step_id, now, !audio && i == 0 && first);
            if (audio)
                s->timestamp += s->ts_step;
            if (s->srtp && protect) {
                int l = len;
                if (protect(s->srtp, g_bufs[i], &l) != 0) {
                    s->send_errors++;
                    l = 0;
                }
                len = l;
            }
            g_iovs[i].iov_base = g_bufs[i];
            g_iovs[i].iov_len = (size_t)len;
            memset(&g_msgs[i].msg_hdr, 0, sizeof g_msgs[i].msg_hdr);
            g_msgs[i].msg_hdr.msg_iov = &g_iovs[i];
            g_msgs[i].msg_hdr.msg_iovlen = 1;
            g_msgs[i].msg_hdr.msg_name = s->addr;
            g_msgs[i].msg_hdr.msg_namelen = sizeof(struct sockaddr_in);
        }
        send_batch(s, n);
        count -= n;
        first = 0;
    }
}

int lt_generate(struct lt_stream *streams, int n, int64_t t0_ns, int64_t now_ns,
                double rate_per_stream, double fps, uint32_t step_id, lt_srtp_fn protect)
{
    int total = 0;
    double elapsed = (double)(now_ns - t0_ns) / 1e9;
    if (elapsed < 0)
        return 0;
    for (int k = 0; k < n; k++) {
        struct lt_stream *s = &streams[k];
        if (fps <= 0) { /* audio: evenly paced, first packet at t0 */
            int64_t due = (int64_t)(elapsed * rate_per_stream) + 1 - s->sent;
            if (due > MAX_PACKETS_PER_CALL)
                due = MAX_PACKETS_PER_CALL;
            if (due > 0) {
                send_packets(s, (int)due, 0, step_id, protect, 1);
                total += (int)due;
            }
            continue;
        }
        /* video: frame j holds packets floor(j*r/fps) .. floor((j+1)*r/fps), sent as a burst.
         * Stream k's frames start k/n of a frame interval early: publishers are not in step,
         * and n streams' frames sent at the same instant queue each other's fan-out (10
         * streams at 1 -> 10: 3,700 sends in one burst, 8-11 ms of added latency at half
         * the best rate, none of it the worker's per-packet cost). */
        int64_t frames_due = (int64_t)(elapsed * fps + (double)k / n) + 1;
        int budget = MAX_PACKETS_PER_CALL;
        while (s->frames < frames_due && budget > 0) {
            int64_t a = (int64_t)((double)s->frames * rate_per_stream / fps);
            int64_t b = (int64_t)((double)(s->frames + 1) * rate_per_stream / fps);
            int count = (int)(b - a);
            if (count > 0) {
                send_packets(s, count, 1, step_id, protect, 0);
                total += count;
                budget -= count;
            }
            s->timestamp += s->ts_step;
            s->frames++;
        }
    }
    return total;
}

int lt_epoll_create(void)
{
    int fd = epoll_create1(EPOLL_CLOEXEC);
    return fd < 0 ? -errno : fd;
}

int lt_epoll_add(int epfd, int fd, uint32_t tag)
{
    struct epoll_event ev;
    memset(&ev, 0, sizeof ev);
    ev.events = EPOLLIN;
    ev.data.u32 = tag;
    return epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) < 0 ? -errno : 0;
}

/* What is not media (RFC 7983 demux by first byte, then RFC 5761 for RTCP); returns 1 if
 * the datagram was counted here. STUN and DTLS reach a WebRTC peer's socket: the answers to
 * its consent checks, and DTLS the worker may still send after the handshake. */
static int count_control(struct lt_sink *st, int sink, const unsigned char *buf, int n)
{
    if (n >= 1 && buf[0] < 4) {
        st->stun++;
        if (n >= 2 && (buf[0] & 0x01) && (buf[1] & 0x10)) /* class bits 11: error */
            st->stun_errors++;
        return 1;
    }
    if (n >= 1 && buf[0] >= 20 && buf[0] < 64) {
        st->dtls++;
        return 1;
    }
    if (n >= 2 && buf[1] >= 192 && buf[1] <= 223) { /* (S)RTCP: the worker's reports; its
                                                        header is in clear */
        st->rtcp++;
        if (sink >= st->nsinks) {
            st->rtcp_senders++;
            /* the worker sends each transport-cc feedback as its own packet */
            if (buf[1] == 205 && (buf[0] & 0x1f) == 15)
                st->tcc_feedback++;
        }
        return 1;
    }
    return 0;
}

static void count_packet(struct lt_sink *st, int sink, unsigned char *buf, int n, int64_t now,
                         lt_srtp_fn unprotect)
{
    if (count_control(st, sink, buf, n))
        return;
    if (sink >= st->nsinks) { /* a send socket: the worker sends it no media */
        st->unknown++;
        return;
    }
    void *srtp = st->srtp ? st->srtp[sink] : NULL;
    if (srtp && unprotect) {
        int l = n;
        if (unprotect(srtp, buf, &l) != 0) {
            st->srtp_failures++;
            return;
        }
        n = l;
    }
    if (n < 12 || (buf[0] >> 6) != 2) {
        st->malformed++;
        return;
    }

    int off = 12 + 4 * (buf[0] & 0x0f);
    if (buf[0] & 0x10) {
        if (off + 4 > n) {
            st->malformed++;
            return;
        }
        off += 4 + 4 * ((buf[off + 2] << 8) | buf[off + 3]);
    }
    off += st->payload_skip;
    if (off + LT_STAMP_SIZE > n) {
        st->malformed++;
        return;
    }
    uint32_t magic, step, stream, index;
    int64_t sent_at;
    memcpy(&magic, buf + off, 4);
    memcpy(&step, buf + off + 4, 4);
    memcpy(&stream, buf + off + 8, 4);
    memcpy(&index, buf + off + 12, 4);
    memcpy(&sent_at, buf + off + 16, 8);
    if (magic != LT_MAGIC) {
        st->malformed++;
        return;
    }
    if (step != st->step_id) {
        st->stale++;
        return;
    }
    stream &= 0xffff;
    int c = (int)stream < st->nstreams ? st->consumer_map[sink * st->nstreams + (int)stream] : -1;
    if (c < 0 || c >= st->nconsumers) {
        st->unknown++;
        return;
    }
    uint64_t bit = ((uint64_t)c << st->bits_shift) + (index & st->bits_mask);
    uint64_t mask = 1ULL << (bit & 63);
    if (st->bitmaps[bit >> 6] & mask) {
        st->duplicates++;
        return;
    }
    st->bitmaps[bit >> 6] |= mask;
    st->per_consumer[c]++;
    st->received++;
    st->bytes += n;
    int64_t lat = now - sent_at;
    if (lat < 0)
        lat = 0;
    int64_t bucket = lat / 1000;
    if (bucket >= LT_HIST_BUCKETS)
        bucket = LT_HIST_BUCKETS - 1;
    st->hist[bucket]++;
    st->latency_sum_ns += lat;
    if (lat > st->late_after_ns) {
        st->late++;
        st->late_per_consumer[c]++;
    }
    if (lat > st->latency_max_ns)
        st->latency_max_ns = lat;
}

int64_t lt_drain(struct lt_sink *st, int epfd, int timeout_ms, lt_srtp_fn unprotect)
{
    struct epoll_event events[64];
    int ready = epoll_wait(epfd, events, 64, timeout_ms);
    if (ready < 0)
        return errno == EINTR ? 0 : -errno;
    int64_t total = 0;
    for (int e = 0; e < ready; e++) {
        int sink = (int)events[e].data.u32;
        if (sink < 0 || sink >= st->nsinks + st->ncontrol)
            continue;
        int fd = st->fds[sink];
        for (int round = 0; round < 16; round++) {
            for (int i = 0; i < BATCH; i++) {
                g_iovs[i].iov_base = g_bufs[i];
                g_iovs[i].iov_len = BUF_SIZE;
                memset(&g_msgs[i].msg_hdr, 0, sizeof g_msgs[i].msg_hdr);
                g_msgs[i].msg_hdr.msg_iov = &g_iovs[i];
                g_msgs[i].msg_hdr.msg_iovlen = 1;
                g_msgs[i].msg_hdr.msg_control = g_ctl[i].buf;
                g_msgs[i].msg_hdr.msg_controllen = sizeof g_ctl[i].buf;
            }
            int got = recvmmsg(fd, g_msgs, BATCH, MSG_DONTWAIT, NULL);
            st->recv_calls++;
            if (got <= 0)
                break;
            int64_t now = realtime_ns();
            for (int i = 0; i < got; i++) {
                int64_t arrived = now;
                struct cmsghdr *c = CMSG_FIRSTHDR(&g_msgs[i].msg_hdr);
                for (; c; c = CMSG_NXTHDR(&g_msgs[i].msg_hdr, c)) {
                    if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_TIMESTAMPNS) {
                        struct timespec ts;
                        memcpy(&ts, CMSG_DATA(c), sizeof ts);
                        arrived = (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
                        st->kernel_timestamps++;
                        break;
                    }
                }
                count_packet(st, sink, g_bufs[i], (int)g_msgs[i].msg_len, arrived, unprotect);
            }
            total += got;
            if (got < BATCH)
                break;
        }
    }
    return total;
}
