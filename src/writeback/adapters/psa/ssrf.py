"""The SSRF guard at connect time: the site URL's policy (domain.site_url) and, for a host
name, every address it resolves to must be public. Resolution can change after configuration,
so this runs whenever a provider is built."""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from writeback.domain.errors import InvalidInput, PsaTransientError
from writeback.domain.site_url import check_site_url, is_public_address, literal_ip

Resolver = Callable[..., list[tuple[Any, ...]]]


def guard_url(
    url: str,
    *,
    allow_private: bool,
    resolve: Resolver = socket.getaddrinfo,
    unresolvable: str = "transient",
) -> str:
    """Return the normalized URL, or raise InvalidInput naming `site_url`. A host that does not
    resolve is a transient failure when connecting, and invalid input when configuring
    (`unresolvable="invalid"`)."""
    normalized = check_site_url(url, allow_private=allow_private)
    parts = urlsplit(normalized)
    host = parts.hostname or ""
    if allow_private or literal_ip(host) is not None:
        return normalized
    try:
        infos = resolve(host, parts.port or 443, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        if unresolvable == "invalid":
            raise InvalidInput("site_url", f"site_url host {host!r} does not resolve") from None
        raise PsaTransientError(f"{host} does not resolve", failed="site_url") from None
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
        if not is_public_address(address):
            raise InvalidInput("site_url", "site_url resolves to a non-public address")
    return normalized
