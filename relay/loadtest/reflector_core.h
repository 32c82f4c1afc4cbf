/* The self-test reflector: forwards every datagram of each input socket, unchanged, to that
 * input's destinations. It stands where the worker stands, so it must outrun the harness:
 * it sends with UDP GSO, one segmented send per destination for a run of equal-sized
 * datagrams, so the kernel's per-send cost (on loopback also the receive side's, paid on
 * the sending core) is paid once per run instead of once per datagram. The sinks do not
 * enable UDP_GRO, so they still receive, and pay for, every datagram one by one. */
#ifndef LT_REFLECTOR_CORE_H
#define LT_REFLECTOR_CORE_H

#include <stdint.h>

struct lt_reflect_stats {
    int64_t received;       /* datagrams read from the inputs */
    int64_t sent;           /* datagrams sent (a GSO send of n segments counts n) */
    int64_t sends;          /* send messages handed to the kernel */
    int64_t send_errors;    /* messages the kernel refused (their datagrams are lost) */
    int gso;                /* 1 while GSO is in use; the first EIO/EINVAL turns it off */
};

/* Read what is ready on in_fds (poll up to timeout_ms), forward it to the destinations:
 * input i goes to dsts[dst_offsets[i] .. dst_offsets[i + 1]) (LT_ADDR_SIZE bytes each).
 * Returns 0, or -errno if poll failed. */
int lt_reflect(const int *in_fds, int nin, const int *dst_offsets,
               const unsigned char *dsts, int out_fd, int timeout_ms,
               struct lt_reflect_stats *stats);

#endif
