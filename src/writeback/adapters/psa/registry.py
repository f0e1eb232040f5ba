"""The PSA providers we speak to, keyed by name, built explicitly by the composition root."""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from writeback.adapters.crypto import CredentialSealError, FernetSealer
from writeback.adapters.psa import autotask, connectwise, halopsa
from writeback.adapters.psa.budget import RequestBudget, budget_key_of
from writeback.adapters.psa.http import Admit, HttpClient
from writeback.adapters.psa.slots import ConcurrencyLimit, Release, Slots, no_slot, slot_taker
from writeback.adapters.psa.ssrf import AddressVetter, guard_url
from writeback.domain.errors import CredentialsUnreadable, InvalidInput, SiteUrlRefused
from writeback.domain.model import PsaConnection
from writeback.domain.ports import PsaProvider
from writeback.domain.site_url import HostPolicy


@dataclass(frozen=True)
class ProviderContext:
    """What a provider gets besides its connection and opened credentials."""

    http: HttpClient
    # The SSRF guard, for URLs a PSA hands back (Autotask zones, Halo auth servers): returns
    # the normalized URL or raises InvalidInput.
    check_url: Callable[[str], str]


# (connection, opened credentials, context) -> provider
Builder = Callable[[PsaConnection, dict[str, str], ProviderContext], PsaProvider]


class NoOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")


@dataclass(frozen=True)
class ProviderSpec:
    credential_fields: tuple[str, ...]
    build: Builder
    # The per-connection options the provider accepts (fields ending in `_url` pass the guard).
    options: type[BaseModel] = NoOptions
    # The URL users paste, mapped to the API's (ConnectWise's UI hosts to their API hosts).
    api_url: Callable[[str], str] = str
    # The vendor's documented limit on requests in flight at once, if it has one.
    concurrency: ConcurrencyLimit | None = None


class ProviderRegistry:
    def __init__(
        self,
        specs: Mapping[str, ProviderSpec],
        *,
        sealer: FernetSealer,
        http: HttpClient,
        budget: RequestBudget,
        slots: Slots,
        host_policy: HostPolicy,
    ) -> None:
        self._specs = dict(specs)
        self._sealer = sealer
        vet = AddressVetter(host_policy)
        # Every connection to a PSA resolves, vets and connects to one address (no rebinding).
        self._http = http.pinned(vet)
        self._budget = budget
        self._slots = slots
        # A request's answer is due within its timeout; twice that also covers a PSA still
        # working on a request whose answer we gave up on (its slot is kept until then).
        self._slot_lease = 2 * http.timeout
        self._person = False
        self._check_url = partial(guard_url, vet=vet)
        # At configuration time a host that does not resolve is a typo, not an outage.
        self.configure_url = partial(guard_url, vet=vet, unresolvable="invalid")

    def credential_fields(self, provider: str) -> tuple[str, ...] | None:
        spec = self._specs.get(provider)
        return spec.credential_fields if spec else None

    def configure(
        self, provider: str, site_url: str, options: Mapping[str, Any] | None
    ) -> tuple[str, dict[str, Any] | None]:
        """The site URL as the provider's API wants it, and the options validated (only those
        given are kept, so later default changes reach the connection). InvalidInput names
        `options.<field>` at fault."""
        spec = self._specs.get(provider)
        if spec is None:  # the service refuses the provider by name
            return site_url, None
        try:
            given = spec.options.model_validate(options or {}).model_dump(
                mode="json", exclude_unset=True
            )
        except ValidationError as exc:
            error = exc.errors()[0]
            loc = [str(part) for part in error["loc"] if part != "[key]"]  # a bad dict key
            where = ".".join(["options", *loc])
            raise InvalidInput(where, f"{where}: {error['msg']}") from None
        for name, value in given.items():
            if name.endswith("_url") and value is not None:
                try:
                    given[name] = self.configure_url(value)
                except InvalidInput as exc:
                    raise InvalidInput(f"options.{name}", exc.message) from None
        return spec.api_url(site_url), given or None

    def interactive(self) -> ProviderRegistry:
        """This registry for the calls a person waits on (connection checks, boards, statuses):
        they may spend the budget's reserve and wait briefly for a token, where a job is held."""
        clone = copy.copy(self)
        clone._person = True
        return clone

    def build(
        self,
        connection: PsaConnection,
        requests: int = 1,
        *,
        before_write: Callable[[], None] | None = None,
    ) -> PsaProvider:
        """`requests`: what the caller is about to send, paid from the budget at once.
        `before_write`: called right before each request but a GET or HEAD is sent, once its
        budget and slot are granted; what it raises aborts the request unsent."""
        spec = self._specs[connection.provider]
        # The site URL is judged again at connect time: DNS answers may have changed since.
        try:
            self._check_url(connection.site_url)
        except InvalidInput as exc:
            raise SiteUrlRefused(exc.message, failed="site_url") from None
        try:
            credentials = self._sealer.open(connection.credentials_encrypted)
        except CredentialSealError as exc:
            raise CredentialsUnreadable(str(exc), failed="credentials") from None
        admit = self._admission(connection, spec.concurrency, credentials, requests)
        http = self._http.gated(connection.provider, admit, before_write)
        return spec.build(connection, credentials, ProviderContext(http, self._check_url))

    def _admission(
        self,
        connection: PsaConnection,
        limit: ConcurrencyLimit | None,
        credentials: Mapping[str, str],
        requests: int,
    ) -> Admit:
        """A request's way out: its budget tokens, then a slot of the vendor's concurrency
        limit. Tokens first, so that no slot is held while a person waits for a token."""
        provider, key = connection.provider, budget_key_of(connection)
        pay = self._budget.gate(provider, key, requests, person=self._person)
        take_slot = (
            no_slot
            if limit is None
            else slot_taker(
                self._slots,
                limit,
                f"{provider}:{key}:{limit.scope(credentials)}",
                lease=self._slot_lease,
            )
        )

        def admit(url: str) -> Release:
            pay()
            return take_slot(url)

        return admit


