/* ring_core: see ring_core.h. Plain liburing, every return value checked. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <liburing.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "ring_core.h"

/* Added after liburing 2.3's headers (kernel 6.2); values from the kernel uapi. */
#ifndef IORING_SEND_ZC_REPORT_USAGE
#define IORING_SEND_ZC_REPORT_USAGE (1U << 3)
#endif
#ifndef IORING_NOTIF_USAGE_ZC_COPIED
#define IORING_NOTIF_USAGE_ZC_COPIED (1U << 31)
#endif
#ifndef IORING_ASYNC_CANCEL_ANY
#define IORING_ASYNC_CANCEL_ANY (1U << 2)
#endif

#define SLOT_FREE 0
#define SLOT_QUEUED 1
#define SLOT_IN_FLIGHT 2

/* user_data: the slot index in the low 32 bits, a tag in the high ones. */
#define TAG_SEND 1ULL
#define TAG_INTERNAL 2ULL
#define UD(tag, slot) (((tag) << 32) | (uint64_t)(slot))

struct rc_slot_addr {
    union {
        struct sockaddr_in v4;
        struct sockaddr_in6 v6;
    } sa;
    socklen_t len;
};

/* One fd's entry in the per-fd table. */
struct rc_fdent {
    int fd;           /* -1: unused */
    uint32_t slots;   /* its slots not yet released: queued, or held by the kernel */
    uint32_t pending; /* of those, queued since submit number `gen` (not handed over yet) */
    uint32_t gen;
    uint64_t eagain_drops;
    uint64_t cap_drops;
    uint64_t send_errors;
    /* auto: the current window of its zero-copy notifications, and the decision */
    uint16_t zc_window;
    uint16_t zc_window_copied;
    uint8_t copy_sends; /* 1: its sends go as copy sends (the kernel copied them anyway) */
    uint8_t forgotten;  /* rc_forget_fd while it held slots: removed when the last comes back */
};

struct rc_ring {
    struct io_uring ring;
    int have_ring;
    int registered;
    int mode;
    int zc_report;
    int auto_copy; /* rc_set_auto_copy */
    int closing;
    int efd;

    unsigned nslots;
    unsigned slot_size;
    unsigned char *mem;
    size_t mem_len;

    uint8_t *state;
    unsigned *lens;
    int *fds;
    struct rc_slot_addr *addrs;
    uint32_t *free_stack;
    unsigned nfree;

    /* socket mode: slots waiting for the next flush, in send order */
    uint32_t *queue;
    unsigned nqueued;
    struct mmsghdr *mm;
    struct iovec *iov;

    /* uring modes: SQEs prepared but not yet submitted */
    unsigned sq_pending;
    uint32_t submit_gen; /* +1 each time everything queued was handed to the kernel */

    /* Per-fd table: entries in fdt (fd_max of them, unused ones on fdt_free), found
     * through an open-addressing hash of entry index + 1 (0: empty), linear probing. */
    struct rc_fdent *fdt;
    uint32_t *fdt_free;
    unsigned fdt_nfree;
    unsigned fd_max;
    uint32_t *fd_hash;
    unsigned hash_mask;
    unsigned hash_shift;
    uint32_t *slot_ent; /* uring modes: the fd entry of each slot in flight */
    uint8_t *zc_failed; /* its zero-copy send failed: its notification says nothing (auto) */
    unsigned fd_cap;

    struct rc_stats st;
};

static void count_errno(struct rc_ring *r, int err)
{
    if (err < 0)
        err = -err;
    if (err >= RC_MAX_ERRNO)
        err = 0; /* bucket 0 holds errnos we do not name */
    r->st.errors_by_errno[err]++;
}

/* -- the per-fd table ------------------------------------------------------------------ */

static inline uint32_t fd_home(const struct rc_ring *r, int fd)
{
    return ((uint32_t)fd * 2654435761u) >> r->hash_shift; /* Fibonacci hashing */
}

static int fdt_find(const struct rc_ring *r, int fd)
{
    for (uint32_t i = fd_home(r, fd);; i = (i + 1) & r->hash_mask) {
        uint32_t v = r->fd_hash[i];
        if (v == 0)
            return -1;
        if (r->fdt[v - 1].fd == fd)
            return (int)(v - 1);
    }
}

static inline int fdt_has_counts(const struct rc_fdent *e)
{
    return e->eagain_drops || e->cap_drops || e->send_errors;
}

