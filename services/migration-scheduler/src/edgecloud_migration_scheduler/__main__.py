"""``python -m edgecloud_migration_scheduler``: run one migration-scheduler replica."""

from edgecloud_servicekit.serve import serve

from .app import create_app
from .settings import MigrationSchedulerSettings


def main() -> None:
    serve(
        settings=MigrationSchedulerSettings(),
        package="edgecloud_migration_scheduler",
        create_app=create_app,
    )


if __name__ == "__main__":
    main()
