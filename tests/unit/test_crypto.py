from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from writeback.adapters.crypto import (
    CredentialSealError,
    FernetSealer,
    Reseal,
    load_or_create_key_file,
)

CREDS = {"public_key": "pub", "private_key": "very-secret", "client_id": "cid"}


def test_sealed_credentials_round_trip_and_hide_the_secret() -> None:
    sealer = FernetSealer([Fernet.generate_key().decode()])
    sealed = sealer.seal(CREDS)
    assert b"very-secret" not in sealed
    assert sealer.open(sealed) == CREDS


def test_rotation_keeps_old_ciphertexts_readable() -> None:
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    sealed_with_old = FernetSealer([old]).seal(CREDS)
    rotated = FernetSealer([new, old])
    assert rotated.open(sealed_with_old) == CREDS
    outcome, resealed = rotated.reseal(sealed_with_old)
    assert outcome is Reseal.RESEALED
    assert FernetSealer([new]).open(resealed) == CREDS


def test_resealing_twice_changes_nothing_the_second_time() -> None:
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    rotated = FernetSealer([new, old])
    _, resealed = rotated.reseal(FernetSealer([old]).seal(CREDS))
    assert rotated.reseal(resealed) == (Reseal.ALREADY_CURRENT, resealed)


def test_a_credential_no_key_opens_is_reported_not_raised() -> None:
    sealed = FernetSealer([Fernet.generate_key().decode()]).seal(CREDS)
    assert FernetSealer([Fernet.generate_key().decode()]).reseal(sealed) == (
        Reseal.UNREADABLE,
        sealed,
    )


def test_wrong_key_is_a_clear_error_without_the_ciphertext() -> None:
    sealed = FernetSealer([Fernet.generate_key().decode()]).seal(CREDS)
    with pytest.raises(CredentialSealError) as caught:
        FernetSealer([Fernet.generate_key().decode()]).open(sealed)
    assert sealed.decode() not in str(caught.value)


def test_embedded_key_file_is_created_once_and_private(tmp_path: Path) -> None:
    path = tmp_path / "data" / "secret.key"
    key = load_or_create_key_file(path)
    assert load_or_create_key_file(path) == key
    assert path.stat().st_mode & 0o777 == 0o600
    FernetSealer([key])  # a valid Fernet key
