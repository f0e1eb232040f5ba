"""The SSRF pin (adapters/psa/http.py, `_Vetted`) overrides urllib3's private
`HTTPConnection._new_conn` and reads its private `_dns_host`: urllib3 2.x has no public hook to
choose the address a connection opens (a resolver hook is proposed upstream, not released).
If an urllib3 upgrade renames either, connections would resolve the name again, outside the
guard: these tests fail first, naming what changed. No socket is opened."""

from __future__ import annotations

import pytest

from writeback.adapters.psa.http import PinnedAdapter


class Vetted(Exception):
    """Raised by the vetter instead of answering: proof that the connection asked it."""


def _refuse(host: str, port: int) -> str:
    raise Vetted(host, port)


@pytest.mark.parametrize(("scheme", "port"), [("http", 80), ("https", 443)])
def test_urllib3_still_opens_connections_through_the_overridden_private_hook(
    scheme: str, port: int
) -> None:
    pool = PinnedAdapter(_refuse).poolmanager.pool_classes_by_scheme[scheme]
    connection = pool.ConnectionCls("psa.example.invalid.", port)

    try:
        connection.connect()
        asked: tuple[object, ...] = ()
    except Vetted as vetted:
        asked = vetted.args
    except Exception as other:  # urllib3 connected on its own: the override was bypassed
        asked = (other,)
    assert asked == ("psa.example.invalid.", port), (
        "urllib3's HTTPConnection._new_conn or _dns_host changed: the SSRF pin in "
        f"adapters/psa/http.py must be adapted before this urllib3 is used (got {asked!r})"
    )