/* Remove entry e (backward-shift deletion keeps every probe chain unbroken). */
static void fdt_remove(struct rc_ring *r, uint32_t e)
{
    uint32_t i = fd_home(r, r->fdt[e].fd), j;

    while (r->fd_hash[i] != e + 1)
        i = (i + 1) & r->hash_mask;
    r->fd_hash[i] = 0;
    for (j = (i + 1) & r->hash_mask; r->fd_hash[j]; j = (j + 1) & r->hash_mask) {
        uint32_t k = fd_home(r, r->fdt[r->fd_hash[j] - 1].fd);
        /* The entry at j may fill the hole at i unless its home lies cyclically in (i, j]. */
        int stays = i <= j ? (i < k && k <= j) : (i < k || k <= j);
        if (!stays) {
            r->fd_hash[i] = r->fd_hash[j];
            r->fd_hash[j] = 0;
            i = j;
        }
    }
    if (r->fdt[e].copy_sends)
        r->st.auto_copy_fds--;
    r->fdt[e].fd = -1;
    r->fdt_free[r->fdt_nfree++] = e;
}

/* The table is full: remove the idle entries (no slot held) that carry no counts; if that
 * frees less than a quarter, also idle entries with counts (counted as evictions). There
 * are at least fd_max - nslots idle entries (fd_max = 2 * nslots), so this always frees a
 * quarter, and inserts stay O(1) amortised. */
static void fdt_sweep(struct rc_ring *r)
{
    for (int pass = 0; pass < 2 && r->fdt_nfree < r->fd_max / 4 + 1; pass++) {
        for (uint32_t e = 0; e < r->fd_max && r->fdt_nfree < r->fd_max / 4 + 1; e++) {
            struct rc_fdent *ent = &r->fdt[e];
            if (ent->fd < 0 || ent->slots)
                continue;
            /* an auto decision is worth keeping too: dropping it costs a new window */
            if (pass == 0 && (fdt_has_counts(ent) || ent->copy_sends))
                continue;
            if (pass == 1)
                r->st.fd_evictions++;
            fdt_remove(r, e);
        }
    }
}

/* The entry of fd, added when new; -1 only if the table could not make room (never, with
 * fd_max > nslots, since an entry holding no slot can always go). */
static int fdt_get(struct rc_ring *r, int fd)
{
    int e = fdt_find(r, fd);
    uint32_t i;

    if (e >= 0) {
        r->fdt[e].forgotten = 0; /* a new socket took the number before the old sends came back */
        return e;
    }
    if (r->fdt_nfree == 0)
        fdt_sweep(r);
    if (r->fdt_nfree == 0)
        return -1;
    e = (int)r->fdt_free[--r->fdt_nfree];
    memset(&r->fdt[e], 0, sizeof(r->fdt[e]));
    r->fdt[e].fd = fd;
    r->fdt[e].gen = r->submit_gen;
    for (i = fd_home(r, fd); r->fd_hash[i]; i = (i + 1) & r->hash_mask)
        ;
    r->fd_hash[i] = (uint32_t)e + 1;
    return e;
}

/* Slots of this entry the kernel holds: its slots minus those queued since the last submit
 * (which cannot have completed, so pending <= slots). */
static inline uint32_t fd_held(struct rc_ring *r, struct rc_fdent *ent)
{
    if (ent->gen != r->submit_gen) {
        ent->gen = r->submit_gen;
        ent->pending = 0;
    }
    return ent->slots - ent->pending;
}

static void release_slot(struct rc_ring *r, uint32_t slot)
{
    uint32_t ent;

    if (slot >= r->nslots || r->state[slot] != SLOT_IN_FLIGHT)
        return; /* never release twice: a stale or foreign completion */
    r->state[slot] = SLOT_FREE;
    r->free_stack[r->nfree++] = slot;
    r->st.slots_in_flight--;
    ent = r->slot_ent[slot];
    if (--r->fdt[ent].slots == 0 && r->fdt[ent].forgotten)
        fdt_remove(r, ent); /* its socket closed while the kernel still had its sends */
}

