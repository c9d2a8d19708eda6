from sqlalchemy import MetaData

from edgecloud_servicekit.db import Base


class GatewayBase(Base):
    __abstract__ = True


def load_metadata() -> MetaData:
    """All gateway tables (imported here so alembic sees every model)."""
    from .accounts import models as _accounts  # noqa: F401

    return GatewayBase.metadata
