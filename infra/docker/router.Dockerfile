# syntax=docker/dockerfile:1
# The Crossbar.io WAMP router with the project's config, launcher and device authorizer.
# Build from the repository root (infra/docker/README.md):
#   docker build -f infra/docker/router.Dockerfile -t edgecloud/router:0.1.0 .
# Crossbar pins idna<2.6, so it gets a venv of its own (like .venv-router), installed from
# router.requirements.txt: every package pinned with its hashes.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ARG UV_VERSION=0.13.9
RUN pip install --no-cache-dir "uv==${UV_VERSION}"
# bjdata and py-ubjson ship only source distributions: their C codecs need a compiler.
RUN apt-get update \
    && apt-get install --yes --no-install-recommends gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/*
ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never
RUN uv venv --python /usr/local/bin/python3.11 /opt/router-venv
RUN --mount=type=cache,target=/root/.cache/uv \
    --mount=type=bind,source=infra/docker/router.requirements.txt,target=/tmp/router.requirements.txt \
    uv pip sync --python /opt/router-venv/bin/python --require-hashes /tmp/router.requirements.txt

FROM ${PYTHON_IMAGE} AS runtime
RUN groupadd --system --gid 10001 edgecloud \
    && useradd --system --uid 10001 --gid 10001 --home-dir /nonexistent --no-create-home \
        --shell /usr/sbin/nologin edgecloud \
    && install -d -m 0700 -o 10001 -g 10001 /var/lib/crossbar
COPY --from=build /opt/router-venv /opt/router-venv
# launch.py renders config.template.json (from beside itself) into the node directory, with
# each service's ticket from <SERVICE>_WAMP_TICKET, then execs crossbar from its own venv.
COPY infra/router/launch.py infra/router/config.template.json \
    infra/router/edgecloud_router_policy.py /opt/edgecloud-router/
COPY infra/router/site /opt/edgecloud-router/site
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    EDGECLOUD_ROUTER_HOST=0.0.0.0 \
    EDGECLOUD_ROUTER_PORT=8080 \
    EDGECLOUD_ROUTER_LOGLEVEL=info
WORKDIR /var/lib/crossbar
USER 10001:10001
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["/opt/router-venv/bin/python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/', timeout=4)"]
# The node directory holds the rendered config (with the tickets) and the node's key.
CMD ["/opt/router-venv/bin/python", "/opt/edgecloud-router/launch.py", "--cbdir", "/var/lib/crossbar"]
