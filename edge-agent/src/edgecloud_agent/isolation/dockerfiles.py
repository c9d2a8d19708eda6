"""A tenant's Dockerfile, read before the engine builds it on the node.

Docker's builder runs on the node with the engine's own reach, so two kinds of step are
refused, and every image a build starts from is pinned:

- ``ADD`` of a URL (or a git address) is fetched by the engine itself, on the node's
  network: a tenant could reach the node's LAN or its neighbours through it. Sources with
  variables are refused too, since they could become a URL.
- ``FROM`` and ``COPY --from`` name images: each must be one the tenant may run on this
  node (:mod:`.images` resolves it), and is rewritten to that image's ID, so neither an ID
  prefix nor another tenant's image is ever reached by name. Variables there are refused.

The same checks apply to the ``ONBUILD`` triggers of the images a build starts from.
Parsing follows Docker's: parser directives (``# escape=``), comments, line continuations,
the JSON (exec) form of ``ADD``.
"""

import json
import re
import shlex
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from ..runtime.errors import BuildRefused

_DIRECTIVE = re.compile(r"^#\s*([a-zA-Z]+)\s*=\s*(\S+)\s*$")
_URL = re.compile(r"^(?:[a-zA-Z][a-zA-Z0-9+.-]*://|git@)")
MAX_DOCKERFILE_BYTES = 1 << 20

Resolve = Callable[[str], Awaitable[str]]
"""An image reference the tenant wrote -> the ID of the image it may use (or raise)."""


@dataclass(frozen=True, slots=True)
class Instruction:
    keyword: str
    """Upper case."""
    arguments: str
    line: int
    """Where it starts in the file (1-based), for messages."""


def directives(text: str) -> list[str]:
    """The parser directives heading the file (``# escape=``, ``# syntax=``)."""
    found = []
    for raw in text.splitlines():
        if _DIRECTIVE.match(raw) is None:
            break
        found.append(raw.strip())
    return found


def instructions(text: str) -> list[Instruction]:
    """The Dockerfile's instructions, continuations joined and comments dropped."""
    escape = "\\"
    lines = text.splitlines()
    heading = directives(text)
    for directive in heading:
        name, value = _DIRECTIVE.match(directive).groups()  # type: ignore[union-attr]
        if name.lower() == "escape":
            escape = value
    start = len(heading)
    found: list[Instruction] = []
    pending, first = "", 0
    for number in range(start, len(lines)):
        raw = lines[number]
        stripped = raw.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if pending and stripped.startswith("#"):
            continue  # comments inside a continued instruction are dropped by Docker too
        if not pending:
            first = number + 1
        if raw.rstrip().endswith(escape):
            pending += raw.rstrip()[: -len(escape)] + " "
            continue
        whole = (pending + raw).strip()
        pending = ""
        if whole:
            keyword, _, arguments = whole.partition(" ")
            found.append(Instruction(keyword.upper(), arguments.strip(), first))
    if pending.strip():
        keyword, _, arguments = pending.strip().partition(" ")
        found.append(Instruction(keyword.upper(), arguments.strip(), first))
    return found


def check_fetches(instruction: Instruction) -> None:
    """Refuse an ``ADD`` (also inside ``ONBUILD``) the engine would fetch from a network."""
    keyword, arguments = instruction.keyword, instruction.arguments
    if keyword == "ONBUILD":
        inner, _, rest = arguments.partition(" ")
        check_fetches(Instruction(inner.upper(), rest.strip(), instruction.line))
        return
    if keyword != "ADD":
        return
    for source in _sources(arguments):
        if _URL.match(source) or "$" in source:
            raise BuildRefused(
                f"line {instruction.line}: ADD {source[:100]}: the node fetches nothing for a"
                " build (copy the file into the context instead)"
            )


def _sources(arguments: str) -> list[str]:
    words = _words(arguments)
    words = [word for word in words if not word.startswith("--")]
    return words[:-1]  # the last is the destination


def _words(arguments: str) -> list[str]:
    text = arguments.strip()
    if text.startswith("["):
        try:
            parsed = json.loads(text)
        except ValueError:
            parsed = None
        if isinstance(parsed, list) and all(isinstance(word, str) for word in parsed):
            return list(parsed)
    try:
        return shlex.split(text, posix=True)
    except ValueError:
        return text.split()


async def pin(text: str, resolve: Resolve, on_build: Callable[[str], Awaitable[list[str]]]) -> str:
    """The Dockerfile with every image it names replaced by the ID ``resolve`` gives (and
    every fetch refused); ``on_build`` gives an image's ONBUILD triggers to check too."""
    if len(text.encode()) > MAX_DOCKERFILE_BYTES:
        raise BuildRefused("the Dockerfile is larger than 1 MiB")
    stages: set[str] = set()
    lines: list[str] = []
    for instruction in instructions(text):
        check_fetches(instruction)
        arguments = instruction.arguments
        if instruction.keyword == "FROM":
            arguments = await _pin_from(instruction, stages, resolve, on_build)
        elif instruction.keyword == "COPY":
            arguments = await _pin_copy_from(instruction, stages, resolve, on_build)
        lines.append(f"{instruction.keyword} {arguments}")
    if not any(line.startswith("FROM ") for line in lines):
        raise BuildRefused("the Dockerfile has no FROM")
    return "\n".join([*directives(text), *lines]) + "\n"


async def _pin_from(
    instruction: Instruction,
    stages: set[str],
    resolve: Resolve,
    on_build: Callable[[str], Awaitable[list[str]]],
) -> str:
    words = instruction.arguments.split()
    flags = [word for word in words if word.startswith("--")]
    rest = [word for word in words if not word.startswith("--")]
    if any(not flag.startswith("--platform=") for flag in flags) or any("$" in f for f in flags):
        raise BuildRefused(f"line {instruction.line}: FROM takes only a fixed --platform here")
    if not rest or len(rest) not in (1, 3) or (len(rest) == 3 and rest[1].upper() != "AS"):
        raise BuildRefused(f"line {instruction.line}: FROM image [AS name]")
    image = rest[0]
    pinned = await _image(image, instruction, stages, resolve, on_build)
    if len(rest) == 3:
        stages.add(rest[2].lower())
    return " ".join([*flags, pinned, *rest[1:]])


async def _pin_copy_from(
    instruction: Instruction,
    stages: set[str],
    resolve: Resolve,
    on_build: Callable[[str], Awaitable[list[str]]],
) -> str:
    words = instruction.arguments.split(" ")
    for index, word in enumerate(words):
        if word.lower().startswith("--from="):
            source = word.split("=", 1)[1]
            pinned = await _image(source, instruction, stages, resolve, on_build)
            words[index] = f"--from={pinned}"
    return " ".join(words)


async def _image(
    name: str,
    instruction: Instruction,
    stages: set[str],
    resolve: Resolve,
    on_build: Callable[[str], Awaitable[list[str]]],
) -> str:
    if "$" in name:
        raise BuildRefused(f"line {instruction.line}: {name}: no variables in image names here")
    if name.lower() in stages or name == "scratch" or name.isdigit():
        return name  # an earlier stage of this build, or nothing at all
    image_id = await resolve(name)
    for trigger in await on_build(image_id):
        check_fetches(Instruction(*_split(trigger), instruction.line))
    return image_id


def _split(trigger: str) -> tuple[str, str]:
    keyword, _, arguments = trigger.strip().partition(" ")
    return keyword.upper(), arguments.strip()
