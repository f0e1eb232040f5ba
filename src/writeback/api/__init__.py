"""The Flask app factory: thin routes over the domain services."""

from __future__ import annotations

from flask import Flask

from writeback import bootstrap
from writeback.adapters.metrics import api_metrics
from writeback.api import account_settings, connections, errors, health, jobs, sessions
from writeback.api.context import TokenCache


def create_app(container: bootstrap.Container | None = None) -> Flask:
    container = container or bootstrap.build()
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = container.settings.max_body_bytes
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.extensions["writeback"] = container
    app.extensions["writeback.metrics"] = api_metrics(container.engine)
    app.extensions["writeback.tokens"] = TokenCache()
    errors.register(app)
    for blueprint in (health.bp, connections.bp, account_settings.bp, sessions.bp, jobs.bp):
        app.register_blueprint(blueprint)
    return app