def default_specs(*, cw_process_notifications: bool = False) -> dict[str, ProviderSpec]:
    """`cw_process_notifications`: let ConnectWise run its e-mail and workflow notifications
    for our notes (off by default: the writeback should not page anyone)."""
    codebases = connectwise.CodebaseCache()

    def build_connectwise(
        connection: PsaConnection, credentials: dict[str, str], context: ProviderContext
    ) -> PsaProvider:
        return connectwise.ConnectWiseProvider(
            site_url=connection.site_url,
            company_id=connection.company_id,
            credentials=credentials,
            http=context.http,
            codebases=codebases,
            process_notifications=cw_process_notifications,
            options=connectwise.Options.model_validate(connection.options or {}),
        )

    autotask_cache = autotask.AutotaskCache()

    def build_autotask(
        connection: PsaConnection, credentials: dict[str, str], context: ProviderContext
    ) -> PsaProvider:
        # company_id is only a label for Autotask: the API user's zone decides the tenant.
        return autotask.AutotaskProvider(
            site_url=connection.site_url,
            credentials=credentials,
            http=context.http,
            cache=autotask_cache,
            check_url=context.check_url,
            note_styles=autotask.Options.model_validate(connection.options or {}).note_styles(),
        )

    halo_cache = halopsa.HaloCache()

    def build_halopsa(
        connection: PsaConnection, credentials: dict[str, str], context: ProviderContext
    ) -> PsaProvider:
        return halopsa.HaloProvider(
            site_url=connection.site_url,
            tenant=connection.company_id,
            credentials=credentials,
            http=context.http,
            cache=halo_cache,
            check_url=context.check_url,
            options=halopsa.Options.model_validate(connection.options or {}),
        )

    return {
        "connectwise": ProviderSpec(
            connectwise.CREDENTIAL_FIELDS,
            build_connectwise,
            connectwise.Options,
            connectwise.api_site_url,
        ),
        "autotask": ProviderSpec(
            autotask.CREDENTIAL_FIELDS,
            build_autotask,
            autotask.Options,
            concurrency=autotask.THREAD_LIMIT,
        ),
        "halopsa": ProviderSpec(halopsa.CREDENTIAL_FIELDS, build_halopsa, halopsa.Options),
    }
