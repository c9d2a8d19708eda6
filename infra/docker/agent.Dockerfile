# syntax=docker/dockerfile:1
# The edge agent, for nodes that run it in a container rather than as a system service.
# Build from the repository root (infra/docker/README.md):
#   docker build -f infra/docker/agent.Dockerfile -t edgecloud/agent:0.1.0 .
# It drives the node's own Docker engine and names the node after its hostname and MAC, so
# it runs with the host's network and the engine's socket; it holds the node's firewall,
# mounts each container's /app disk and makes cgroups, so it runs as the node's root,
# privileged (see infra/docker/README.md).
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

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
    uv sync --frozen --no-dev --no-install-workspace --package edgecloud-agent
COPY . .
# The agent and edgecloud-contracts, installed as wheels: the venv stands alone.
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --no-editable --package edgecloud-agent

FROM ${PYTHON_IMAGE} AS runtime
# iptables (the node firewall around tenant networks), mkfs.ext4 and mount (their /app disks).
RUN apt-get update \
    && apt-get install -y --no-install-recommends iptables e2fsprogs mount \
    && rm -rf /var/lib/apt/lists/* \
    && install -d -m 0700 /var/lib/edgecloud-agent
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    AGENT_STATE_DIR=/var/lib/edgecloud-agent
# The node's key and its outboxes: mount a volume here, or the node must be enrolled again.
VOLUME ["/var/lib/edgecloud-agent"]
WORKDIR /var/lib/edgecloud-agent
USER 0:0
# No EXPOSE and no HEALTHCHECK: the agent only dials out (to the router, the gateway and the
# node's broker); a border router's relay listens where AGENT_RELAY_LISTEN says.
CMD ["python", "-m", "edgecloud_agent"]
