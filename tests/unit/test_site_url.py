from __future__ import annotations

import pytest

from writeback.domain.errors import InvalidInput
from writeback.domain.site_url import HostPolicy, check_site_url

PRIVATE = HostPolicy.parse("", allow_private=True)


@pytest.mark.parametrize(
    "url",
    [
        "https://127.0.0.1",
        "https://localhost",
        "https://10.1.2.3",
        "https://192.168.0.10:8443",
        "https://172.16.5.4",
        "https://169.254.169.254",  # cloud metadata
        "https://100.64.0.1",  # CGNAT
        "https://[::1]",
        "https://[::ffff:127.0.0.1]",  # IPv4-mapped IPv6
        "https://2130706433",  # decimal 127.0.0.1
        "https://0x7f000001",  # hex
        "https://0177.0.0.1",  # octal
        "https://127.1",  # short form
        "https://intranet",
        "https://psa.corp.internal",
        "http://api-na.myconnectwise.net",
        "ftp://api-na.myconnectwise.net",
        "https://user:pw@api-na.myconnectwise.net",
        "not a url",
    ],
)
def test_non_public_or_unsafe_site_urls_are_refused(url: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        check_site_url(url, policy=HostPolicy())
    assert caught.value.field == "site_url"


def test_public_https_url_is_normalized() -> None:
    assert check_site_url("https://API-NA.myconnectwise.net/", policy=HostPolicy()) == (
        "https://api-na.myconnectwise.net"
    )


def test_operator_may_allow_private_hosts_and_plain_http() -> None:
    assert check_site_url("http://127.0.0.1:8089", policy=PRIVATE) == "http://127.0.0.1:8089"


def test_even_allowed_private_urls_must_not_carry_credentials() -> None:
    with pytest.raises(InvalidInput):
        check_site_url("http://u:p@127.0.0.1", policy=PRIVATE)
