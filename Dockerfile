# syntax=docker/dockerfile:1
# ewallet-etl: the batch ELT (etl_pipeline.py, the default command: one run) and the CDC stream
# (cdc-stream.py) in one image. docker-compose.yml runs it as etl_service and cdc_service.
#   docker build -t ewallet-etl .
#   docker run --rm --env-file .env ewallet-etl            # one batch run, exit code = the run's
#   docker run --rm --env-file .env ewallet-etl ewallet-etl status   # any subcommand
# The base is pinned to a full version; pin its digest too where the registry is reachable.
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

# --- builder: a virtualenv with the pinned requirements ---------------------------------------
FROM ${PYTHON_IMAGE} AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_ROOT_USER_ACTION=ignore
RUN python -m venv /opt/venv
# Requirements before code: this layer is rebuilt when they change, not on every code edit.
COPY requirements.txt /tmp/requirements/
# Wheels only: nothing is compiled, so no compiler is needed here or left anywhere.
RUN /opt/venv/bin/pip install --only-binary=:all: \
        -r /tmp/requirements/requirements.txt
# The package itself (no dependencies: they are the pins above), for the `ewallet-etl` command;
# then pip and setuptools leave the venv.
COPY pyproject.toml README.md /src/
COPY ewallet_etl /src/ewallet_etl
RUN /opt/venv/bin/pip install --no-deps /src \
 && /opt/venv/bin/pip uninstall --yes pip setuptools

# --- runtime: the venv and the code, run as a non-root user --------------------------------
FROM ${PYTHON_IMAGE}
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
RUN groupadd --system --gid 10001 etl \
 && useradd --system --uid 10001 --gid etl --create-home --home-dir /home/etl \
        --shell /usr/sbin/nologin etl
COPY --from=builder /opt/venv /opt/venv
WORKDIR /app
# The code last, owned by root: the etl user can read and run it, not change it. .dockerignore
# keeps the context to what runs (never .env, .venv, .git or chDB data).
COPY . /app/
# Byte-code compiled now: with PYTHONDONTWRITEBYTECODE (the code is read-only anyway) every run
# would otherwise compile the package again (~20 ms of a 0.3 s incremental run).
RUN python -m compileall -q /app/ewallet_etl
USER 10001:10001
CMD ["python", "etl_pipeline.py"]
