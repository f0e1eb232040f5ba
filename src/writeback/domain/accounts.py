"""Accounts, their users' bearer tokens, and their settings."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

from writeback.domain.errors import InvalidInput, NotFound, Unauthorized
from writeback.domain.model import Account, AccountSettings, ApiToken, User
from writeback.domain.ports import Clock, UnitOfWork, UnitOfWorkFactory

TOKEN_PREFIX = "wb_"


@dataclass(frozen=True)
class Principal:
    account_id: int
    user_id: int


@dataclass(frozen=True)
class IssuedToken:
    account_id: int
    user_id: int
    token: str


def hash_token(token: str) -> str:
    # Tokens carry 256 random bits, so a fast hash is enough: there is nothing to brute-force.
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class AccountService:
    uow: UnitOfWorkFactory
    reads: UnitOfWorkFactory  # reads that need no transaction (every request's token)
    clock: Clock

    def create_account(self, name: str) -> IssuedToken:
        if not name.strip():
            raise InvalidInput("name", "name must not be empty")
        with self.uow() as tx:
            account = Account(name=name.strip(), created_at=self.clock())
            tx.accounts.add_account(account)
            assert account.id is not None
            issued = self._issue_token(tx, account.id)
            tx.commit()
        return issued

    def create_token(self, account_id: int) -> IssuedToken:
        with self.uow() as tx:
            if tx.accounts.get_account(account_id) is None:
                raise NotFound(f"Account {account_id} does not exist.")
            issued = self._issue_token(tx, account_id)
            tx.commit()
        return issued

    def authenticate(self, token: str) -> Principal:
        with self.reads() as tx:
            found = tx.accounts.token_by_hash(hash_token(token))
            if found is None:
                raise Unauthorized("The bearer token is not valid.")
            return Principal(account_id=found.account_id, user_id=found.user_id)

    def settings(self, principal: Principal) -> AccountSettings:
        with self.uow() as tx:
            found = tx.accounts.settings(principal.account_id)
            return found or AccountSettings(principal.account_id)

    def put_settings(self, principal: Principal, changes: dict[str, int | None]) -> AccountSettings:
        with self.uow() as tx:
            settings = tx.accounts.settings(principal.account_id)
            if settings is None:
                settings = AccountSettings(principal.account_id)
                tx.accounts.add_settings(settings)
            for name, value in changes.items():
                setattr(settings, name, value)
            tx.commit()
            return settings

    def _issue_token(self, tx: UnitOfWork, account_id: int) -> IssuedToken:
        user = User(account_id=account_id, created_at=self.clock())
        tx.accounts.add_user(user)
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        assert user.id is not None
        tx.accounts.add_token(
            ApiToken(
                account_id=account_id,
                user_id=user.id,
                token_hash=hash_token(token),
                created_at=self.clock(),
            )
        )
        return IssuedToken(account_id=account_id, user_id=user.id, token=token)
