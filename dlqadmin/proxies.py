"""The client's address, also behind reverse proxies (``DLQADMIN_TRUSTED_PROXIES``).

``X-Forwarded-For`` is believed only when the peer (``REMOTE_ADDR``) is a trusted proxy: the
chain is read from the right, each trusted hop is skipped, and the first address that is not a
trusted proxy is the client. Anything left of it was written by the client and is ignored.
Sign-in throttling, the API throttles, the audit trail and ``/metrics``' network check all use
:func:`client_ip`, so they agree on who a request came from.
"""

from __future__ import annotations

import ipaddress
from functools import cache

from django.conf import settings

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def parse_network(text: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    """A CIDR (``10.0.0.0/8``) or a single address; ValueError when it is neither."""
    return ipaddress.ip_network(text.strip(), strict=False)


@cache
def _networks(cidrs: tuple[str, ...]) -> tuple:
    return tuple(parse_network(cidr) for cidr in cidrs)


def _address(text: str) -> Address | None:
    """An address as proxies write it (``192.0.2.1``, ``192.0.2.1:443``, ``[2001:db8::1]:443``)."""
    text = text.strip()
    if text.startswith("["):
        text = text[1:].split("]", 1)[0]
    elif text.count(":") == 1:
        text = text.split(":", 1)[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        return address.ipv4_mapped
    return address


def is_trusted_proxy(address: Address) -> bool:
    return any(address in network for network in _networks(tuple(settings.DLQADMIN_TRUSTED_PROXIES)))


def in_networks(address_text: str | None, cidrs: list[str]) -> bool:
    address = _address(address_text or "")
    return address is not None and any(address in network for network in _networks(tuple(cidrs)))


def client_ip(request) -> str | None:
    """The address the request came from: ``REMOTE_ADDR``, or, when that is a trusted proxy,
    the nearest address in ``X-Forwarded-For`` that is not one (None when unknown)."""
    peer = request.META.get("REMOTE_ADDR") or None
    current = _address(peer or "")
    if current is None or not is_trusted_proxy(current):
        return peer
    hops = [hop for hop in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if hop.strip()]
    for hop in reversed(hops):
        address = _address(hop)
        if address is None:
            break  # a trusted proxy wrote something unreadable: stop at the last hop we can read
        current = address
        if not is_trusted_proxy(address):
            break
    return str(current)
