"""``python -m edgecloud_orchestrator``: run one orchestrator replica."""

from edgecloud_servicekit.serve import serve

from .app import create_app
from .settings import OrchestratorSettings


def main() -> None:
    serve(settings=OrchestratorSettings(), package="edgecloud_orchestrator", create_app=create_app)


if __name__ == "__main__":
    main()
