"""gunicorn entry point: `gunicorn 'writeback.wsgi:app'`."""

from __future__ import annotations

from writeback import bootstrap
from writeback.adapters.logs import configure_logging
from writeback.api import create_app

# gthread runs 32 threads, most of them asleep in event streams; the database sees at most
# this many connections per engine from each API process, the rest wait their turn.
API_DB_CONNECTIONS = 8

container = bootstrap.build(db_connections=API_DB_CONNECTIONS)
configure_logging(container.settings.log_format, container.settings.log_level)
app = create_app(container)
