from alembic import context

from edgecloud_servicekit.migrations import run_env
from edgecloud_storage.database import load_metadata

run_env(context, target_metadata=load_metadata())