struct rc_ring *rc_create(unsigned nslots, unsigned slot_size, int use_uring,
                          unsigned sq_entries, int *err, int *stage)
{
    struct rc_ring *r = calloc(1, sizeof(*r));
    long page = sysconf(_SC_PAGESIZE);

    *err = 0;
    *stage = 1;
    if (!r) {
        *err = ENOMEM;
        return NULL;
    }
    r->efd = -1;
    r->nslots = nslots;
    r->slot_size = slot_size;
    r->mem_len = ((size_t)nslots * slot_size + page - 1) / page * page;
    r->mem = mmap(NULL, r->mem_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (r->mem == MAP_FAILED) {
        *err = errno;
        free(r);
        return NULL;
    }
    /* Pre-fault so the first sends do not pay for page faults. */
    memset(r->mem, 0, r->mem_len);

    r->state = calloc(nslots, sizeof(*r->state));
    r->lens = calloc(nslots, sizeof(*r->lens));
    r->fds = calloc(nslots, sizeof(*r->fds));
    r->addrs = calloc(nslots, sizeof(*r->addrs));
    r->free_stack = calloc(nslots, sizeof(*r->free_stack));
    r->queue = calloc(nslots, sizeof(*r->queue));
    r->mm = calloc(nslots, sizeof(*r->mm));
    r->iov = calloc(nslots, sizeof(*r->iov));
    /* Twice as many fd entries as slots: at most nslots fds hold a slot, so at least half
     * of a full table is idle and can be swept (fdt_sweep). */
    r->fd_max = nslots * 2 < 64 ? 64 : nslots * 2;
    r->hash_shift = 32;
    while ((1u << (32 - r->hash_shift)) < r->fd_max * 2)
        r->hash_shift--;
    r->hash_mask = (1u << (32 - r->hash_shift)) - 1;
    r->fdt = calloc(r->fd_max, sizeof(*r->fdt));
    r->fdt_free = calloc(r->fd_max, sizeof(*r->fdt_free));
    r->fd_hash = calloc((size_t)r->hash_mask + 1, sizeof(*r->fd_hash));
    r->slot_ent = calloc(nslots, sizeof(*r->slot_ent));
    r->zc_failed = calloc(nslots, sizeof(*r->zc_failed));
    if (!r->state || !r->lens || !r->fds || !r->addrs || !r->free_stack || !r->queue ||
        !r->mm || !r->iov || !r->fdt || !r->fdt_free || !r->fd_hash || !r->slot_ent ||
        !r->zc_failed) {
        *err = ENOMEM;
        r->st.slots_in_flight = 0;
        rc_destroy(r);
        return NULL;
    }
    /* Pop order 0, 1, 2...: slot 0 is on top. */
    for (unsigned i = 0; i < nslots; i++)
        r->free_stack[i] = nslots - 1 - i;
    r->nfree = nslots;
    r->st.slots_total = nslots;
    r->st.first_switch_fd = -1;
    r->mode = RC_MODE_SOCKET;
    for (unsigned i = 0; i < r->fd_max; i++) {
        r->fdt[i].fd = -1;
        r->fdt_free[i] = r->fd_max - 1 - i;
    }
    r->fdt_nfree = r->fd_max;
    r->fd_cap = nslots / 8 ? nslots / 8 : 1;

    if (use_uring) {
        struct io_uring_params p;
        int ret;

        *stage = 2;
        /* The kernel wants the CQ at least as large as the SQ. */
        if (sq_entries > nslots)
            sq_entries = nslots < 8 ? 8 : nslots;
        memset(&p, 0, sizeof(p));
        /* Room for a send CQE and a notification CQE per slot. Not COOP_TASKRUN: with it a
         * zero-copy notification waits for our next io_uring_enter, so an idle event loop
         * would never see it arrive on the eventfd. */
        p.flags = IORING_SETUP_CQSIZE | IORING_SETUP_SUBMIT_ALL;
        p.cq_entries = nslots * 2 < sq_entries ? sq_entries : nslots * 2;
        ret = io_uring_queue_init_params(sq_entries, &r->ring, &p);
        if (ret == -EINVAL) {
            /* Older kernels lack SUBMIT_ALL: try with the CQ size alone. */
            memset(&p, 0, sizeof(p));
            p.flags = IORING_SETUP_CQSIZE;
            p.cq_entries = nslots * 2 < sq_entries ? sq_entries : nslots * 2;
            ret = io_uring_queue_init_params(sq_entries, &r->ring, &p);
        }
        if (ret < 0) {
            *err = -ret;
            rc_destroy(r);
            return NULL;
        }
        r->have_ring = 1;
        r->mode = RC_MODE_COPY;
    }
    *stage = 0;
    r->st.mode = r->mode;
    return r;
}

int rc_register(struct rc_ring *r)
{
    struct iovec iov = {.iov_base = r->mem, .iov_len = r->mem_len};
    int ret;

    if (!r->have_ring)
        return -EINVAL;
    ret = io_uring_register_buffers(&r->ring, &iov, 1);
    if (ret == 0)
        r->registered = 1;
    return ret;
}

int rc_opcode_supported(struct rc_ring *r, int zerocopy)
{
    struct io_uring_probe *probe;
    int ok;

    if (!r->have_ring)
        return -EINVAL;
    probe = io_uring_get_probe_ring(&r->ring);
    if (!probe)
        return -ENOMEM;
    ok = io_uring_opcode_supported(probe, zerocopy ? IORING_OP_SEND_ZC : IORING_OP_SEND);
    io_uring_free_probe(probe);
    return ok ? 1 : 0;
}

static int wait_cqe_ms(struct rc_ring *r, struct io_uring_cqe **cqe, unsigned ms)
{
    struct __kernel_timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
    return io_uring_wait_cqe_timeout(&r->ring, cqe, &ts);
}

/* One datagram from slot 0 to a throwaway loopback socket, reaped here. */
static int self_test_once(struct rc_ring *r, int zerocopy, unsigned zc_flags, int rx, int tx,
                          struct sockaddr_in *dst)
{
    struct io_uring_sqe *sqe = io_uring_get_sqe(&r->ring);
    struct io_uring_cqe *cqe;
    int want = zerocopy ? 2 : 1, got = 0, result = 0, ret;

    if (!sqe)
        return -EBUSY;
    memcpy(r->mem, "relay-self-test", 16);
    if (zerocopy)
        io_uring_prep_send_zc_fixed(sqe, tx, r->mem, 16, MSG_DONTWAIT, zc_flags, 0);
    else
        io_uring_prep_send(sqe, tx, r->mem, 16, MSG_DONTWAIT);
    io_uring_prep_send_set_addr(sqe, (struct sockaddr *)dst, sizeof(*dst));
    sqe->user_data = UD(TAG_INTERNAL, 0);
    ret = io_uring_submit(&r->ring);
    if (ret < 0)
        return ret;
    while (got < want) {
        ret = wait_cqe_ms(r, &cqe, 1000);
        if (ret < 0)
            return ret;
        if (cqe->flags & IORING_CQE_F_NOTIF) {
            got = want;
        } else {
            if (cqe->res < 0)
                result = cqe->res;
            got++;
            if (!(cqe->flags & IORING_CQE_F_MORE))
                got = want;
        }
        io_uring_cqe_seen(&r->ring, cqe);
    }
    if (result == 0) {
        char buf[32];
        if (recv(rx, buf, sizeof(buf), MSG_DONTWAIT) != 16)
            result = -EIO;
    }
    return result;
}

int rc_self_test(struct rc_ring *r, int zerocopy, int *zc_report)
{
    struct sockaddr_in dst = {.sin_family = AF_INET};
    socklen_t dlen = sizeof(dst);
    int rx = -1, tx = -1, ret;

    *zc_report = 0;
    if (!r->have_ring)
        return -EINVAL;
    if (zerocopy && !r->registered)
        return -EINVAL;
    rx = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    tx = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (rx < 0 || tx < 0) {
        ret = -errno;
        goto out;
    }
    dst.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(rx, (struct sockaddr *)&dst, sizeof(dst)) < 0 ||
        getsockname(rx, (struct sockaddr *)&dst, &dlen) < 0) {
        ret = -errno;
        goto out;
    }
    if (zerocopy) {
        /* Usage reporting needs kernel 6.2; without it the send itself still works. */
        ret = self_test_once(r, 1, IORING_SEND_ZC_REPORT_USAGE, rx, tx, &dst);
        if (ret == 0) {
            *zc_report = 1;
        } else if (ret == -EINVAL) {
            ret = self_test_once(r, 1, 0, rx, tx, &dst);
        }
    } else {
        ret = self_test_once(r, 0, 0, rx, tx, &dst);
    }
out:
    if (rx >= 0)
        close(rx);
    if (tx >= 0)
        close(tx);
    return ret;
}

