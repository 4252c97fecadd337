# One process per container serves the API, the page and live lessons, on local models from their packages.
# The install step is `make setup`, the same one CI runs, with the runtime-only lock; node and npm bundle the
# @vapi-ai/web SDK for hosted mode from the npm registry (Debian bookworm's Node 18 meets its >=18).
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    UV_NO_CACHE=1

RUN apt-get update \
    && apt-get install -y --no-install-recommends make g++ nodejs npm \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --create-home --uid 10001 tutor \
    && mkdir -p /data \
    && chown tutor /data

WORKDIR /app
COPY . /app
RUN make setup LOCK=requirements-runtime.lock PYTHON=python3.11 \
    && chown -R tutor /app/models

USER tutor
ENV TUTOR_SERVER__HOST=0.0.0.0 \
    TUTOR_SERVER__PORT=8000 \
    TUTOR_SERVER__DATA_DIR=/data
VOLUME ["/data"]
EXPOSE 8000

HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["/app/.venv/bin/python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4)"]

CMD ["/app/.venv/bin/tutor", "serve"]
