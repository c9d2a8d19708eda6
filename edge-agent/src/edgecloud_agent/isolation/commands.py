"""The node's own tools the isolation drives (iptables, mkfs, mount, systemctl): run with a
deadline, their failure raised as the caller's error with what the tool said."""

import asyncio

from ..runtime.errors import RuntimeFailure


async def run(
    argv: list[str],
    *,
    error: type[RuntimeFailure],
    timeout_s: float,
    stdin: str | None = None,
) -> str:
    """Run ``argv``; its output. ``error`` (with the tool's own words) if it cannot start,
    fails or outlives ``timeout_s``."""
    try:
        process = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
    except OSError as err:
        raise error(f"{argv[0]}: {err}") from err
    try:
        async with asyncio.timeout(timeout_s):
            out, said = await process.communicate(stdin.encode() if stdin is not None else None)
    except TimeoutError as timeout:
        process.kill()
        await process.wait()
        raise error(f"{argv[0]} did not finish in {timeout_s:g} s") from timeout
    if process.returncode != 0:
        detail = said.decode(errors="replace").strip()[:300]
        raise error(f"{' '.join(argv[:4])}: {detail}")
    return out.decode(errors="replace")
