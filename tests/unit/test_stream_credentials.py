"""The credential an events_url carries: one job of one account, signed, expiring, rotatable."""

from __future__ import annotations

from datetime import timedelta

import pytest
from cryptography.fernet import Fernet
from itsdangerous.timed import TimestampSigner

from writeback.adapters.stream_credentials import EventsUrlExpired, StreamCredentials
from writeback.domain.accounts import Principal
from writeback.domain.errors import NotFound, Unauthorized

OLD, NEW = Fernet.generate_key().decode(), Fernet.generate_key().decode()
JOB, OTHER_JOB = "0c1e0c4e-8f51-4f43-9d2e-1b1a4c1b2a3e", "5d0f3b8e-0000-4000-8000-000000000001"
ME = Principal(account_id=7, user_id=3)
MINUTES = timedelta(minutes=10)


def test_a_credential_opens_its_own_job_for_its_own_account() -> None:
    credentials = StreamCredentials([NEW], MINUTES)
    credential = credentials.issue(ME, JOB)
    assert credentials.principal(credential, JOB) == ME


def test_another_job_through_an_edited_url_is_not_found() -> None:
    credentials = StreamCredentials([NEW], MINUTES)
    with pytest.raises(NotFound):
        credentials.principal(credentials.issue(ME, JOB), OTHER_JOB)


@pytest.mark.parametrize("credential", ["", "garbage", "a.b.c"])
def test_a_credential_we_did_not_sign_is_refused(credential: str) -> None:
    with pytest.raises(Unauthorized) as refused:
        StreamCredentials([NEW], MINUTES).principal(credential, JOB)
    assert refused.value.code == "unauthorized"


def test_a_tampered_credential_is_refused() -> None:
    credentials = StreamCredentials([NEW], MINUTES)
    genuine = credentials.issue(ME, JOB)
    assert genuine.startswith(f"{JOB}.{ME.account_id}.{ME.user_id}.")
    with pytest.raises(Unauthorized):  # another account's, with this signature
        credentials.principal(genuine.replace(f".{ME.account_id}.", ".8.", 1), JOB)


def test_an_expired_credential_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    credentials = StreamCredentials([NEW], MINUTES)
    with monkeypatch.context() as past:
        past.setattr(TimestampSigner, "get_timestamp", lambda self: 1_000_000_000)
        stale = credentials.issue(ME, JOB)
    with pytest.raises(EventsUrlExpired) as expired:
        credentials.principal(stale, JOB)
    assert expired.value.code == "events_url_expired"
    assert isinstance(expired.value, Unauthorized)  # answered 401 like any bad credential


def test_links_handed_out_before_a_key_rotation_keep_working() -> None:
    before = StreamCredentials([OLD], MINUTES).issue(ME, JOB)
    after_rotation = StreamCredentials([NEW, OLD], MINUTES)
    assert after_rotation.principal(before, JOB) == ME
    # New links are signed with the new key: a deployment without it refuses them.
    with pytest.raises(Unauthorized):
        StreamCredentials([OLD], MINUTES).principal(after_rotation.issue(ME, JOB), JOB)


def test_the_credential_is_not_a_fernet_token_of_the_same_keys() -> None:
    """Signed under a salt of its own: a Fernet token (sealed credentials) never passes."""
    token = Fernet(NEW.encode()).encrypt(b'["' + JOB.encode() + b'", 7, 3]').decode()
    with pytest.raises(Unauthorized):
        StreamCredentials([NEW], MINUTES).principal(token, JOB)
