# The consumer service image. Only the `consumer` extra is installed; versions come from the lock file.
FROM python:3.11-slim AS build
WORKDIR /src
COPY requirements/dev.lock requirements/dev.lock
COPY pyproject.toml README.md ./
COPY schemas schemas
COPY producer producer
COPY consumer consumer
RUN python -m venv /opt/venv \
    && /opt/venv/bin/pip install --no-cache-dir --constraint requirements/dev.lock ".[consumer]"

FROM python:3.11-slim
RUN useradd --system --uid 10001 --no-create-home ingest
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1
USER 10001
EXPOSE 9108
ENTRYPOINT ["labelstudio-ingest", "consume"]
