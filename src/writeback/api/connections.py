from __future__ import annotations

from flask import Blueprint

from writeback.api.context import authenticate_request, body, container, principal
from writeback.api.schemas import ConnectionIn, connection_out
from writeback.domain import services
from writeback.domain.model import utcnow

bp = Blueprint("psa_connections", __name__, url_prefix="/api/v1/psa-connections")
bp.before_request(authenticate_request)


@bp.post("")
def create() -> tuple[dict[str, object], int]:
    data, c = body(ConnectionIn), container()
    connection = services.create_connection(
        principal(),
        provider=data.provider,
        site_url=data.site_url,
        company_id=data.company_id,
        credentials=data.credentials,
        uow=c.uow,
        sealer=c.sealer,
        registry=c.registry,
        allow_private_hosts=c.settings.allow_private_psa_hosts,
        clock=utcnow,
    )
    return connection_out(connection), 201


@bp.get("/<int:connection_id>")
def show(connection_id: int) -> dict[str, object]:
    return connection_out(services.get_connection(principal(), connection_id, uow=container().uow))
