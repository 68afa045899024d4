# syntax=docker/dockerfile:1
# ewallet-etl: the batch ELT (etl_pipeline.py, the default command: one run) and the CDC stream
# (cdc-stream.py) in one image. docker-compose.yml runs it as etl_service (the `loop` profile);
# its other app services (Dagster's, cdc_service, mongo_etl_service) run the `dagster` target.
#   docker build -t ewallet-etl .
#   docker run --rm --env-file .env ewallet-etl            # one batch run, exit code = the run's
#   docker run --rm --env-file .env ewallet-etl ewallet-etl status   # any subcommand
# The target `dagster` is the same image plus Dagster (the extra `dagster`): docker-compose.yml's
# dagster_webserver and dagster_daemon. The default (last) target stays the plain one-shot image.
#   docker build --target dagster -t ewallet-etl-dagster .
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
# The package itself (no dependencies: they are the pins above), for the `ewallet-etl` command.
COPY pyproject.toml README.md /src/
COPY ewallet_etl /src/ewallet_etl
RUN /opt/venv/bin/pip install --no-deps /src

# --- the two venvs: plain, and with Dagster; pip and setuptools leave both --------------------
FROM builder AS builder-plain
RUN /opt/venv/bin/pip uninstall --yes pip setuptools

FROM builder AS builder-dagster
RUN /opt/venv/bin/pip install --only-binary=:all: \
        dagster==1.13.28 dagster-webserver==1.13.28 matplotlib==3.10.8 \
 && /opt/venv/bin/pip uninstall --yes pip setuptools

# --- runtime: a non-root user, the code read-only --------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
RUN groupadd --system --gid 10001 etl \
 && useradd --system --uid 10001 --gid etl --create-home --home-dir /home/etl \
        --shell /usr/sbin/nologin etl
WORKDIR /app

# --- target dagster: webserver and daemon (docker-compose.yml), storage on a volume -----------
FROM runtime AS dagster
COPY --from=builder-dagster /opt/venv /opt/venv
COPY . /app/
RUN python -m compileall -q /app/ewallet_etl \
 && mkdir -p /opt/dagster/home && chown 10001:10001 /opt/dagster/home
ENV DAGSTER_HOME=/opt/dagster/home
USER 10001:10001
# The code location from /app/pyproject.toml ([tool.dagster]).
CMD ["dagster-webserver", "-h", "0.0.0.0", "-p", "3000"]

# --- the default target: the plain one-shot ETL image ----------------------------------------
FROM runtime
COPY --from=builder-plain /opt/venv /opt/venv
# The code last, owned by root: the etl user can read and run it, not change it. .dockerignore
# keeps the context to what runs (never .env, .venv, .git or chDB data).
COPY . /app/
# Byte-code compiled now: with PYTHONDONTWRITEBYTECODE (the code is read-only anyway) every run
# would otherwise compile the package again (~20 ms of a 0.3 s incremental run).
RUN python -m compileall -q /app/ewallet_etl
USER 10001:10001
CMD ["python", "etl_pipeline.py"]