void rc_set_mode(struct rc_ring *r, int mode, int zc_report)
{
    r->mode = mode;
    r->zc_report = zc_report;
    r->st.mode = mode;
}

void rc_set_auto_copy(struct rc_ring *r, int on)
{
    r->auto_copy = on && r->mode == RC_MODE_ZEROCOPY && r->zc_report;
    r->st.auto_copy = r->auto_copy;
}

unsigned long long rc_auto_switches(struct rc_ring *r)
{
    return r->st.auto_switches;
}

/* auto: the notification of a zero-copy send on slot's fd says whether the kernel copied
 * it anyway (loopback; a device without scatter-gather). A send that failed (EAGAIN, ...)
 * used no buffer, which the kernel reports as copied too: it is not counted. Windows of
 * RC_AUTO_WINDOW notifications per fd: one at least 3/4 copied switches the fd to copy
 * sends, cheaper when the kernel copies (one CQE, no pinning); a mostly zero-copied one
 * starts the next. Called before the slot is released (slot_ent is still its fd's entry). */
static void auto_note(struct rc_ring *r, uint32_t slot, int copied)
{
    struct rc_fdent *ent;

    if (slot >= r->nslots || r->state[slot] != SLOT_IN_FLIGHT || r->zc_failed[slot])
        return;
    ent = &r->fdt[r->slot_ent[slot]];
    if (ent->copy_sends || ent->forgotten)
        return; /* a zero-copy send still in flight when its fd switched, or closed */
    ent->zc_window++;
    ent->zc_window_copied += copied ? 1 : 0;
    if (ent->zc_window < RC_AUTO_WINDOW)
        return;
    if (ent->zc_window_copied * 4 >= ent->zc_window * 3) {
        ent->copy_sends = 1;
        r->st.auto_copy_fds++;
        if (r->st.auto_switches++ == 0) {
            r->st.first_switch_fd = ent->fd;
            r->st.first_switch_copied = ent->zc_window_copied;
        }
    }
    ent->zc_window = ent->zc_window_copied = 0;
}

