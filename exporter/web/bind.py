"""The listening socket of the exporter's port."""

from __future__ import annotations

import errno
import logging
import socket

log = logging.getLogger(__name__)

_WILDCARDS = ("", "0.0.0.0", "::")
_NO_IPV6 = (errno.EAFNOSUPPORT, errno.EADDRNOTAVAIL, errno.EPROTONOSUPPORT)


def listening_socket(host: str, port: int, family: int, backlog: int = 128) -> socket.socket:
    """A bound, listening socket. A wildcard host ('', 0.0.0.0 or ::) listens on IPv6 and IPv4
    at once (IPV6_V6ONLY off), as Go exporters do, falling back to IPv4 alone on a host without
    IPv6. Raises OSError (address in use, not available)."""
    if host in _WILDCARDS and socket.has_dualstack_ipv6():
        try:
            return socket.create_server(("::", port), family=socket.AF_INET6, backlog=backlog,
                                        dualstack_ipv6=True)
        except OSError as e:
            if e.errno not in _NO_IPV6:
                raise
            log.info("no IPv6 on this host; listening on IPv4 only")
    if host in _WILDCARDS:
        host, family = "0.0.0.0", socket.AF_INET
    return socket.create_server((host, port), family=family, backlog=backlog)
