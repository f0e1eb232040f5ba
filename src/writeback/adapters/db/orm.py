"""Classical mapping: the domain's plain classes are mapped onto the Core tables, so the domain
imports nothing of SQLAlchemy."""

from __future__ import annotations

import threading

from sqlalchemy.orm import registry

from writeback.adapters.db import tables
from writeback.domain import model

_registry = registry()
_lock = threading.Lock()
_mapped = False


def start_mappers() -> None:
    """Map once per process; safe to call from every composition root."""
    global _mapped
    with _lock:
        if _mapped:
            return
        _registry.map_imperatively(model.Account, tables.accounts)
        _registry.map_imperatively(model.User, tables.users)
        _registry.map_imperatively(model.ApiToken, tables.api_tokens)
        _registry.map_imperatively(
            model.AccountSettings,
            tables.account_settings,
            exclude_properties=["cw_resolved_status_id", "cw_escalated_status_id"],
        )
        _registry.map_imperatively(model.PsaConnection, tables.psa_connections)
        _registry.map_imperatively(model.AiSession, tables.ai_sessions)
        _registry.map_imperatively(model.StatusMapping, tables.status_mappings)
        _mapped = True