int rc_make_sockaddr(const char *ip, int port, void *out)
{
    struct rc_slot_addr *a = out;

    memset(a, 0, sizeof(*a));
    if (port < 0 || port > 65535)
        return -1;
    if (inet_pton(AF_INET, ip, &a->sa.v4.sin_addr) == 1) {
        a->sa.v4.sin_family = AF_INET;
        a->sa.v4.sin_port = htons(port);
        a->len = sizeof(a->sa.v4);
        return (int)a->len;
    }
    if (inet_pton(AF_INET6, ip, &a->sa.v6.sin6_addr) == 1) {
        a->sa.v6.sin6_family = AF_INET6;
        a->sa.v6.sin6_port = htons(port);
        a->len = sizeof(a->sa.v6);
        return (int)a->len;
    }
    return -1;
}

/* Hand every prepared SQE to the kernel. */
static int submit_pending(struct rc_ring *r)
{
    int ret;

    if (r->sq_pending == 0)
        return 0;
    ret = io_uring_submit(&r->ring);
    if (ret < 0) {
        /* The SQEs stay in the SQ and go with the next submit; count why. */
        count_errno(r, ret);
        return 0;
    }
    r->st.submits++;
    r->st.sqes_submitted += ret;
    r->sq_pending -= (unsigned)ret > r->sq_pending ? r->sq_pending : (unsigned)ret;
    r->st.slots_queued = r->sq_pending;
    /* Every fd's pending count is now zero, in O(1). (After a partial submit the rest
     * count as held: conservative, and it keeps pending <= slots for every fd.) */
    r->submit_gen++;
    return ret;
}

/* sendmmsg the k datagrams in slots[0..k) on fd; returns how many went out. */
static unsigned sendmmsg_run(struct rc_ring *r, int fd, const uint32_t *slots, unsigned k)
{
    unsigned done = 0, sent = 0;

    for (unsigned j = 0; j < k; j++) {
        uint32_t s = slots[j];
        struct msghdr *h = &r->mm[j].msg_hdr;
        r->iov[j].iov_base = r->mem + (size_t)s * r->slot_size;
        r->iov[j].iov_len = r->lens[s];
        memset(h, 0, sizeof(*h));
        h->msg_iov = &r->iov[j];
        h->msg_iovlen = 1;
        if (r->addrs[s].len) {
            h->msg_name = &r->addrs[s].sa;
            h->msg_namelen = r->addrs[s].len;
        }
    }
    while (done < k) {
        int n = sendmmsg(fd, r->mm + done, k - done, MSG_DONTWAIT);
        r->st.socket_send_calls++;
        if (n < 0) {
            int err = errno, e;
            if (err == EINTR)
                continue;
            /* The first message of the rest failed: count it (for its fd too), go past it. */
            count_errno(r, err);
            r->st.cqe_errors++;
            e = fdt_get(r, fd);
            if (err == EAGAIN || err == EWOULDBLOCK) {
                r->st.eagain_drops++;
                if (e >= 0)
                    r->fdt[e].eagain_drops++;
            } else if (e >= 0) {
                r->fdt[e].send_errors++;
            }
            done++;
        } else {
            done += (unsigned)n;
            sent += (unsigned)n;
        }
    }
    return sent;
}

static int flush_socket(struct rc_ring *r)
{
    unsigned sent = 0, left = r->nqueued;
    uint32_t *q = r->queue;

    if (left == 0)
        return 0;
    /* One sendmmsg per socket: a fan-out interleaves sockets, so gather each socket's
     * datagrams (in their queued order) rather than cutting runs at every change of fd.
     * The gathered run is built in free_stack's unused tail, which holds at least `left`
     * entries because every queued slot is off the free stack. */
    uint32_t *run = r->free_stack + r->nfree;
    while (left > 0) {
        int fd = r->fds[q[0]];
        unsigned k = 0, keep = 0;

        for (unsigned i = 0; i < left; i++) {
            if (r->fds[q[i]] == fd)
                run[k++] = q[i];
            else
                q[keep++] = q[i];
        }
        sent += sendmmsg_run(r, fd, run, k);
        for (unsigned j = 0; j < k; j++) {
            uint32_t s = run[j];
            r->state[s] = SLOT_FREE;
            r->st.completions++;
        }
        r->st.submits++;
        r->st.sqes_submitted += k;
        left = keep;
        /* Release after the loop's use of `run`: pushing onto free_stack overwrites it. */
        for (unsigned j = 0; j < k; j++)
            r->free_stack[r->nfree++] = run[j];
        run = r->free_stack + r->nfree;
    }
    r->nqueued = 0;
    r->st.slots_queued = 0;
    return (int)sent;
}

