from sqlalchemy import MetaData

from edgecloud_servicekit.db import Base


class StorageBase(Base):
    __abstract__ = True


def load_metadata() -> MetaData:
    """All storage tables (imported here so alembic sees every model)."""
    from .artifacts import models as _artifacts  # noqa: F401
    from .logs import models as _logs  # noqa: F401

    return StorageBase.metadata
