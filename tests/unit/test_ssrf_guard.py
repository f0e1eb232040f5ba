"""The SSRF guard's address rules and its connect-time check, with fake DNS (no I/O)."""

from __future__ import annotations

import ipaddress
import socket
from typing import Any

import pytest

from writeback.adapters.psa.ssrf import AddressVetter, guard_url
from writeback.config import ConfigError, load_settings
from writeback.domain.errors import InvalidInput, PsaTransientError, SiteUrlRefused
from writeback.domain.site_url import HostPolicy, check_site_url

PUBLIC_ONLY = HostPolicy()
PRIVATE = HostPolicy.parse("", allow_private=True)  # WRITEBACK_PSA_ALLOW_PRIVATE_HOSTS=1
EVERYTHING = HostPolicy.parse("0.0.0.0/0,::/0")
METADATA_ADDRESSES = [
    "169.254.169.254",
    "169.254.0.1",
    "fe80::1",
    "fd00:ec2::254",
    "::ffff:169.254.169.254",  # IPv4-mapped
    "64:ff9b::a9fe:a9fe",  # NAT64 of 169.254.169.254
    "2002:a9fe:a9fe::1",  # 6to4 of 169.254.169.254
    "::a9fe:a9fe",  # IPv4-compatible
]


def _resolver(*addresses: str) -> Any:
    def resolve(host: str, port: int, **_: Any) -> list[tuple[Any, ...]]:
        if not addresses:
            raise socket.gaierror("no such host")
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port)) for a in addresses]

    return resolve


def _guard(url: str, policy: HostPolicy, *addresses: str, **kwargs: Any) -> str:
    return guard_url(url, vet=AddressVetter(policy, _resolver(*addresses)), **kwargs)


@pytest.mark.parametrize(
    "policy", [PUBLIC_ONLY, PRIVATE, EVERYTHING], ids=["public", "private", "all"]
)
@pytest.mark.parametrize("address", METADATA_ADDRESSES)
def test_cloud_metadata_is_never_a_psa_whatever_the_settings(
    policy: HostPolicy, address: str
) -> None:
    with pytest.raises(InvalidInput, match="metadata"):
        _guard("https://psa.example", policy, address)
    with pytest.raises(SiteUrlRefused):
        AddressVetter(policy)(address, 443)


@pytest.mark.parametrize(
    "host", ["metadata", "metadata.google.internal", "METADATA.google.internal."]
)
def test_metadata_host_names_are_refused_even_when_the_operator_lists_them(host: str) -> None:
    policy = HostPolicy.parse(f"{host.rstrip('.')},0.0.0.0/0", allow_private=True)
    with pytest.raises(InvalidInput, match="metadata"):
        check_site_url(f"http://{host}", policy=policy)


def test_a_host_name_the_operator_lists_is_trusted_but_never_for_metadata() -> None:
    policy = HostPolicy.parse("psa.corp.example")
    assert _guard("http://psa.corp.example:8080", policy, "10.9.8.7") == (
        "http://psa.corp.example:8080"
    )
    with pytest.raises(InvalidInput):
        _guard("https://psa.corp.example", policy, "169.254.169.254")
    with pytest.raises(InvalidInput):  # another private name is still refused
        _guard("https://other.corp.example", policy, "10.9.8.7")


def test_allowed_networks_admit_their_addresses_and_nothing_else_private() -> None:
    policy = HostPolicy.parse("10.20.0.0/16, 192.0.2.7")
    assert _guard("https://psa.corp.example", policy, "10.20.3.4") == "https://psa.corp.example"
    assert check_site_url("https://192.0.2.7", policy=policy) == "https://192.0.2.7"
    for address in ("10.21.0.1", "127.0.0.1", "192.168.1.1"):
        with pytest.raises(InvalidInput):
            _guard("https://psa.corp.example", policy, address)


def test_the_old_flag_means_loopback_and_private_ranges() -> None:
    for address in ("127.0.0.1", "10.0.0.7", "172.16.5.4", "192.168.1.1", "::1", "fd12::1"):
        assert _guard("http://cw.local:8089", PRIVATE, address) == "http://cw.local:8089"


@pytest.mark.parametrize(
    ("address", "admitted"),
    [
        ("64:ff9b::808:808", True),  # NAT64 of 8.8.8.8
        ("64:ff9b::a00:1", False),  # NAT64 of 10.0.0.1
        ("2002:808:808::1", True),  # 6to4 of 8.8.8.8
        ("2002:7f00:1::1", False),  # 6to4 of 127.0.0.1
        ("::7f00:1", False),  # IPv4-compatible 127.0.0.1
        ("::ffff:10.0.0.1", False),
    ],
)
def test_embedded_ipv4_addresses_are_judged_by_the_ipv4_address(
    address: str, admitted: bool
) -> None:
    assert (PUBLIC_ONLY.refusal(ipaddress.ip_address(address)) is None) is admitted


@pytest.mark.parametrize(
    "address",
    ["10.0.0.7", "127.0.0.1", "100.64.1.1", "::1", "::ffff:10.0.0.1", "fd00::1", "0.0.0.0"],
)
def test_a_public_name_resolving_to_a_private_address_is_refused(address: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        _guard("https://psa.rebind.example", PUBLIC_ONLY, address)
    assert caught.value.field == "site_url"


def test_any_refused_address_among_several_is_refused() -> None:
    with pytest.raises(InvalidInput):
        _guard("https://psa.example", PUBLIC_ONLY, "203.0.113.9", "192.168.1.4")


def test_a_host_with_public_addresses_passes_and_is_pinned_to_the_first() -> None:
    assert _guard("https://psa.example/", PUBLIC_ONLY, "8.8.8.8") == "https://psa.example"
    assert AddressVetter(PUBLIC_ONLY, _resolver("8.8.8.8", "8.8.4.4"))("psa.example", 443) == (
        "8.8.8.8"
    )


def test_an_unresolvable_host_is_invalid_when_configuring_and_transient_when_connecting() -> None:
    with pytest.raises(InvalidInput):
        _guard("https://nx.example", PUBLIC_ONLY, unresolvable="invalid")
    with pytest.raises(PsaTransientError):
        _guard("https://nx.example", PUBLIC_ONLY)


def test_private_host_names_need_an_allowlist_and_http_needs_one_too() -> None:
    for url in ("https://intranet", "https://psa.corp.internal", "http://psa.example"):
        with pytest.raises(InvalidInput):
            check_site_url(url, policy=PUBLIC_ONLY)
    assert check_site_url("http://intranet:8080", policy=PRIVATE) == "http://intranet:8080"


def test_the_allowlist_is_read_from_the_environment_and_a_typo_stops_start_up() -> None:
    settings = load_settings({"WRITEBACK_PSA_ALLOWED_NETWORKS": "10.20.0.0/16,psa.corp.example"})
    assert settings.psa_host_policy == HostPolicy.parse("10.20.0.0/16,psa.corp.example")
    with pytest.raises(ConfigError, match="WRITEBACK_PSA_ALLOWED_NETWORKS"):
        load_settings({"WRITEBACK_PSA_ALLOWED_NETWORKS": "10.20.0.0/33"})
