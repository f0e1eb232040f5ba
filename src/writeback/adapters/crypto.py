"""Credential sealing with MultiFernet: the first key encrypts, every key decrypts, so keys can
be rotated by prepending a new one and re-sealing at leisure."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from enum import StrEnum
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken, MultiFernet


class CredentialSealError(Exception):
    """Sealed credentials could not be opened with any configured key."""


class Reseal(StrEnum):
    RESEALED = "resealed"
    ALREADY_CURRENT = "already_current"
    UNREADABLE = "unreadable"


class FernetSealer:
    def __init__(self, keys: Sequence[str]) -> None:
        if not keys:
            raise ValueError("at least one Fernet key is required")
        fernets = [Fernet(key.encode()) for key in keys]
        self._primary = fernets[0]
        self._fernet = MultiFernet(fernets)

    def seal(self, credentials: dict[str, str]) -> bytes:
        return self._fernet.encrypt(json.dumps(credentials, sort_keys=True).encode())

    def open(self, sealed: bytes) -> dict[str, str]:
        try:
            opened: dict[str, str] = json.loads(self._fernet.decrypt(sealed))
        except InvalidToken:
            raise CredentialSealError(
                "credentials cannot be decrypted with the configured keys"
            ) from None
        return opened

    def reseal(self, sealed: bytes) -> tuple[Reseal, bytes]:
        """`sealed` under the first key. MultiFernet.rotate re-encrypts even what the first key
        already opens (fresh IV and timestamp), so that case is told apart and left as it is:
        a second rotation changes nothing."""
        try:
            self._primary.decrypt(sealed)
            return Reseal.ALREADY_CURRENT, sealed
        except InvalidToken:
            pass
        try:
            return Reseal.RESEALED, self._fernet.rotate(sealed)
        except InvalidToken:
            return Reseal.UNREADABLE, sealed


def load_or_create_key_file(path: Path) -> str:
    """The embedded default: one key kept in the data folder, readable by its owner only.
    Several processes may start at once: the key is written aside and linked into place, so
    exactly one key wins and nobody reads a half-written file."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        draft = path.with_name(f".{path.name}.{os.getpid()}")
        fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(Fernet.generate_key().decode() + "\n")
        try:
            os.link(draft, path)
        except FileExistsError:
            pass
        finally:
            draft.unlink()
    return path.read_text().strip()
