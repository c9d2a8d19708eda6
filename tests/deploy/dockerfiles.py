"""Just enough of a Dockerfile parser to check what the images in infra/docker promise."""

import json
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

from .repo import ROOT

DOCKER_DIR = ROOT / "infra" / "docker"


@dataclass
class Instruction:
    keyword: str
    arguments: str

    def exec_form(self) -> list[str]:
        """CMD/ENTRYPOINT arguments as a list (JSON form, or split like a shell would)."""
        if self.arguments.startswith("["):
            parsed = json.loads(self.arguments)
            assert isinstance(parsed, list)
            return [str(item) for item in parsed]
        return shlex.split(self.arguments)


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]

    def last(self, keyword: str) -> Instruction | None:
        found = self.all(keyword)
        return found[-1] if found else None

    def env(self) -> dict[str, str]:
        """The stage's ENV settings (``KEY=value`` forms; ``$VAR`` left as written)."""
        values: dict[str, str] = {}
        for instruction in self.all("ENV"):
            for item in shlex.split(instruction.arguments):
                key, _, value = item.partition("=")
                values[key] = value
        return values


@dataclass
class Dockerfile:
    path: Path
    global_args: dict[str, str]
    stages: list[Stage]

    @property
    def final(self) -> Stage:
        return self.stages[-1]

    def stage(self, name: str) -> Stage:
        return next(stage for stage in self.stages if stage.name == name)

    def runs(self) -> list[str]:
        return [i.arguments for stage in self.stages for i in stage.all("RUN")]


def _logical_lines(text: str) -> list[str]:
    lines: list[str] = []
    pending = ""
    for raw in text.splitlines():
        stripped = raw.strip()
        if stripped.startswith("#") or not stripped:
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        lines.append(pending + stripped)
        pending = ""
    assert not pending, "a continued line runs off the end of the file"
    return lines


def parse(path: Path) -> Dockerfile:
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in _logical_lines(path.read_text()):
        keyword, _, arguments = line.partition(" ")
        keyword = keyword.upper()
        arguments = re.sub(r"\s+", " ", arguments.strip())
        if keyword == "FROM":
            words = arguments.split()
            base = re.sub(
                r"\$\{?(\w+)\}?", lambda m: global_args.get(m.group(1), m.group(0)), words[0]
            )
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            stages.append(Stage(base=base, name=name))
        elif not stages and keyword == "ARG":
            key, _, default = arguments.partition("=")
            global_args[key] = default
        else:
            assert stages, f"{path.name}: {keyword} before the first FROM"
            stages[-1].instructions.append(Instruction(keyword, arguments))
    return Dockerfile(path=path, global_args=global_args, stages=stages)


def dockerfile_path(process: str) -> Path:
    return DOCKER_DIR / f"{process}.Dockerfile"
