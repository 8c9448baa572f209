# syncd image: docker build -t syncd . ; run with the course tree mounted read-only:
#   docker run -v /srv/creatoros/outputs/courses:/courses:ro -e DATABASE_URL=... syncd
# BASE_IMAGE: any image with Python 3.11+ (python3 -m venv) and useradd; the suite builds
# on a Debian base made with mmdebstrap (tests/containers.py). With podman, build with
# --format docker: the OCI format drops the HEALTHCHECK.
ARG BASE_IMAGE=python:3.11-slim

FROM ${BASE_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
RUN python3 -m venv /opt/venv
# Dependencies first (a layer that changes only with pyproject.toml): install the
# project from its metadata with an empty package, then the real code on top.
COPY pyproject.toml README.md ./
RUN mkdir -p syncd schema && touch syncd/__init__.py \
    && /opt/venv/bin/pip install --no-cache-dir . \
    && rm -rf syncd
COPY syncd ./syncd
COPY schema ./schema
RUN /opt/venv/bin/pip install --no-cache-dir --no-deps --force-reinstall .

FROM ${BASE_IMAGE}
RUN groupadd --system --gid 10001 syncd \
    && useradd --system --uid 10001 --gid syncd --home-dir /var/lib/syncd --create-home --shell /usr/sbin/nologin syncd
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    SYNCD_ROOT=/courses \
    SYNCD_DATA_DIR=/var/lib/syncd/postgres \
    SYNCD_LOG_FORMAT=json \
    SYNCD_SOURCE_REQUIRED=1 \
    PYTHONUNBUFFERED=1
VOLUME ["/courses", "/var/lib/syncd"]
USER 10001:10001
WORKDIR /var/lib/syncd
# `syncd health` reads the state the daemon writes (/var/lib/syncd/health.json): unhealthy
# when it has stalled, or the database has been unreachable for SYNCD_HEALTH_UNREACHABLE_AFTER
# seconds (60); no database call, nothing written.
HEALTHCHECK --interval=30s --timeout=10s --start-period=60s --retries=3 CMD ["syncd", "health"]
ENTRYPOINT ["syncd"]
CMD ["run"]
