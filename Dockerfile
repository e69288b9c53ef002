# The consumer service image: `labelstudio-ingest consume` with only the `consumer` extra installed,
# versions pinned by requirements/dev.lock. No Docker engine runs in CI: tests/deploy/test_image.py
# runs this file's build-stage COPY and RUN steps in a fresh virtual environment (keep them plain
# `COPY <repo path> <dest>` and shell commands on /opt/venv) and the ENTRYPOINT with `--help`.

# --- build: a virtual environment with the package and its consumer dependencies -------------------
FROM python:3.11.14-slim-bookworm AS build
WORKDIR /src
COPY requirements/dev.lock requirements/dev.lock
COPY pyproject.toml README.md ./
COPY schemas schemas
COPY producer producer
COPY consumer consumer
RUN python -m venv /opt/venv \
    && /opt/venv/bin/pip install --no-cache-dir --disable-pip-version-check \
       --constraint requirements/dev.lock ".[consumer]"

# --- runtime: the venv only, a non-root user, a read-only root file system is fine ----------------
FROM python:3.11.14-slim-bookworm
RUN useradd --system --uid 10001 --user-group --no-create-home --shell /usr/sbin/nologin ingest
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    INGEST_METRICS_PORT=9464
USER 10001:10001
# /metrics, /healthz and /readyz (INGEST_METRICS_PORT).
EXPOSE 9464
HEALTHCHECK --interval=15s --timeout=3s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('INGEST_METRICS_PORT', '9464'), timeout=2)"]
ENTRYPOINT ["labelstudio-ingest", "consume"]
