"""The provider registry: per-connection options validated per provider, the pasted URL mapped
to the API's, and the permanent failures of building a provider (no I/O: literal addresses)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from cryptography.fernet import Fernet

from writeback.adapters.crypto import FernetSealer
from writeback.adapters.psa.budget import DEFAULT_RATES, LocalBucket, RequestBudget
from writeback.adapters.psa.http import HttpClient
from writeback.adapters.psa.registry import ProviderRegistry, default_specs
from writeback.adapters.psa.slots import LocalSlots
from writeback.domain.errors import CredentialsUnreadable, Failure, InvalidInput, SiteUrlRefused
from writeback.domain.model import PsaConnection
from writeback.domain.site_url import HostPolicy

SEALER = FernetSealer([Fernet.generate_key().decode()])
CW_CREDENTIALS = {"public_key": "p", "private_key": "k", "client_id": "c"}


def _registry(policy: HostPolicy | None = None) -> ProviderRegistry:
    return ProviderRegistry(
        default_specs(),
        sealer=SEALER,
        http=HttpClient(timeout=1),
        budget=RequestBudget(LocalBucket(), DEFAULT_RATES),
        slots=LocalSlots(),
        host_policy=policy or HostPolicy(),
    )


def _connection(site_url: str, sealed: bytes | None = None) -> PsaConnection:
    return PsaConnection(
        account_id=1,
        provider="connectwise",
        site_url=site_url,
        company_id="ACME",
        credentials_encrypted=sealed or SEALER.seal(CW_CREDENTIALS),
        created_at=datetime.now(UTC),
    )


def test_a_connectwise_ui_host_is_stored_as_its_api_host() -> None:
    url, options = _registry().configure("connectwise", "https://eu.myconnectwise.net", None)
    assert (url, options) == ("https://api-eu.myconnectwise.net", None)


@pytest.mark.parametrize(
    ("provider", "options"),
    [
        ("connectwise", {"accept_version": "2019.5"}),
        ("autotask", {"publish": {"escalate": ["Internal Only", 4], "resolve": ["All"]}}),
        ("autotask", {"note_type": {"resolve": [2]}}),
        ("halopsa", {"closed_status_ids": [9, 30]}),
        ("halopsa", {"auth_url": "http://127.0.0.1:9/auth"}),
    ],
)
def test_valid_options_are_kept_as_given(provider: str, options: dict[str, Any]) -> None:
    registry = _registry(HostPolicy.parse("", allow_private=True))
    _, kept = registry.configure(provider, "https://psa.example", options)
    assert kept == options


@pytest.mark.parametrize(
    ("provider", "options", "field"),
    [
        ("connectwise", {"accept_version": "latest"}, "options.accept_version"),
        ("connectwise", {"acept_version": "2019.5"}, "options.acept_version"),
        ("autotask", {"publish": {"close": ["x"]}}, "options.publish.close"),
        ("halopsa", {"closed_status_ids": ["nine"]}, "options.closed_status_ids.0"),
        ("halopsa", {"auth_url": "http://169.254.169.254/auth"}, "options.auth_url"),
        ("halopsa", {"auth_url": "https://10.0.0.1/auth"}, "options.auth_url"),
    ],
)
def test_invalid_options_name_the_field_at_fault(
    provider: str, options: dict[str, Any], field: str
) -> None:
    with pytest.raises(InvalidInput) as caught:
        _registry().configure(provider, "https://psa.example", options)
    assert caught.value.field == field


def test_a_site_url_the_guard_now_refuses_is_a_permanent_site_url_refused() -> None:
    with pytest.raises(SiteUrlRefused) as caught:
        _registry().build(_connection("https://10.0.0.1"))
    assert caught.value.failed == "site_url" and caught.value.failure is Failure.PERMANENT


def test_credentials_no_key_opens_are_credentials_unreadable() -> None:
    other = FernetSealer([Fernet.generate_key().decode()]).seal(CW_CREDENTIALS)
    with pytest.raises(CredentialsUnreadable) as caught:
        _registry().build(_connection("https://93.184.216.34", sealed=other))
    assert caught.value.failure is Failure.PERMANENT
    assert "p" not in caught.value.message.split()  # no credential in the message
