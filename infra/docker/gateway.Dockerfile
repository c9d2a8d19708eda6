# syntax=docker/dockerfile:1
# The gateway service. Build from the repository root (infra/docker/README.md):
#   docker build -f infra/docker/gateway.Dockerfile -t edgecloud/gateway:0.1.0 .
ARG PYTHON_IMAGE=python:3.11-slim-bookworm
ARG NODE_IMAGE=node:22-bookworm-slim

# The dashboard's front-end assets, vendored from the npm registry at the versions pinned in
# infra/setup/assets.sh (the same script `make setup` runs); nothing is loaded from a CDN.
FROM ${NODE_IMAGE} AS assets
WORKDIR /src
COPY infra/setup/common.sh infra/setup/assets.sh infra/setup/
RUN bash infra/setup/assets.sh

FROM ${PYTHON_IMAGE} AS build
ARG UV_VERSION=0.13.9
RUN pip install --no-cache-dir "uv==${UV_VERSION}"
ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PYTHON=/usr/local/bin/python3.11 \
    UV_PROJECT_ENVIRONMENT=/opt/venv
WORKDIR /src
# Third-party packages from the lockfile alone: this layer changes only with uv.lock.
RUN --mount=type=cache,target=/root/.cache/uv \
    --mount=type=bind,source=uv.lock,target=uv.lock \
    --mount=type=bind,source=pyproject.toml,target=pyproject.toml \
    uv sync --frozen --no-dev --no-install-workspace --package edgecloud-gateway
COPY . .
# The service and the libraries it uses, installed as wheels: the venv stands alone.
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --no-editable --package edgecloud-gateway

FROM ${PYTHON_IMAGE} AS runtime
RUN groupadd --system --gid 10001 edgecloud \
    && useradd --system --uid 10001 --gid 10001 --home-dir /nonexistent --no-create-home \
        --shell /usr/sbin/nologin edgecloud \
    && install -d -o 10001 -g 10001 /var/lib/edgecloud
COPY --from=build /opt/venv /opt/venv
COPY --from=assets /src/services/gateway/src/edgecloud_gateway/static/vendor \
    /opt/venv/lib/python3.11/site-packages/edgecloud_gateway/static/vendor
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    EDGECLOUD_HOST=0.0.0.0 \
    EDGECLOUD_VAR_DIR=/var/lib/edgecloud
WORKDIR /var/lib/edgecloud
USER 10001:10001
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4)"]
CMD ["python", "-m", "edgecloud_gateway"]
