from sqlalchemy import MetaData

from edgecloud_servicekit.db import Base


class RegistryBase(Base):
    __abstract__ = True


def load_metadata() -> MetaData:
    """All registry tables (imported here so alembic sees every model)."""
    from .alerts import models as _alerts  # noqa: F401
    from .credentials import models as _credentials  # noqa: F401
    from .devices import models as _devices  # noqa: F401
    from .interfaces import models as _interfaces  # noqa: F401

    return RegistryBase.metadata
