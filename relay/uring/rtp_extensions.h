/* rtp_extensions: walking the RFC 8285 header-extension elements of an RTP packet, for the
 * C cores that read or rewrite them (fanout_core.c, transport_cc_core.c). Inline: it runs
 * per element on the packet path. Not part of the cffi surface. */
#ifndef RELAY_RTP_EXTENSIONS_H
#define RELAY_RTP_EXTENSIONS_H

/* The next element of the extension block buf[*i:end] (profile 0xBEDE: the one-byte form,
 * 0x100x: the two-byte form), padding skipped: 1 with its id, the offset of its value and
 * the value's size, *i then past it; 0 at the end of the list (also at the one-byte form's
 * reserved id 15, which ends it, and for any other profile); -1 when it runs past end. */
static inline int rtp_next_extension(const unsigned char *buf, unsigned *i, unsigned end,
                                     unsigned profile, unsigned *id, unsigned *value,
                                     unsigned *size)
{
    int one_byte = profile == 0xBEDE;
    unsigned k = *i;

    if (!one_byte && (profile & 0xFFF0) != 0x1000)
        return 0;
    while (k < end && buf[k] == 0)
        k++;
    if (k >= end)
        return 0;
    if (one_byte) {
        if (buf[k] >> 4 == 15)
            return 0;
        *id = buf[k] >> 4;
        *size = (buf[k] & 0x0F) + 1u;
        *value = k + 1;
    } else {
        if (k + 2 > end)
            return -1;
        *id = buf[k];
        *size = buf[k + 1];
        *value = k + 2;
    }
    if (*value + *size > end)
        return -1;
    *i = *value + *size;
    return 1;
}

/* Offset of the value of element ext_id (2 bytes or more) in the block buf[start:end], or
 * -1; as relay.rtp.transport_cc.extension_value_offset. */
static inline int rtp_extension_value_offset(const unsigned char *buf, unsigned start,
                                             unsigned end, unsigned profile, unsigned ext_id)
{
    unsigned i = start, id, value, size;

    while (rtp_next_extension(buf, &i, end, profile, &id, &value, &size) > 0)
        if (id == ext_id)
            return size >= 2 ? (int)value : -1;
    return -1;
}

#endif
