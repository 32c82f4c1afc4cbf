/* ring_core: the C half of relay's send ring.
 *
 * One contiguous, page-aligned region of `nslots` slots of `slot_size` bytes. A slot is
 * taken from a free stack by rc_send(), filled, and queued; rc_flush() submits the queue
 * with one io_uring_enter (or one sendmmsg per socket in socket mode); rc_poll() reaps
 * completions and returns slots to the free stack. A zero-copy slot is released only on
 * its notification CQE. Everything here is single-threaded: the worker's event loop is
 * the only caller.
 *
 * No socket can hold the ring hostage. Every send carries MSG_DONTWAIT, so a send to a
 * socket whose buffer is full completes at once with -EAGAIN (counted for that fd) instead
 * of parking in the kernel with its slot. And a bounded per-fd table counts the slots each
 * fd has handed to the kernel and not got back: an fd already holding
 * min(fd_cap, free slots) of them has its next send dropped and counted (cap_drops of that
 * fd), so other fds always find a slot. Slots queued since the last submit do not count:
 * a large fan-out to one shared socket in one event-loop turn is not a stuck socket.
 */
#ifndef RELAY_RING_CORE_H
#define RELAY_RING_CORE_H

#define RC_MODE_ZEROCOPY 0
#define RC_MODE_COPY 1
#define RC_MODE_SOCKET 2

/* rc_send() results */
#define RC_QUEUED 0
#define RC_DROPPED_FULL -1
#define RC_TOO_BIG -2
#define RC_CLOSED -3
#define RC_BAD_ADDR -4

#define RC_BAD_FD -5
#define RC_DROPPED_FD_CAP -6

#define RC_MAX_ERRNO 134

/* auto (rc_set_auto_copy): an fd's sends become copy sends when the kernel copied at least
 * 3/4 of a window of this many of its zero-copy sends (IORING_NOTIF_USAGE_ZC_COPIED). */
#define RC_AUTO_WINDOW 32

/* Size of the opaque destination address rc_make_sockaddr() fills and rc_send() takes. */
#define RC_ADDR_SIZE 32

struct rc_stats {
    int mode;
    unsigned slots_total;
    unsigned slots_free;
    unsigned slots_in_flight; /* handed to the kernel, not yet released */
    unsigned slots_queued;    /* filled, waiting for the next flush */
    unsigned long long sends_queued;
    unsigned long long submits;
    unsigned long long sqes_submitted;
    unsigned long long completions;
    unsigned long long zc_notifications;
    unsigned long long zc_copied;
    unsigned long long exhaustion_drops;
    unsigned long long cqe_errors;
    unsigned long long bytes_queued;
    unsigned long long socket_send_calls;
    unsigned long long errors_by_errno[RC_MAX_ERRNO];
    unsigned long long eagain_drops;  /* sends that found their socket's buffer full */
    unsigned long long cap_drops;     /* sends refused: their fd held its share of slots */
    unsigned fd_cap;
    unsigned fd_entries;              /* fds in the per-fd table now */
    unsigned fd_table_size;
    unsigned long long fd_evictions;  /* idle fds whose counters were dropped for room */
    unsigned long long zc_sends;      /* uring modes: sends queued as SEND_ZC ... */
    unsigned long long copy_sends;    /* ... and as SEND */
    int auto_copy;                    /* rc_set_auto_copy() is on */
    unsigned auto_copy_fds;           /* fds in the table that auto switched to copy sends */
    unsigned long long auto_switches; /* fds switched since the start */
    int first_switch_fd;              /* the first switch: its fd (-1: none yet), */
    unsigned first_switch_copied;     /* and how many of its window the kernel copied */
};

/* One socket's share of the ring (rc_fd_stats, rc_fd_top). */
struct rc_fd_stats {
    int fd;
    unsigned in_flight;               /* its slots not yet released (queued or in the kernel) */
    unsigned long long eagain_drops;
    unsigned long long cap_drops;
    unsigned long long send_errors;   /* other failed sends (ECONNREFUSED, EBADF, ...) */
    int copy_sends;                   /* 1: auto switched this fd to copy sends */
};

struct rc_ring;

/* Allocate the slot region; with use_uring, also create the io_uring (sq_entries SQEs,
 * a CQ of twice the slots so notifications never overflow it). On failure returns NULL
 * and sets *err to a positive errno; *stage says what failed: 1 slot memory, 2 ring. */
struct rc_ring *rc_create(unsigned nslots, unsigned slot_size, int use_uring,
                          unsigned sq_entries, int *err, int *stage);