int rc_flush(struct rc_ring *r)
{
    if (r->mode == RC_MODE_SOCKET)
        return flush_socket(r);
    return submit_pending(r);
}

int rc_queued(struct rc_ring *r)
{
    return (int)(r->mode == RC_MODE_SOCKET ? r->nqueued : r->sq_pending);
}

static int reap(struct rc_ring *r, unsigned max)
{
    struct io_uring_cqe *cqe;
    unsigned n = 0;

    if (!r->have_ring)
        return 0;
    while ((max == 0 || n < max) && io_uring_peek_cqe(&r->ring, &cqe) == 0) {
        uint64_t ud = cqe->user_data;
        uint32_t slot = (uint32_t)(ud & 0xffffffffu);

        n++;
        if ((ud >> 32) == TAG_SEND) {
            r->st.completions++;
            if (cqe->flags & IORING_CQE_F_NOTIF) {
                int copied = r->zc_report && (cqe->res & IORING_NOTIF_USAGE_ZC_COPIED);
                r->st.zc_notifications++;
                if (copied)
                    r->st.zc_copied++;
                if (r->auto_copy)
                    auto_note(r, slot, copied);
                if (slot < r->nslots)
                    r->zc_failed[slot] = 0;
                release_slot(r, slot);
            } else {
                if (cqe->res < 0) {
                    r->st.cqe_errors++;
                    count_errno(r, cqe->res);
                    if (slot < r->nslots && r->state[slot] == SLOT_IN_FLIGHT) {
                        struct rc_fdent *ent = &r->fdt[r->slot_ent[slot]];
                        if (cqe->flags & IORING_CQE_F_MORE)
                            r->zc_failed[slot] = 1; /* for auto_note, on its notification */
                        if (cqe->res == -EAGAIN) { /* MSG_DONTWAIT: the socket was full */
                            r->st.eagain_drops++;
                            ent->eagain_drops++;
                        } else {
                            ent->send_errors++;
                        }
                    }
                }
                /* F_MORE: a notification follows and only it frees the slot. */
                if (!(cqe->flags & IORING_CQE_F_MORE))
                    release_slot(r, slot);
            }
        }
        io_uring_cqe_seen(&r->ring, cqe);
    }
    return (int)n;
}

int rc_poll(struct rc_ring *r)
{
    return reap(r, 0);
}

int rc_poll_max(struct rc_ring *r, unsigned max)
{
    return reap(r, max);
}

int rc_cq_ready(struct rc_ring *r)
{
    return r->have_ring ? (int)io_uring_cq_ready(&r->ring) : 0;
}

_Static_assert(sizeof(struct rc_slot_addr) <= RC_ADDR_SIZE, "RC_ADDR_SIZE too small");

