from sqlalchemy import MetaData

from edgecloud_servicekit.db import Base


class OrchestratorBase(Base):
    __abstract__ = True


def load_metadata() -> MetaData:
    """All orchestrator tables (imported here so alembic sees every model)."""
    from .commands import models as _commands  # noqa: F401
    from .containers import models as _containers  # noqa: F401
    from .copies import models as _copies  # noqa: F401
    from .data import models as _data  # noqa: F401
    from .deployments import models as _deployments  # noqa: F401
    from .reports import models as _reports  # noqa: F401

    return OrchestratorBase.metadata
