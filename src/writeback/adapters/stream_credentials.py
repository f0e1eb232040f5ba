"""The credential an `events_url` carries. A browser's EventSource cannot send a header, so the
link itself must authorise the stream; a bearer token there would end up in every access log
with the URL. Instead the service signs one job of one account, valid for minutes, with keys
derived from WRITEBACK_SECRET_KEYS under a salt of their own (nothing else signed or sealed with
those keys passes as a credential, and no credential opens anything else)."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import timedelta

from itsdangerous import BadData, SignatureExpired, TimestampSigner

from writeback.domain.accounts import Principal
from writeback.domain.errors import NotFound, Unauthorized

SALT = "writeback.job-events"


class EventsUrlExpired(Unauthorized):
    code = "events_url_expired"


class StreamCredentials:
    def __init__(self, keys: Sequence[str], lifetime: timedelta) -> None:
        # itsdangerous signs with its last key and accepts them all; the first Fernet key is the
        # newest, so a rotation keeps the links already handed out working until they expire.
        # A signed plain string, not a serialized object: every poll's answer carries one.
        self._signer = TimestampSigner(
            list(reversed(keys)), salt=SALT, digest_method=hashlib.sha256
        )
        self._max_age = round(lifetime.total_seconds())

    def issue(self, principal: Principal, job_id: str) -> str:
        """URL-safe as it is: `job.account.user.timestamp.signature`."""
        return self._signer.sign(f"{job_id}.{principal.account_id}.{principal.user_id}").decode()

    def principal(self, credential: str, job_id: str) -> Principal:
        """Who follows `job_id` with `credential`; a credential of another job sees it as
        missing, like another account's objects."""
        try:
            signed = self._signer.unsign(credential, max_age=self._max_age).decode()
        except SignatureExpired:
            raise EventsUrlExpired(
                "This events_url has expired: GET the job again (without If-None-Match) for a "
                "fresh one."
            ) from None
        except BadData:
            raise Unauthorized("The events_url credential is not valid.") from None
        signed_job, account_id, user_id = signed.rsplit(".", 2)
        if signed_job != job_id:
            raise NotFound(f"Job {job_id} not found.")
        return Principal(account_id=int(account_id), user_id=int(user_id))