int rc_send(struct rc_ring *r, int fd, const void *data, unsigned len, const void *addr)
{
    const struct rc_slot_addr *dst = addr;
    unsigned addrlen = dst ? dst->len : 0;
    uint32_t s;
    unsigned char *buf;
    struct rc_fdent *ent = NULL;
    int e = -1;

    if (r->closing)
        return RC_CLOSED;
    if (len > r->slot_size)
        return RC_TOO_BIG;
    if (fd < 0)
        return RC_BAD_FD;
    if (addrlen > sizeof(r->addrs[0].sa))
        return RC_BAD_ADDR;
    if (r->nfree == 0) {
        /* Reap first; then give the kernel what is queued (copy sends finish inline). */
        reap(r, 0);
        if (r->nfree == 0) {
            rc_flush(r);
            reap(r, 0);
        }
        if (r->nfree == 0) {
            r->st.exhaustion_drops++;
            return RC_DROPPED_FULL;
        }
    }
    if (r->mode != RC_MODE_SOCKET) {
        /* socket mode sends synchronously at flush: nothing stays held, no cap needed */
        e = fdt_get(r, fd);
        if (e < 0) {
            r->st.exhaustion_drops++;
            return RC_DROPPED_FULL;
        }
        ent = &r->fdt[e];
        if (fd_held(r, ent) >= (r->fd_cap < r->nfree ? r->fd_cap : r->nfree)) {
            reap(r, 0); /* completions may already be waiting in the CQ */
            if (fd_held(r, ent) >= (r->fd_cap < r->nfree ? r->fd_cap : r->nfree)) {
                ent->cap_drops++;
                r->st.cap_drops++;
                return RC_DROPPED_FD_CAP;
            }
        }
    }
    s = r->free_stack[--r->nfree];
    buf = r->mem + (size_t)s * r->slot_size;
    memcpy(buf, data, len);
    r->lens[s] = len;
    r->fds[s] = fd;
    if (addrlen)
        memcpy(&r->addrs[s].sa, addr, addrlen);
    r->addrs[s].len = addrlen;
    r->st.sends_queued++;
    r->st.bytes_queued += len;

    if (r->mode == RC_MODE_SOCKET) {
        r->state[s] = SLOT_QUEUED;
        r->queue[r->nqueued++] = s;
        r->st.slots_queued = r->nqueued;
        return RC_QUEUED;
    }

    struct io_uring_sqe *sqe = io_uring_get_sqe(&r->ring);
    if (!sqe) {
        /* SQ full: submit what is there (one more enter) and take a fresh SQE. */
        submit_pending(r);
        sqe = io_uring_get_sqe(&r->ring);
        if (!sqe) {
            r->state[s] = SLOT_FREE;
            r->free_stack[r->nfree++] = s;
            r->st.exhaustion_drops++;
            return RC_DROPPED_FULL;
        }
    }
    /* MSG_DONTWAIT: a full socket buffer fails this send with -EAGAIN at once (the kernel
     * sets REQ_F_NOWAIT for it) instead of arming poll and holding the slot until the
     * socket drains. */
    if (r->mode == RC_MODE_ZEROCOPY && !ent->copy_sends) {
        io_uring_prep_send_zc_fixed(sqe, fd, buf, len, MSG_DONTWAIT,
                                    r->zc_report ? IORING_SEND_ZC_REPORT_USAGE : 0, 0);
        r->st.zc_sends++;
    } else {
        io_uring_prep_send(sqe, fd, buf, len, MSG_DONTWAIT);
        r->st.copy_sends++;
    }
    if (addrlen)
        io_uring_prep_send_set_addr(sqe, (struct sockaddr *)&r->addrs[s].sa, (__u16)addrlen);
    sqe->user_data = UD(TAG_SEND, s);
    /* The kernel owns the slot from here until its completion is reaped. */
    r->state[s] = SLOT_IN_FLIGHT;
    r->st.slots_in_flight++;
    /* After the SQE: taking it may have submitted (a new generation). */
    if (__builtin_expect(ent->gen != r->submit_gen, 0)) {
        ent->gen = r->submit_gen;
        ent->pending = 0;
    }
    ent->pending++;
    ent->slots++;
    r->slot_ent[s] = (uint32_t)e;
    r->sq_pending++;
    r->st.slots_queued = r->sq_pending;
    return RC_QUEUED;
}

int rc_send_many(struct rc_ring *r, const void *buf, const unsigned *lens, unsigned n, int fd,
                 const int *fds, const void *dsts, unsigned dst_stride)
{
    const unsigned char *p = buf;
    const unsigned char *d = dsts;
    unsigned queued = 0;

    if (r->closing)
        return RC_CLOSED;
    /* Validate the whole batch first: a bad one queues nothing. */
    for (unsigned i = 0; i < n; i++) {
        if (lens[i] > r->slot_size)
            return RC_TOO_BIG;
        if ((fds ? fds[i] : fd) < 0)
            return RC_BAD_FD;
    }
    for (unsigned i = 0; i < n; i++) {
        int ret = rc_send(r, fds ? fds[i] : fd, p, lens[i], d ? d + (size_t)i * dst_stride : NULL);
        if (ret == RC_QUEUED)
            queued++;
        p += lens[i];
    }
    return (int)queued;
}

int rc_eventfd(struct rc_ring *r)
{
    int ret;

    if (r->efd >= 0)
        return r->efd;
    if (!r->have_ring)
        return -EINVAL;
    r->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (r->efd < 0)
        return -errno;
    /* Every CQE signals it (zero-copy notifications arrive through task work, which the
     * async-only variant would not report). */
    ret = io_uring_register_eventfd(&r->ring, r->efd);
    if (ret < 0) {
        close(r->efd);
        r->efd = -1;
        return ret;
    }
    return r->efd;
}

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int rc_drain(struct rc_ring *r, unsigned timeout_ms)
{
    uint64_t start = now_ms();
    int cancelled = 0;

    rc_flush(r);
    r->closing = 1;
    if (!r->have_ring)
        return 0;
    reap(r, 0);
    while (r->st.slots_in_flight > 0) {
        struct io_uring_cqe *cqe;
        uint64_t elapsed = now_ms() - start;
        int ret;

        if (elapsed >= timeout_ms)
            break;
        if (!cancelled && elapsed >= timeout_ms / 2) {
            /* Stragglers (a socket that never drains): cancel them once; their slots
             * still come back only through their own CQEs. */
            struct io_uring_sqe *sqe = io_uring_get_sqe(&r->ring);
            if (sqe) {
                io_uring_prep_cancel64(sqe, 0, IORING_ASYNC_CANCEL_ANY);
                sqe->user_data = UD(TAG_INTERNAL, 0);
                io_uring_submit(&r->ring);
            }
            cancelled = 1;
        }
        ret = wait_cqe_ms(r, &cqe, 10);
        if (ret < 0 && ret != -ETIME && ret != -EINTR)
            break;
        reap(r, 0);
    }
    return (int)r->st.slots_in_flight;
}

