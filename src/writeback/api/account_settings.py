from __future__ import annotations

from flask import Blueprint

from writeback.api.context import authenticate_request, body, container, principal
from writeback.api.schemas import SettingsIn, settings_out

bp = Blueprint("account_settings", __name__, url_prefix="/api/v1/account-settings")
bp.before_request(authenticate_request)


@bp.get("")
def show() -> dict[str, object]:
    return settings_out(container().accounts.settings(principal()))


@bp.put("")
def update() -> dict[str, object]:
    data = body(SettingsIn)
    # Only the fields sent change; an explicit null clears a status.
    changes = {name: getattr(data, name) for name in data.model_fields_set}
    return settings_out(container().accounts.put_settings(principal(), changes))
