# mixpeek-exporter container image.
#
#   docker build -t mixpeek-exporter .                      # online: deps from PyPI
#   scripts/build-image.sh                                   # same, with version labels filled in
#   scripts/build-image.sh --offline                         # air-gapped: deps from a host wheelhouse
#
# Air-gapped builds: put every wheel the build needs into wheels/ (scripts/build-image.sh
# --offline does it with `pip download`) and pass --build-arg PIP_NO_INDEX=1; pip then never
# contacts an index. BASE_IMAGE may be any image with python3 (>= 3.11) and its venv module,
# e.g. a Debian image with python3-venv (Debian names the interpreter python3, not python).
ARG BASE_IMAGE=python:3.11-slim

# ---- build: make the wheel, install it with its dependencies into a self-contained venv ------
FROM ${BASE_IMAGE} AS build
# 1 = install only from wheels/ (no index). ARGs are visible to pip as PIP_* environment.
ARG PIP_NO_INDEX=0
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_FIND_LINKS=/wheels \
    PIP_ROOT_USER_ACTION=ignore
WORKDIR /src
COPY wheels/ /wheels/
COPY pyproject.toml README.md config.example.yaml ./
COPY exporter/ ./exporter/
# The venv lives at the same path in both stages, so its scripts' shebangs stay valid.
# pip, setuptools and wheel are removed from it: the runtime image installs nothing.
RUN python3 -m venv /opt/mixpeek-exporter \
    && /opt/mixpeek-exporter/bin/pip wheel --no-deps --wheel-dir /dist . \
    && /opt/mixpeek-exporter/bin/pip install /dist/mixpeek_exporter-*.whl \
    && /opt/mixpeek-exporter/bin/pip uninstall --yes pip setuptools wheel \
    && /opt/mixpeek-exporter/bin/mixpeek-exporter --version

# ---- runtime: the base image plus the venv; no compiler, no pip, no caches -------------------
FROM ${BASE_IMAGE}
ARG VERSION=0.1.0
ARG REVISION=unknown
ARG CREATED=unknown
ARG SOURCE=""
ARG BASE_IMAGE
LABEL org.opencontainers.image.title="mixpeek-exporter" \
      org.opencontainers.image.description="Prometheus exporter for Mixpeek namespaces" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.base.name="${BASE_IMAGE}"
COPY --from=build /opt/mixpeek-exporter /opt/mixpeek-exporter
COPY config.example.yaml /etc/mixpeek-exporter/config.example.yaml
# PYTHONDONTWRITEBYTECODE: the root filesystem may be read-only (the Helm chart makes it so);
# the wheel's modules were byte-compiled at install time anyway.
ENV PATH=/opt/mixpeek-exporter/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HEALTHCHECK_URL=http://127.0.0.1:10117/healthz
# nobody:nogroup, numeric so that Kubernetes runAsNonRoot can verify it without /etc/passwd.
USER 65534:65534
EXPOSE 10117
# No curl in the image: urllib raises (exit 1) on anything but a 2xx. Override HEALTHCHECK_URL
# when you change --web.listen-address. (Kubernetes ignores this; the chart has its own probes.)
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["python3", "-c", "import os, urllib.request; urllib.request.urlopen(os.environ['HEALTHCHECK_URL'], timeout=4)"]
# No --config.file: like the exporter outside a container, it reads ./config.yaml when there is
# one (mount yours at /etc/mixpeek-exporter/config.yaml), else it runs on defaults with discovery
# of every namespace the key can list: `docker run -e MIXPEEK_API_KEY=... image` just works.
WORKDIR /etc/mixpeek-exporter
ENTRYPOINT ["mixpeek-exporter"]
