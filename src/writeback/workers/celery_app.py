"""Worker, beat and Flower entry point: `celery -A writeback.workers.celery_app ...`.

Celery finds the app as a module attribute, so this entry module (and nothing imported by
others) builds it: the object is lazy and opens no connection until the worker starts.
"""

from __future__ import annotations

from writeback.adapters.queue import create_celery_app
from writeback.config import load_settings

app = create_celery_app(load_settings(), include=("writeback.workers.tasks",))
