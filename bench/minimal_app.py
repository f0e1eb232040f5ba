"""The baseline of figure 3: the smallest Flask app, served by the same gunicorn setup."""

from __future__ import annotations

from flask import Flask

app = Flask(__name__)


@app.get("/minimal")
def minimal() -> dict[str, str]:
    return {"status": "ok"}
