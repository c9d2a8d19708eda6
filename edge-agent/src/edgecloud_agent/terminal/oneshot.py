"""``container.exec``: run one command inside a container and answer with its output.

The output is read to the end even past the answer's limit (a process writing to a pipe
nobody reads would block forever); what does not fit is counted, not kept.
"""

import asyncio
from dataclasses import dataclass, field

from edgecloud_contracts.shell import MAX_EXEC_OUTPUT_BYTES, ExecOrder, ExecResult

from ..runtime.docker import DockerRuntime, ExecStream


@dataclass(slots=True)
class _Output:
    kept: bytearray = field(default_factory=bytearray)
    seen: int = 0

    async def drain(self, process: ExecStream) -> None:
        while (chunk := await process.read()) is not None:
            self.seen += len(chunk)
            room = MAX_EXEC_OUTPUT_BYTES - len(self.kept)
            if room > 0:
                self.kept += chunk[:room]

    def result(self, code: int | None, *, timed_out: bool = False) -> ExecResult:
        return ExecResult(
            exit_code=code,
            output=self.kept.decode("utf-8", errors="replace"),
            truncated=self.seen > len(self.kept),
            timed_out=timed_out,
        )


async def run_once(runtime: DockerRuntime, order: ExecOrder) -> ExecResult:
    process = await runtime.attach_exec(
        order.docker_name,
        container_id=order.container_id,
        argv=list(order.cmd),
        tty=False,
        stdin=False,
    )
    output = _Output()
    try:
        async with asyncio.timeout(order.timeout_s):
            await output.drain(process)
    except TimeoutError:
        await process.finish(grace_s=0, whole_tree=True)
        return output.result(None, timed_out=True)
    return output.result(await process.finish())
