"""The SSRF guard at connect time: the site URL's policy (domain.site_url) and, for a host
name, every address it resolves to. `AddressVetter` runs inside every new TCP connection
(http.PinnedAdapter), so the address judged is the address connected to: DNS cannot answer
differently between the check and the connect."""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from writeback.domain.errors import InvalidInput, PsaTransientError, SiteUrlRefused
from writeback.domain.site_url import HostPolicy, check_site_url, literal_ip

Resolver = Callable[..., list[tuple[Any, ...]]]


class AddressVetter:
    """(host, port) -> the one address to connect to, every resolved address admitted by the
    policy; raises SiteUrlRefused otherwise, and socket.gaierror when the name does not
    resolve."""

    def __init__(self, policy: HostPolicy, resolve: Resolver = socket.getaddrinfo) -> None:
        self.policy = policy
        self._resolve = resolve

    def __call__(self, host: str, port: int) -> str:
        literal = literal_ip(host)
        if literal is not None:
            addresses = [literal]
        else:
            infos = self._resolve(host, port, type=socket.SOCK_STREAM)
            addresses = [ipaddress.ip_address(str(i[4][0]).split("%", 1)[0]) for i in infos]
        named = self.policy.admits_name(host)
        for address in addresses:
            why = self.policy.refusal(address, named=named)
            if why is not None:
                raise SiteUrlRefused(f"PSA host resolves to {why}", failed="site_url")
        if not addresses:
            raise socket.gaierror(f"{host} has no address")
        return str(addresses[0])


def guard_url(
    url: str,
    *,
    vet: AddressVetter,
    unresolvable: str = "transient",
) -> str:
    """Return the normalized URL, or raise InvalidInput naming `site_url`. A host that does not
    resolve is a transient failure when connecting, and invalid input when configuring
    (`unresolvable="invalid"`)."""
    normalized = check_site_url(url, policy=vet.policy)
    parts = urlsplit(normalized)
    host = parts.hostname or ""
    try:
        vet(host, parts.port or 443)
    except (socket.gaierror, UnicodeError):
        if unresolvable == "invalid":
            raise InvalidInput("site_url", f"site_url host {host!r} does not resolve") from None
        raise PsaTransientError(f"{host} does not resolve", failed="site_url") from None
    except SiteUrlRefused as exc:
        raise InvalidInput(
            "site_url", f"site_url {exc.message.removeprefix('PSA host ')}"
        ) from None
    return normalized
