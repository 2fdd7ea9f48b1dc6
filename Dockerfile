# heptapod container image: `podman build -t heptapod .` (or `docker build`).
# deploy/build-image.sh builds it without a Docker engine and smoke-tests it;
# deploy/README.md explains the choices below.

# ---- build stage: compiler and -dev packages, `make` only (tests run in CI) ----
FROM debian:bookworm-slim AS build

ARG DEBIAN_FRONTEND=noninteractive
# libopenblas-pthread-dev, not libopenblas-dev: the engine sets BLAS threads
# itself and must not get the OpenMP variant through the alternatives system.
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
        build-essential pkg-config \
        libopenblas-pthread-dev libmicrohttpd-dev libjansson-dev libuv1-dev \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /src
# .dockerignore admits only the Makefile, the sources it compiles and the
# default model, so local build trees and data never reach the image.
COPY . .
RUN make -j"$(nproc)" \
 && strip --strip-unneeded build/heptapod \
 && test -s models/default.safetensors && test -s models/sudoku.safetensors

# ---- runtime stage: shared libraries, one binary, one model -----------------
FROM debian:bookworm-slim

ARG DEBIAN_FRONTEND=noninteractive
# The sonames build/heptapod needs (tests/integration/test_deploy.sh checks
# this list against the binary): libopenblas.so.0, libmicrohttpd.so.12,
# libjansson.so.4, libuv.so.1. No TLS is done in-process, so no CA bundle.
# apt-get clean: a base without the official image's apt hooks would keep the
# downloaded .debs and package caches in this layer (86 MB of 135 MB).
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
        libopenblas0-pthread libmicrohttpd12 libjansson4 libuv1 \
 && apt-get clean \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin

# A fixed numeric uid so that Kubernetes' runAsNonRoot can verify it.
RUN groupadd --gid 10001 heptapod \
 && useradd --uid 10001 --gid heptapod --no-create-home --no-log-init \
        --home-dir /nonexistent --shell /usr/sbin/nologin heptapod

COPY --from=build /src/build/heptapod /usr/local/bin/heptapod
# Owned by root and read-only for the daemon, which only mmaps it.
COPY --from=build /src/models/default.safetensors /models/default.safetensors
COPY --from=build /src/models/sudoku.safetensors /models/sudoku.safetensors

USER 10001:10001
# 8080 serves the API; 8081 is the admin listener (/healthz, /readyz,
# /metrics) that probes and scrapes use, answerable while 8080 is saturated.
EXPOSE 8080 8081
# SIGTERM starts the drain: /readyz turns 503, in-flight requests finish (up to
# HEPTAPOD_DRAIN_TIMEOUT_S, default 30), then exit 0. Give the runtime a
# longer stop timeout than that (docker stop -t 40, Kubernetes
# terminationGracePeriodSeconds), or it sends SIGKILL mid-drain.
STOPSIGNAL SIGTERM
# No HEALTHCHECK: the slim image has no HTTP client to run one with, the OCI
# image format (podman's default) drops it, and Kubernetes ignores it in
# favour of the liveness and readiness probes of deploy/k8s/deployment.yaml.
# Flags beat HEPTAPOD_* variables, so host, ports and model are fixed here;
# every other setting comes from the environment (HEPTAPOD_API_KEY_FILE,
# HEPTAPOD_MAX_CONNECTIONS_PER_CLIENT, ...) or from flags appended with
# `docker run IMAGE --flag v`. Threads follow the container's CPU quota.
ENTRYPOINT ["/usr/local/bin/heptapod", "serve", "--host", "0.0.0.0", "--port", "8080", \
            "--admin-port", "8081", "--model", "/models/default.safetensors", \
            "--model", "/models/sudoku.safetensors"]
