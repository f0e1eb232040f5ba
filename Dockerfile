# One image for every process of the stack (api, worker, beat, flower, migrate).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app
# The locked dependencies first (a layer that changes only with the lock), hash-checked.
COPY requirements.lock ./
RUN pip install --require-hashes -r requirements.lock
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip install --no-deps . && useradd --system --uid 10001 --home-dir /app writeback
USER writeback
EXPOSE 8000 5555 9808
CMD ["gunicorn", "--bind", "0.0.0.0:8000", "writeback.wsgi:app"]
