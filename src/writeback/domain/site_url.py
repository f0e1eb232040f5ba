"""PSA site URL policy: where the service may send credentials (the SSRF guard's rules).

Only the URL and literal addresses are judged here; a host name's addresses are judged when
connecting (adapters/psa/ssrf.py), because DNS answers can change after configuration.

- Public addresses are always admitted; cloud metadata endpoints never are, whatever the settings.
- An operator admits on-premise PSAs with an allowlist of networks and host names
  (`WRITEBACK_PSA_ALLOWED_NETWORKS`); the older all-or-nothing flag means "loopback and private
  ranges" and admits no metadata either.
- An IPv6 address that embeds an IPv4 one (IPv4-mapped, IPv4-compatible, NAT64, 6to4) is judged
  by the IPv4 address it embeds, since that is where the packets end up.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

from writeback.domain.errors import InvalidInput

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

_LOCAL_SUFFIXES = (".localhost", ".local", ".internal", ".localdomain")
# Instance metadata services hand out cloud credentials: never a PSA.
METADATA_NETWORKS: tuple[IPNetwork, ...] = (
    ipaddress.ip_network("169.254.0.0/16"),  # link-local: AWS, GCP, Azure, OpenStack metadata
    ipaddress.ip_network("fe80::/10"),  # IPv6 link-local
    ipaddress.ip_network("fd00:ec2::254/128"),  # AWS metadata over IPv6
)
METADATA_HOSTS = frozenset({"metadata", "metadata.google.internal"})
# What WRITEBACK_PSA_ALLOW_PRIVATE_HOSTS=1 admits: loopback and the private ranges.
PRIVATE_NETWORKS: tuple[IPNetwork, ...] = tuple(
    ipaddress.ip_network(n)
    for n in (
        "127.0.0.0/8",
        "10.0.0.0/8",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "100.64.0.0/10",  # carrier-grade NAT, often an MSP's internal range
        "::1/128",
        "fc00::/7",
    )
)
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_IPV4_COMPATIBLE = ipaddress.ip_network("::/96")


@dataclass(frozen=True)
class HostPolicy:
    """Which non-public PSA hosts the operator admits. Empty: public hosts only, over https."""

    networks: tuple[IPNetwork, ...] = ()
    hosts: frozenset[str] = frozenset()

    @classmethod
    def parse(cls, allowlist: str, *, allow_private: bool = False) -> HostPolicy:
        """`allowlist`: comma-separated networks (`10.20.0.0/16`, `192.0.2.7`) and host names.
        Raises ValueError naming an entry that is neither."""
        networks = list(PRIVATE_NETWORKS if allow_private else ())
        hosts = set()
        for raw in allowlist.split(","):
            entry = raw.strip().lower().rstrip(".")
            if not entry:
                continue
            try:
                networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                if (
                    "/" in entry
                    or ":" in entry
                    or not entry.replace("-", "").replace(".", "").isalnum()
                ):
                    raise ValueError(
                        f"{raw.strip()!r} is neither a network nor a host name"
                    ) from None
                hosts.add(entry)
        return cls(tuple(networks), frozenset(hosts))

    @property
    def open(self) -> bool:
        """Whether the operator admits anything beyond public hosts (then plain http too)."""
        return bool(self.networks or self.hosts)

    def admits_name(self, host: str) -> bool:
        return host.lower().rstrip(".") in self.hosts and not is_metadata_host(host)

    def refusal(self, ip: IPAddress, *, named: bool = False) -> str | None:
        """Why `ip` may not be connected to, or None when it may. `named`: the address is one
        of a host name the operator listed, trusted whatever it is, but metadata never."""
        embedded = embedded_ipv4(ip)
        if embedded is not None:
            return self.refusal(embedded, named=named)
        if any(ip in net for net in METADATA_NETWORKS):
            return "a cloud metadata address"
        if named or is_public_address(ip) or any(ip in net for net in self.networks):
            return None
        return "a non-public address"


def is_metadata_host(host: str) -> bool:
    return host.lower().rstrip(".") in METADATA_HOSTS


def embedded_ipv4(ip: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address carries: IPv4-mapped, 6to4, NAT64 (64:ff9b::/96) or
    the deprecated IPv4-compatible form (::a.b.c.d, not :: or ::1)."""
    if not isinstance(ip, ipaddress.IPv6Address):
        return None
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip in _NAT64 or (ip in _IPV4_COMPATIBLE and int(ip) > 1):
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def literal_ip(host: str) -> IPAddress | None:
    """The address a host string denotes by itself, including legacy IPv4 spellings
    (decimal `2130706433`, hex `0x7f.1`, short `127.1`) that resolvers accept."""
    try:
        return ipaddress.ip_address(host.strip("[]").split("%", 1)[0])
    except ValueError:
        pass
    try:
        return ipaddress.IPv4Address(socket.inet_aton(host))
    except OSError:
        return None


def is_public_address(ip: IPAddress) -> bool:
    embedded = embedded_ipv4(ip)
    if embedded is not None:
        return is_public_address(embedded)
    # is_global excludes loopback, private, link-local, CGNAT (100.64/10), reserved, ...
    return ip.is_global and not ip.is_multicast


def check_site_url(url: str, *, policy: HostPolicy) -> str:
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
    if is_metadata_host(host):
        raise InvalidInput("site_url", "site_url points at a cloud metadata service")
    ip = literal_ip(host)
    if ip is not None:
        why = policy.refusal(ip)
        if why is not None:
            raise InvalidInput("site_url", f"site_url points at {why}")
    elif not policy.open and (
        "." not in host or host == "localhost" or host.endswith(_LOCAL_SUFFIXES)
    ):
        raise InvalidInput("site_url", "site_url must name a public host")
    if parts.scheme != "https" and not policy.open:
        raise InvalidInput("site_url", "site_url must use https")
    netloc = f"[{host}]" if ":" in host else host
    if port is not None:
        netloc = f"{netloc}:{port}"
    return f"{parts.scheme}://{netloc}{parts.path.rstrip('/')}"
