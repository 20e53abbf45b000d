# syntax=docker/dockerfile:1
# rtcstats-collector image. Two stages: the first turns the source tree into wheels
# (ours, with its analysis and ingest modules compiled by mypyc, and every
# dependency's), the second installs only those wheels, offline, on a slim base: no
# compiler, no build tools, no source tree in the final image. `rtcstats-server --version` and the start
# line say "analysis: compiled".
#
#   docker build -t rtcstats-collector .
#   docker run -p 8080:8080 -v rtcstats-data:/data rtcstats-collector
#
# Configuration: mount a file over /etc/rtcstats/rtcstats-server.yaml, or set
# RTCSTATS_<SECTION>__<KEY> variables (secrets belong there). tests/ops/test_image.py
# runs this file's steps and its CMD outside a container, so keep them plain.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
# A C compiler for the compiled modules (mypyc, below); only this stage has it.
# Debian's own versions of the day, unpinned: the compiled code does not depend on them
# (tests/analysis/test_compiled.py compares the compiled analysis and ingest with the
# pure ones).
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml setup.py README.md ./
COPY rtcstats_server ./rtcstats_server
# Every dependency ships binary wheels for this Python. Ours is built twice: first pure
# (`pip wheel .`, which also fetches the dependencies' wheels), whose dependencies are
# then installed here because mypyc type-checks the compiled modules against them (and
# PyYAML's stubs); then compiled (RTCSTATS_COMPILE=1, setup.py: the analysis pass, about
# 40 % less CPU, and the ingest path), outside pip's isolated build environment, which
# would have no mypy.
# The compiled wheel replaces the pure one in /wheels. mypy is pinned: it is the compiler.
RUN pip wheel . --wheel-dir /wheels \
    && pip install --no-index --find-links=/wheels /wheels/rtcstats_collector-*.whl \
    && pip install "mypy==2.4.1" "setuptools==80.9.0" "types-PyYAML==6.0.12.20261122" \
    && rm /wheels/rtcstats_collector-*.whl \
    && RTCSTATS_COMPILE=1 pip wheel . --no-deps --no-build-isolation --wheel-dir /wheels

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="rtcstats-collector" \
      org.opencontainers.image.description="Self-hosted collector for rtcstats WebRTC telemetry"
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
RUN --mount=type=bind,from=builder,source=/wheels,target=/wheels \
    pip install --no-index --find-links=/wheels /wheels/rtcstats_collector-*.whl \
    && groupadd --system --gid 10001 rtcstats \
    && useradd --system --uid 10001 --gid rtcstats --home-dir /data --shell /usr/sbin/nologin rtcstats \
    && mkdir -p /data /etc/rtcstats \
    && chown rtcstats:rtcstats /data
COPY config/rtcstats-server.yaml /etc/rtcstats/rtcstats-server.yaml
VOLUME ["/data"]
WORKDIR /data
USER 10001:10001
EXPOSE 8080
# slim has no curl; the port follows RTCSTATS_SERVER__PORT when an operator moves it.
HEALTHCHECK --interval=15s --timeout=5s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('RTCSTATS_SERVER__PORT', '8080'), timeout=4)"]
# SIGTERM drains: clients get 1001, every session is stored (server.shutdown_grace_s;
# give `docker stop -t` / terminationGracePeriodSeconds a few seconds more).
STOPSIGNAL SIGTERM
ENTRYPOINT ["rtcstats-server"]
CMD ["serve", "--config", "/etc/rtcstats/rtcstats-server.yaml", "--data-dir", "/data"]
