"""gunicorn entry point: `gunicorn 'writeback.wsgi:app'`."""

from __future__ import annotations

from writeback import bootstrap
from writeback.adapters.logs import configure_logging
from writeback.api import create_app

container = bootstrap.build()
configure_logging(container.settings.log_format, container.settings.log_level)
app = create_app(container)
