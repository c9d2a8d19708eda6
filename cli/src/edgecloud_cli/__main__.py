"""``edgecloud`` and ``python -m edgecloud_cli``."""

from .app import app


def main() -> None:
    """Run the CLI with the program name people type."""
    app(prog_name="edgecloud")


if __name__ == "__main__":
    main()
