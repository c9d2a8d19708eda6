"""Facts about the repository the deployment files must agree with: the processes in
infra/Procfile, the workspace packages, and which environment variables each process reads
(its pydantic-settings class, or the router's launch.py)."""

import ast
import importlib
import importlib.util
import re
import tomllib
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from types import ModuleType

from pydantic_settings import (
    BaseSettings,
    DotEnvSettingsSource,
    EnvSettingsSource,
    InitSettingsSource,
    SecretsSettingsSource,
)

ROOT = Path(__file__).resolve().parents[2]
PROCFILE = ROOT / "infra" / "Procfile"
ROUTER_LAUNCHER = ROOT / "infra" / "router" / "launch.py"
# The dev stack starts its agent through a wrapper that enrols it, then execs the module.
AGENT_WRAPPER = ROOT / "infra" / "dev" / "local_agent.py"


@dataclass(frozen=True)
class Process:
    name: str
    command: str

    @property
    def is_router(self) -> bool:
        return "infra/router/launch.py" in self.command

    @property
    def is_agent(self) -> bool:
        return "infra/dev/local_agent.py" in self.command

    @property
    def module(self) -> str | None:
        """The Python module the process runs (``python -m``), the router has none."""
        if self.is_router:
            return None
        source = AGENT_WRAPPER.read_text() if self.is_agent else self.command
        found = re.search(r"""-m["',\s]+(edgecloud_\w+)""", source)
        assert found, f"{self.name}: no 'python -m edgecloud_...' in {source[:80]!r}"
        return found.group(1)


@cache
def processes() -> dict[str, Process]:
    found: dict[str, Process] = {}
    for line in PROCFILE.read_text().splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        name, _, command = line.partition(":")
        found[name.strip()] = Process(name.strip(), command.strip())
    return found


def cloud_processes() -> dict[str, Process]:
    """What runs in the cluster: everything but the edge agent, which runs on the nodes."""
    return {name: p for name, p in processes().items() if not p.is_agent}


def service_processes() -> dict[str, Process]:
    return {name: p for name, p in processes().items() if not (p.is_agent or p.is_router)}


@cache
def workspace_package(module: str) -> str:
    """The name of the workspace member whose ``src/`` holds ``module``."""
    root = tomllib.loads((ROOT / "pyproject.toml").read_text())
    for pattern in root["tool"]["uv"]["workspace"]["members"]:
        for member in sorted(ROOT.glob(pattern)):
            if (member / "src" / module).is_dir():
                project = tomllib.loads((member / "pyproject.toml").read_text())
                return str(project["project"]["name"])
    raise LookupError(f"no workspace member provides {module}")


@cache
def settings_class(module: str) -> type[BaseSettings]:
    settings = importlib.import_module(f"{module}.settings")
    own = [
        value
        for value in vars(settings).values()
        if isinstance(value, type)
        and issubclass(value, BaseSettings)
        and value.__module__ == settings.__name__
    ]
    assert len(own) == 1, f"{settings.__name__} defines {own}, expected one settings class"
    return own[0]


def settings_env_names(cls: type[BaseSettings]) -> frozenset[str]:
    """Every variable the class reads: each field under each prefix of its env sources."""
    sources = cls.settings_customise_sources(
        cls,
        init_settings=InitSettingsSource(cls, init_kwargs={}),
        env_settings=EnvSettingsSource(cls),
        dotenv_settings=DotEnvSettingsSource(cls),
        file_secret_settings=SecretsSettingsSource(cls),
    )
    prefixes = {s.env_prefix for s in sources if isinstance(s, EnvSettingsSource)}
    assert prefixes, f"{cls.__name__} reads no environment variables"
    names = set()
    for name, info in cls.model_fields.items():
        alias = info.validation_alias or info.alias
        if isinstance(alias, str):
            names.add(alias.upper())
            continue
        names.update(f"{prefix}{name}".upper() for prefix in prefixes)
    return frozenset(names)


@cache
def router_launcher() -> ModuleType:
    spec = importlib.util.spec_from_file_location("edgecloud_router_launch", ROUTER_LAUNCHER)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@cache
def router_env_names() -> frozenset[str]:
    """What launch.py reads: the literal ``os.environ.get(...)`` names, and the tickets."""
    names = set()
    for node in ast.walk(ast.parse(ROUTER_LAUNCHER.read_text())):
        if (
            isinstance(node, ast.Call)
            and ast.unparse(node.func) in ("os.environ.get", "os.getenv")
            and node.args
            and isinstance(node.args[0], ast.Constant)
        ):
            names.add(str(node.args[0].value))
    launcher = router_launcher()
    names.update(launcher.ticket_variable(service) for service in launcher.SERVICES)
    return frozenset(names)


def env_names_read_by(process: str) -> frozenset[str]:
    """The environment variables the container of ``process`` reads."""
    found = processes()[process]
    if found.is_router:
        return router_env_names()
    assert found.module is not None
    return settings_env_names(settings_class(found.module))
