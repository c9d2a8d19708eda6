"""Tenant names that cannot be taken for ids, and the lookup by name or id that relies on it.

Tenants are named by people and found by name or by id (grants, sign-in to one of several
tenants, switching). Were a name allowed to look like an id, a tenant named with another
tenant's id would be found in its place: a grant meant for one could go to the other. So a
name may not have the shape of an id, and input with that shape is looked up as an id only.

Tenants named like an id before this rule keep their name; they are found by their id.
"""

import re

from sqlalchemy import ColumnElement

from .exceptions import TenantNameInvalid
from .models import Tenant

# Tenant ids are uuid4 strings (accounts.service.new_tenant); names are lowercased first.
_ID_SHAPE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.I)


def looks_like_id(text: str) -> bool:
    return _ID_SHAPE.fullmatch(text) is not None


def check_name(name: str) -> str:
    """``name`` if a tenant may carry it; 422 ``tenant_name_invalid`` if it looks like an id."""
    if looks_like_id(name):
        raise TenantNameInvalid(name)
    return name


def is_named(tenant: Tenant, name_or_id: str) -> bool:
    """Whether ``name_or_id`` names ``tenant``: by its id if it has an id's shape, else by name."""
    return tenant.id == name_or_id if looks_like_id(name_or_id) else tenant.name == name_or_id


def named(name_or_id: str) -> ColumnElement[bool]:
    """The query condition for the tenant ``name_or_id`` names (see :func:`is_named`)."""
    return Tenant.id == name_or_id if looks_like_id(name_or_id) else Tenant.name == name_or_id
