from edgecloud_servicekit.problems import NotFound


class MigrationNotFound(NotFound):
    """Also another tenant's migration: it is not for the caller to know it exists."""

    default_code = "migration_not_found"

    def __init__(self, migration_id: str) -> None:
        super().__init__(f"migration {migration_id} not found")
