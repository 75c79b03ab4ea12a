"""Address ranges a ``?url=`` fetch never connects to, kept here rather than taken from ``ipaddress``.

Python's tables differ between versions (3.11.7 calls 192.0.0.8 global) and follow the
registries late. This list is every entry of IANA's special-purpose address registries,
globally reachable ones included (an image host has no reason to live in any of them):

- IPv4: https://www.iana.org/assignments/iana-ipv4-special-registry/ (RFC 6890 and updates)
- IPv6: https://www.iana.org/assignments/iana-ipv6-special-registry/ (RFC 6890 and updates)

plus multicast (224.0.0.0/4, ff00::/8: IANA's multicast registries) and the deprecated
IPv6 site-local and IPv4-compatible ranges, which the registries no longer list.
"""

from __future__ import annotations

import ipaddress

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

# (range, what the registry calls it)
_IPV4 = (
    ("0.0.0.0/8", "this network"),
    ("10.0.0.0/8", "private-use"),
    ("100.64.0.0/10", "shared address space, carrier-grade NAT"),
    ("127.0.0.0/8", "loopback"),
    ("169.254.0.0/16", "link-local"),
    ("172.16.0.0/12", "private-use"),
    ("192.0.0.0/24", "IETF protocol assignments"),
    ("192.0.2.0/24", "documentation, TEST-NET-1"),
    ("192.31.196.0/24", "AS112-v4"),
    ("192.52.193.0/24", "AMT"),
    ("192.88.99.0/24", "deprecated 6to4 relay anycast"),
    ("192.168.0.0/16", "private-use"),
    ("192.175.48.0/24", "direct delegation AS112 service"),
    ("198.18.0.0/15", "benchmarking"),
    ("198.51.100.0/24", "documentation, TEST-NET-2"),
    ("203.0.113.0/24", "documentation, TEST-NET-3"),
    ("224.0.0.0/4", "multicast"),
    ("240.0.0.0/4", "reserved"),
    ("255.255.255.255/32", "limited broadcast"),
)
_IPV6 = (
    ("::/128", "unspecified"),
    ("::1/128", "loopback"),
    ("::/96", "deprecated IPv4-compatible"),
    ("::ffff:0:0/96", "IPv4-mapped"),
    ("::ffff:0:0:0/96", "IPv4-translated"),
    ("64:ff9b::/96", "IPv4-IPv6 translation"),
    ("64:ff9b:1::/48", "local-use IPv4-IPv6 translation"),
    ("100::/64", "discard-only"),
    ("100:0:0:1::/64", "dummy IPv6 prefix"),
    ("2001::/23", "IETF protocol assignments"),
    ("2001:db8::/32", "documentation"),
    ("2002::/16", "6to4"),
    ("2620:4f:8000::/48", "direct delegation AS112 service"),
    ("3fff::/20", "documentation"),
    ("5f00::/16", "segment routing (SRv6) SIDs"),
    ("fc00::/7", "unique-local"),
    ("fe80::/10", "link-local"),
    ("fec0::/10", "deprecated site-local"),
    ("ff00::/8", "multicast"),
)
SPECIAL: tuple[tuple[Network, str], ...] = tuple(
    (ipaddress.ip_network(net), name) for net, name in _IPV4 + _IPV6
)


def special_range(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    """``"192.0.0.0/24 (IETF protocol assignments)"`` for an address in a special-purpose range, else None."""
    return next((f"{net} ({name})" for net, name in SPECIAL if net.version == ip.version and ip in net), None)
