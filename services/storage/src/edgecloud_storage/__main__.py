"""``python -m edgecloud_storage``: run one storage replica."""

from edgecloud_servicekit.serve import serve

from .app import create_app
from .settings import StorageSettings


def main() -> None:
    serve(settings=StorageSettings(), package="edgecloud_storage", create_app=create_app)


if __name__ == "__main__":
    main()