/* Register the slot region as fixed buffer 0 (one iovec). 0 or -errno. */
int rc_register(struct rc_ring *r);

/* Does this kernel support the opcode? 1 yes, 0 no, -errno when the probe failed. */
int rc_opcode_supported(struct rc_ring *r, int zerocopy);

/* Send one datagram through the ring from 127.0.0.1 to 127.0.0.1 and reap it, to learn
 * whether the chosen send works here. 0, or -errno from the CQE or the set-up. With
 * zerocopy, *zc_report is set to 1 when the kernel accepted usage reporting. */
int rc_self_test(struct rc_ring *r, int zerocopy, int *zc_report);

void rc_set_mode(struct rc_ring *r, int mode, int zc_report);

/* send mode "auto" in zero-copy mode with usage reports: watch each fd's notifications and
 * switch the fd to copy sends when the kernel copies anyway (see RC_AUTO_WINDOW). Its
 * zero-copy sends already in flight still release their slots on their notification. An
 * fd's decision is dropped with its entry (rc_forget_fd, or an eviction). */
void rc_set_auto_copy(struct rc_ring *r, int on);

/* How many fds auto switched to copy sends since the start (cheap: no stats copy). */
unsigned long long rc_auto_switches(struct rc_ring *r);

/* Build a destination for ip (IPv4 or IPv6 text) and port into out (RC_ADDR_SIZE bytes).
 * Returns the sockaddr length, or -1 when ip is not an address or port is out of range. */
int rc_make_sockaddr(const char *ip, int port, void *out);

/* Copy data into a free slot and queue it for addr (from rc_make_sockaddr, or NULL for a
 * connected socket). RC_QUEUED, or one of the negative RC_ results. */
int rc_send(struct rc_ring *r, int fd, const void *data, unsigned len, const void *addr);

/* Queue n datagrams with one call: datagram i is lens[i] bytes of buf, after the ones
 * before it. fds == NULL sends all on fd; dsts == NULL means connected sockets, else
 * datagram i goes to dsts + i * dst_stride (stride 0: one destination for all).
 * Returns how many were queued (the rest were dropped on exhaustion, counted), or
 * RC_TOO_BIG / RC_BAD_FD / RC_CLOSED with nothing queued. */
int rc_send_many(struct rc_ring *r, const void *buf, const unsigned *lens, unsigned n, int fd,
                 const int *fds, const void *dsts, unsigned dst_stride);

/* Submit everything queued. Returns the number of datagrams handed to the kernel. */
int rc_flush(struct rc_ring *r);

/* Datagrams queued and not yet submitted (cheap: no stats copy). */
int rc_queued(struct rc_ring *r);

/* Reap every ready completion without blocking. Returns completions reaped. */
int rc_poll(struct rc_ring *r);

/* Reap at most max completions (tests use it to watch the order of release). */
int rc_poll_max(struct rc_ring *r, unsigned max);

/* Completions ready in the CQ, not yet reaped. */
int rc_cq_ready(struct rc_ring *r);

/* An eventfd signalled when completions arrive asynchronously; -errno on failure. */
int rc_eventfd(struct rc_ring *r);

/* Stop new sends, submit what is queued, wait up to timeout_ms for every slot to come
 * back (cancelling stragglers once), and return how many are still held by the kernel. */
int rc_drain(struct rc_ring *r, unsigned timeout_ms);

/* Tear down. The slot region is unmapped only when no slot is in flight; otherwise it is
 * deliberately leaked (returns the leaked slot count) because the kernel may still read it. */
int rc_destroy(struct rc_ring *r);

void rc_get_stats(struct rc_ring *r, struct rc_stats *out);

/* At most this many slots handed to the kernel per fd (>= 1); see the top of this file. */
void rc_set_fd_cap(struct rc_ring *r, unsigned cap);

/* The counters of fd: 1 when the table knows it, 0 when not (out is zeroed). */
int rc_fd_stats(struct rc_ring *r, int fd, struct rc_fd_stats *out);

/* The socket is closing: drop its counters and auto decision. Its entry goes now, or, with
 * slots still held by the kernel, when the last of them comes back (unless a new socket
 * sends with the same number first: the entry is then that socket's). 1 if it was known. */
int rc_forget_fd(struct rc_ring *r, int fd);

/* Up to max fds with drops or errors, most drops first. Returns how many were written. */
int rc_fd_top(struct rc_ring *r, struct rc_fd_stats *out, unsigned max);

#endif
