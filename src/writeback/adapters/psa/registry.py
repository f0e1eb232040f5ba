"""The PSA providers we speak to, keyed by name, built explicitly by the composition root."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial

from writeback.adapters.crypto import FernetSealer
from writeback.adapters.psa import autotask, connectwise, halopsa
from writeback.adapters.psa.budget import RequestBudget
from writeback.adapters.psa.http import HttpClient
from writeback.adapters.psa.ssrf import guard_url
from writeback.domain.model import PsaConnection
from writeback.domain.ports import PsaProvider


@dataclass(frozen=True)
class ProviderContext:
    """What a provider gets besides its connection and opened credentials."""

    http: HttpClient
    # The SSRF guard, for URLs a PSA hands back (Autotask zones, paging links): returns the
    # normalized URL or raises InvalidInput.
    check_url: Callable[[str], str]


# (connection, opened credentials, context) -> provider
Builder = Callable[[PsaConnection, dict[str, str], ProviderContext], PsaProvider]


@dataclass(frozen=True)
class ProviderSpec:
    credential_fields: tuple[str, ...]
    build: Builder


class ProviderRegistry:
    def __init__(
        self,
        specs: Mapping[str, ProviderSpec],
        *,
        sealer: FernetSealer,
        http: HttpClient,
        budget: RequestBudget,
        allow_private_hosts: bool,
    ) -> None:
        self._specs = dict(specs)
        self._sealer = sealer
        self._http = http
        self._budget = budget
        self._check_url = partial(guard_url, allow_private=allow_private_hosts)
        # At configuration time a host that does not resolve is a typo, not an outage.
        self.configure_url = partial(
            guard_url, allow_private=allow_private_hosts, unresolvable="invalid"
        )

    def credential_fields(self, provider: str) -> tuple[str, ...] | None:
        spec = self._specs.get(provider)
        return spec.credential_fields if spec else None

    def build(self, connection: PsaConnection) -> PsaProvider:
        # The site URL is judged again at connect time: DNS answers may have changed since.
        self._check_url(connection.site_url)
        spec = self._specs[connection.provider]
        credentials = self._sealer.open(connection.credentials_encrypted)
        tenant = f"{connection.site_url}|{connection.company_id}"
        http = self._http.gated(self._budget.gate(connection.provider, tenant))
        return spec.build(connection, credentials, ProviderContext(http, self._check_url))


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
        )

    return {
        "connectwise": ProviderSpec(connectwise.CREDENTIAL_FIELDS, build_connectwise),
        "autotask": ProviderSpec(autotask.CREDENTIAL_FIELDS, build_autotask),
        "halopsa": ProviderSpec(halopsa.CREDENTIAL_FIELDS, build_halopsa),
    }
