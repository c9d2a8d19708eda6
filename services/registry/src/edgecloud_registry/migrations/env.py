from alembic import context

from edgecloud_registry.database import load_metadata
from edgecloud_servicekit.migrations import run_env

run_env(context, target_metadata=load_metadata())
