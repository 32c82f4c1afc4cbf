"""What the ICE-TCP per-address limit counts by (relay.transport.webrtc_sockets.address_key)."""

from relay.transport.webrtc_sockets import address_key


def test_ipv4_addresses_count_alone_also_when_mapped():
    assert address_key("192.0.2.1") == "192.0.2.1"
    assert address_key("::ffff:192.0.2.1") == "192.0.2.1"
    assert address_key("192.0.2.1") != address_key("192.0.2.2")


def test_ipv6_counts_by_64_bit_prefix():
    assert address_key("2001:db8:1:2::1") == address_key("2001:db8:1:2:ffff::9%eth0")
    assert address_key("2001:db8:1:2::1") != address_key("2001:db8:1:3::1")
