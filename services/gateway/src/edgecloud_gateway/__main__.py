"""``python -m edgecloud_gateway``: run one gateway replica."""

from edgecloud_servicekit.serve import serve

from .app import create_app
from .settings import GatewaySettings


def main() -> None:
    serve(settings=GatewaySettings(), package="edgecloud_gateway", create_app=create_app)


if __name__ == "__main__":
    main()
