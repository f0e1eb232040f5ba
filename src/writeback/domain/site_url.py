"""PSA site URL policy: where the service may send credentials (SSRF guard, address part).

Only the literal address is judged here; a host name's resolved addresses are judged again when
connecting, because DNS answers can change after configuration.
"""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

from writeback.domain.errors import InvalidInput

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_LOCAL_SUFFIXES = (".localhost", ".local", ".internal", ".localdomain")


def literal_ip(host: str) -> IPAddress | None:
    """The address a host string denotes by itself, including legacy IPv4 spellings
    (decimal `2130706433`, hex `0x7f.1`, short `127.1`) that resolvers accept."""
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        pass
    try:
        return ipaddress.IPv4Address(socket.inet_aton(host))
    except OSError:
        return None


def is_public_address(ip: IPAddress) -> bool:
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return is_public_address(ip.ipv4_mapped)
    # is_global excludes loopback, private, link-local, CGNAT (100.64/10), reserved, ...
    return ip.is_global and not ip.is_multicast


def check_site_url(url: str, *, allow_private: bool) -> str:
    """Return the normalized site URL or raise InvalidInput naming `site_url`."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise InvalidInput("site_url", "site_url must be an absolute https URL")
    if parts.username or parts.password or parts.query or parts.fragment:
        raise InvalidInput("site_url", "site_url must not carry credentials, a query or a fragment")
    try:
        port = parts.port
    except ValueError:
        raise InvalidInput("site_url", "site_url has an invalid port") from None
    host = parts.hostname
    if not allow_private:
        if parts.scheme != "https":
            raise InvalidInput("site_url", "site_url must use https")
        ip = literal_ip(host)
        if ip is not None and not is_public_address(ip):
            raise InvalidInput("site_url", "site_url points at a non-public address")
        if ip is None and (
            "." not in host or host == "localhost" or host.endswith(_LOCAL_SUFFIXES)
        ):
            raise InvalidInput("site_url", "site_url must name a public host")
    netloc = f"[{host}]" if ":" in host else host
    if port is not None:
        netloc = f"{netloc}:{port}"
    return f"{parts.scheme}://{netloc}{parts.path.rstrip('/')}"
