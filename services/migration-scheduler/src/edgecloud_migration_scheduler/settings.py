from typing import ClassVar

from pydantic import Field, PositiveFloat, PositiveInt
from pydantic_settings import SettingsConfigDict

from edgecloud_servicekit.settings import ServiceSettings


class MigrationSchedulerSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="MIGRATION_SCHEDULER_", extra="ignore")
    service_name: ClassVar[str] = "migration-scheduler"
    default_port: ClassVar[int] = 8004

    registry_url: str = "http://127.0.0.1:8001"
    """Each service URL here may list replicas, comma-separated (one load-balanced URL
    does as well): see edgecloud_servicekit.internal_http."""
    orchestrator_url: str = "http://127.0.0.1:8002"
    max_rtt_ms: PositiveFloat = 100.0
    """Peers farther than this (round trip from the source) are not chosen."""
    unknown_rtt_ms: PositiveFloat | None = None
    """What a peer the source has not measured counts as; None: it is not chosen."""
    node_moves_per_minute: PositiveInt = 20
    """How many of its containers a node may ask to move (pressure, predicted failure,
    drain) in any minute: a compromised node cannot plant its containers, and their images,
    on its peers at will. A node's request beyond it is refused; its monitor asks again."""
    expect_timeout_s: PositiveFloat = 10.0
    move_timeout_s: PositiveFloat = 900.0
    """The whole transfer, image included, as the source runs it."""
    node_lost_after_s: PositiveFloat = 90.0
    """A node silent this long (and unseen by its neighbours) is lost: its containers start
    again on peers. Well past the link outages a node rides out on its own (a minute)."""
    node_loss_check_every_s: PositiveFloat = 5.0
    max_lost_share: float = Field(default=0.5, gt=0, le=1)
    """More nodes than this share silent at once is an outage of the network or the cloud,
    not lost nodes: nothing is moved."""
