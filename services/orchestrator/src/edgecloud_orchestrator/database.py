from sqlalchemy import MetaData

from edgecloud_servicekit.db import Base


class OrchestratorBase(Base):
    __abstract__ = True


def load_metadata() -> MetaData:
    """All orchestrator tables.

    Its tables and API arrive with the containers issue (#4).
    """
    return OrchestratorBase.metadata
