"""gunicorn entry point: `gunicorn 'writeback.wsgi:app'`."""

from __future__ import annotations

from writeback.api import create_app

app = create_app()
