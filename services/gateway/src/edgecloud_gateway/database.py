from sqlalchemy import MetaData

from edgecloud_servicekit.db import Base


class GatewayBase(Base):
    __abstract__ = True


def load_metadata() -> MetaData:
    """All gateway tables (imported here so alembic sees every model)."""
    from .accounts import models as _accounts  # noqa: F401
    from .audit import models as _audit  # noqa: F401
    from .tenants import models as _tenants  # noqa: F401
    from .terminal import models as _terminal  # noqa: F401
    from .tokens import models as _tokens  # noqa: F401

    return GatewayBase.metadata
