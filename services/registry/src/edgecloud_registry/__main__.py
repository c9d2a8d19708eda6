"""``python -m edgecloud_registry``: run one registry replica."""

from edgecloud_servicekit.serve import serve

from .app import create_app
from .settings import RegistrySettings


def main() -> None:
    serve(settings=RegistrySettings(), package="edgecloud_registry", create_app=create_app)


if __name__ == "__main__":
    main()
