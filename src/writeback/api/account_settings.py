from __future__ import annotations

from flask import Blueprint

from writeback.api.context import authenticate_request, body, container, principal
from writeback.api.openapi import documented
from writeback.api.responses import Settings
from writeback.api.schemas import SettingsIn

bp = Blueprint("account_settings", __name__, url_prefix="/api/v1/account-settings")
bp.before_request(authenticate_request)
TAGS = ("account",)


@bp.get("")
@documented({200: Settings}, tags=TAGS)
def show() -> dict[str, object]:
    return Settings.of(container().accounts.settings(principal())).body()


@bp.put("")
@documented({200: Settings}, json=SettingsIn, tags=TAGS)
def update() -> dict[str, object]:
    changes = body(SettingsIn).changes()
    return Settings.of(container().accounts.put_settings(principal(), changes)).body()
