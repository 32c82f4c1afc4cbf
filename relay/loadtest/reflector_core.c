/* See reflector_core.h. Every syscall's result is checked; nothing here allocates. */
#define _GNU_SOURCE
#include "reflector_core.h"
#include "traffic_core.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/udp.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>

#ifndef UDP_SEGMENT
#define UDP_SEGMENT 103
#endif

#define IN_BATCH 64             /* datagrams per recvmmsg; also the most segments per send */
#define IN_BUF 1600
#define OUT_BATCH 1024          /* messages per sendmmsg */
#define GSO_MAX_BYTES 65000     /* one UDP datagram before segmentation */
#define MAX_INPUTS 1024
#define MAX_ROUNDS 16           /* recvmmsg rounds per input before the next input's turn */

static unsigned char in_bufs[IN_BATCH][IN_BUF];
static struct mmsghdr in_msgs[IN_BATCH];
static struct iovec in_iovs[IN_BATCH];
static struct mmsghdr out_msgs[OUT_BATCH];
static int out_segs[OUT_BATCH];
static union {
    char buf[CMSG_SPACE(sizeof(uint16_t))];
    struct cmsghdr align;
} out_ctl[OUT_BATCH];
static struct pollfd pfds[MAX_INPUTS];

/* Send out_msgs[0 .. n); a refused message is counted and skipped. */
static void flush(int out_fd, int n, struct lt_reflect_stats *st)
{
    int off = 0;
    while (off < n) {
        int rc = sendmmsg(out_fd, out_msgs + off, (unsigned)(n - off), 0);
        if (rc < 0) {
            if (errno == EINTR)
                continue;
            if ((errno == EIO || errno == EINVAL) && out_segs[off] > 1)
                st->gso = 0; /* no GSO here: later runs go datagram by datagram */
            st->send_errors++;
            off++;
            continue;
        }
        for (int k = off; k < off + rc; k++)
            st->sent += out_segs[k];
        st->sends += rc;
        off += rc;
    }
}

/* Queue one message: segs datagrams from in_iovs[first ..], to dst. */
static int queue(int q, int first, int segs, const unsigned char *dst, int out_fd,
                 struct lt_reflect_stats *st)
{
    struct msghdr *h = &out_msgs[q].msg_hdr;
    memset(h, 0, sizeof *h);
    h->msg_name = (void *)dst;
    h->msg_namelen = sizeof(struct sockaddr_in);
    h->msg_iov = &in_iovs[first];
    h->msg_iovlen = (size_t)segs;
    if (segs > 1) {
        h->msg_control = out_ctl[q].buf;
        h->msg_controllen = sizeof out_ctl[q].buf;
        struct cmsghdr *c = CMSG_FIRSTHDR(h);
        c->cmsg_level = SOL_UDP;
        c->cmsg_type = UDP_SEGMENT;
        c->cmsg_len = CMSG_LEN(sizeof(uint16_t));
        uint16_t size = (uint16_t)in_iovs[first].iov_len;
        memcpy(CMSG_DATA(c), &size, sizeof size);
    }
    out_segs[q] = segs;
    if (++q == OUT_BATCH) {
        flush(out_fd, q, st);
        q = 0;
    }
    return q;
}

/* Forward the got datagrams in in_bufs to dsts[d0 .. d1): runs of equal-sized datagrams
 * (the last of a run may be shorter, as GSO allows) go as one segmented send each. */
static void forward(int got, const unsigned char *dsts, int d0, int d1, int out_fd,
                    struct lt_reflect_stats *st)
{
    int q = 0;
    int first = 0;
    while (first < got) {
        int segs = 1;
        if (st->gso) {
            size_t size = in_iovs[first].iov_len;
            size_t most = size ? GSO_MAX_BYTES / size : 1;
            while (first + segs < got && (size_t)segs < most) {
                size_t next = in_iovs[first + segs].iov_len;
                if (next > size || next == 0) /* an empty tail segment is not sent */
                    break;
                segs++;
                if (next < size)
                    break;
            }
        }
        for (int d = d0; d < d1; d++)
            q = queue(q, first, segs, dsts + (size_t)d * LT_ADDR_SIZE, out_fd, st);
        first += segs;
    }
    flush(out_fd, q, st);
}

int lt_reflect(const int *in_fds, int nin, const int *dst_offsets,
               const unsigned char *dsts, int out_fd, int timeout_ms,
               struct lt_reflect_stats *st)
{
    if (nin > MAX_INPUTS)
        return -EINVAL;
    for (int i = 0; i < nin; i++) {
        pfds[i].fd = in_fds[i];
        pfds[i].events = POLLIN;
        pfds[i].revents = 0;
    }
    int ready = poll(pfds, (nfds_t)nin, timeout_ms);
    if (ready < 0)
        return errno == EINTR ? 0 : -errno;
    for (int i = 0; i < nin && ready > 0; i++) {
        if (!(pfds[i].revents & POLLIN))
            continue;
        for (int round = 0; round < MAX_ROUNDS; round++) {
            for (int k = 0; k < IN_BATCH; k++) {
                in_iovs[k].iov_base = in_bufs[k];
                in_iovs[k].iov_len = IN_BUF;
                memset(&in_msgs[k].msg_hdr, 0, sizeof in_msgs[k].msg_hdr);
                in_msgs[k].msg_hdr.msg_iov = &in_iovs[k];
                in_msgs[k].msg_hdr.msg_iovlen = 1;
            }
            int got = recvmmsg(in_fds[i], in_msgs, IN_BATCH, MSG_DONTWAIT, NULL);
            if (got <= 0)
                break;
            for (int k = 0; k < got; k++)
                in_iovs[k].iov_len = in_msgs[k].msg_len;
            st->received += got;
            forward(got, dsts, dst_offsets[i], dst_offsets[i + 1], out_fd, st);
            if (got < IN_BATCH)
                break;
        }
    }
    return 0;
}