int rc_destroy(struct rc_ring *r)
{
    int leaked;

    if (!r)
        return 0;
    leaked = (int)r->st.slots_in_flight;
    if (r->have_ring) {
        if (r->efd >= 0)
            io_uring_unregister_eventfd(&r->ring);
        if (leaked == 0 && r->registered)
            io_uring_unregister_buffers(&r->ring);
        io_uring_queue_exit(&r->ring);
        r->have_ring = 0;
    }
    if (r->efd >= 0)
        close(r->efd);
    if (leaked == 0) {
        if (r->mem && r->mem != MAP_FAILED)
            munmap(r->mem, r->mem_len);
        free(r->state);
        free(r->lens);
        free(r->fds);
        free(r->addrs);
        free(r->free_stack);
        free(r->queue);
        free(r->mm);
        free(r->iov);
        free(r->fdt);
        free(r->fdt_free);
        free(r->fd_hash);
        free(r->slot_ent);
        free(r->zc_failed);
        free(r);
    }
    /* else: the region stays mapped for the life of the process, on purpose. */
    return leaked;
}

void rc_get_stats(struct rc_ring *r, struct rc_stats *out)
{
    r->st.slots_free = r->nfree;
    r->st.fd_cap = r->fd_cap;
    r->st.fd_entries = r->fd_max - r->fdt_nfree;
    r->st.fd_table_size = r->fd_max;
    *out = r->st;
}

void rc_set_fd_cap(struct rc_ring *r, unsigned cap)
{
    r->fd_cap = cap ? cap : 1;
}

static void fill_fd_stats(const struct rc_fdent *ent, struct rc_fd_stats *out)
{
    out->fd = ent->fd;
    out->in_flight = ent->slots;
    out->eagain_drops = ent->eagain_drops;
    out->cap_drops = ent->cap_drops;
    out->send_errors = ent->send_errors;
    out->copy_sends = ent->copy_sends;
}

int rc_fd_stats(struct rc_ring *r, int fd, struct rc_fd_stats *out)
{
    int e = fd < 0 ? -1 : fdt_find(r, fd);

    memset(out, 0, sizeof(*out));
    out->fd = fd;
    if (e < 0)
        return 0;
    fill_fd_stats(&r->fdt[e], out);
    return 1;
}

int rc_forget_fd(struct rc_ring *r, int fd)
{
    int e = fd < 0 ? -1 : fdt_find(r, fd);

    if (e < 0)
        return 0;
    r->fdt[e].eagain_drops = r->fdt[e].cap_drops = r->fdt[e].send_errors = 0;
    /* a new socket given this number learns afresh */
    if (r->fdt[e].copy_sends)
        r->st.auto_copy_fds--;
    r->fdt[e].copy_sends = 0;
    r->fdt[e].zc_window = r->fdt[e].zc_window_copied = 0;
    /* With slots still held (the kernel still sends from them, on its own reference to the
     * socket) the entry must stay, since they release through it: it goes when the last one
     * comes back (release_slot), unless a new socket takes the number first. */
    if (r->fdt[e].slots == 0)
        fdt_remove(r, (uint32_t)e);
    else
        r->fdt[e].forgotten = 1;
    return 1;
}

int rc_fd_top(struct rc_ring *r, struct rc_fd_stats *out, unsigned max)
{
    unsigned n = 0;

    for (unsigned e = 0; e < r->fd_max && max; e++) {
        const struct rc_fdent *ent = &r->fdt[e];
        uint64_t drops;
        unsigned i;

        if (ent->fd < 0 || !fdt_has_counts(ent))
            continue;
        drops = ent->eagain_drops + ent->cap_drops;
        /* insertion into out[0..n), most drops first; the smallest falls off the end */
        for (i = n; i > 0 && out[i - 1].eagain_drops + out[i - 1].cap_drops < drops; i--)
            if (i < max)
                out[i] = out[i - 1];
        if (i < max) {
            fill_fd_stats(ent, &out[i]);
            if (n < max)
                n++;
        }
    }
    return (int)n;
}
