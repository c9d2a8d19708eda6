from typing import Annotated, ClassVar

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from edgecloud_servicekit.settings import ServiceSettings


class OrchestratorSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="ORCHESTRATOR_", extra="ignore")
    service_name: ClassVar[str] = "orchestrator"
    default_port: ClassVar[int] = 8002

    registry_url: str = "http://127.0.0.1:8001"
    """Each service URL here may list replicas, comma-separated (one load-balanced URL
    does as well): see edgecloud_servicekit.internal_http."""
    storage_url: str = "http://127.0.0.1:8003"
    trusted_image_registries: list[str] = ["127.0.0.1:5000"]
    """Image registries the orchestrator reads manifests from (plain HTTP), to check that
    an image's platforms fit the device before anything is sent."""
    command_timeout_s: float = 15.0
    """How long a node has to answer a start, stop, restart, remove or inspect."""
    create_timeout_s: float = 120.0
    """A create may pull an image first."""
    reply_wait_s: float = 20.0
    """How long an API request waits for the node before answering 202 (the command goes on)."""
    command_ttl_s: float = 3600.0
    """A command not delivered within this time expires."""
    redelivery_interval_s: float = 5.0
    """How often undelivered commands of reachable nodes are tried again."""
    grant_ttl_s: float = 3600.0
    """How long a node may use the transfer URLs in a command it was sent."""
    logs_poll_interval_s: float = 1.0
    """How often a followed log asks the node for new lines."""
    tenant_node_memory_share: Annotated[float, Field(gt=0, le=1)] = 0.5
    """The share of one node's memory that a tenant's containers there may reserve
    together (their memory limits summed); each container's limits are also capped at the
    node's size. Below 1 leaves room on shared nodes for the other tenants."""
    tenant_node_cpu_share: Annotated[float, Field(gt=0, le=1)] = 1.0
    """The same for the node's CPUs (their CPU limits summed, of the node's cpu_count), below
    1 only. Off by default (1): CPU limits are caps that may add up to more than the node,
    CPU time gives way rather than runs out, and each node holds every tenant's containers
    together to its share of the CPU time itself (``AGENT_TENANT_SHARE``, the tenant's
    cgroup)."""
    tenant_node_pids_share: Annotated[float, Field(gt=0, le=1)] = 0.5
    """The same for the PIDs the node has for tenants (their PID limits summed, of the
    pids_total the node reports; 32768 for an agent that reports none)."""
    data_retention_days: float = 30.0
    """How long collected data points are kept."""
