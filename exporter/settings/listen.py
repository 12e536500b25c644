"""The one parser of listen addresses (``--web.listen-address``, the simulator's ``--listen``)."""

from __future__ import annotations

import socket


class ListenAddressError(ValueError):
    """An address that cannot be listened on; the message names the flag and the value."""


def parse_listen_address(addr: str, flag: str = "--web.listen-address"
                         ) -> tuple[str, int, int]:
    """':10117', '127.0.0.1:10117', '[::1]:10117' -> (host, port, address family).

    An empty host is returned as '0.0.0.0'; the listener (``web.listener``) opens that, like
    '::', dual-stack: IPv6 and IPv4. Raises ``ListenAddressError`` naming
    ``flag`` for a missing or non-numeric port, a port outside 0..65535, or an IPv6 host
    without brackets.
    """
    host, sep, port_s = addr.rpartition(":")
    if not sep:
        raise ListenAddressError(f"{flag} {addr!r}: expected HOST:PORT or :PORT")
    try:
        port = int(port_s)
    except ValueError:
        raise ListenAddressError(f"{flag} {addr!r}: port {port_s!r} is not a number") from None
    if not 0 <= port <= 65535:
        raise ListenAddressError(f"{flag} {addr!r}: port out of range")
    family = socket.AF_INET
    if host.startswith("[") and host.endswith("]"):
        host, family = host[1:-1], socket.AF_INET6
    elif ":" in host:
        raise ListenAddressError(f"{flag} {addr!r}: put IPv6 hosts in brackets")
    return host or "0.0.0.0", port, family
