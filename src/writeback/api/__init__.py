"""The Flask app factory: thin routes over the domain services."""

from __future__ import annotations

from flask import Flask
from flask_cors import CORS
from werkzeug.routing import IntegerConverter

from writeback import bootstrap
from writeback.adapters.metrics import api_metrics
from writeback.api import (
    account_settings,
    connections,
    errors,
    health,
    jobs,
    openapi,
    sessions,
)
from writeback.api.context import TokenCache

# What a browser frontend may send and read across origins.
CORS_HEADERS = {
    "allow_headers": ["Authorization", "Content-Type", "If-None-Match", "Last-Event-ID"],
    "expose_headers": ["ETag", "Retry-After", "Location"],
    "methods": ["GET", "POST", "PUT", "PATCH"],
    "max_age": 600,
}


class RowId(IntegerConverter):
    """`int(min=…, max=…)` in our routes: an id out of range is a row that does not exist, so
    every method answers 404. Werkzeug's own converter rejects it while matching, and then
    answers 405 to any method but GET, because the GET rule's pattern matched the URL."""

    def to_python(self, value: str) -> int:
        number = int(value)
        if self.max is not None and number > self.max:
            return int(self.max) + 1
        return number


def create_app(container: bootstrap.Container | None = None) -> Flask:
    container = container or bootstrap.build()
    app = Flask(__name__)
    app.url_map.converters["int"] = RowId  # before any route is added
    app.config["MAX_CONTENT_LENGTH"] = container.settings.max_body_bytes
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.extensions["writeback"] = container
    app.extensions["writeback.metrics"] = api_metrics(container.engine)
    app.extensions["writeback.tokens"] = TokenCache()
    errors.register(app)
    for blueprint in (
        health.bp,
        connections.bp,
        account_settings.bp,
        sessions.bp,
        jobs.bp,
        openapi.bp,
    ):
        app.register_blueprint(blueprint)
    if container.settings.cors_origins:  # none by default: same-origin only
        CORS(
            app,
            resources={r"/api/*": {"origins": list(container.settings.cors_origins)}},
            **CORS_HEADERS,  # type: ignore[arg-type]
        )
    return app
