"""Artifact transfer: upload to storage through the public API and download by the
agent's own transfer code, against the same bytes moved by a plain HTTP static file
server and client on loopback, in the same run.

Platform path, per artifact: the client hashes the file, announces it
(``POST /api/v1/artifacts``), sends it (one ``PATCH`` with ``Content-Range``; the
gateway streams it to the storage, which hashes and stores it); then the node fetches it
with the agent's resumable downloader (``edgecloud_agent.deploy.download``) through a
transfer URL carrying a signed grant, checking its SHA-256 as it arrives. Baseline: an
aiohttp server that stores a PUT body to a file and serves files statically, and an
aiohttp client for both directions (the same client library the platform path uses).

Figures per size (4kb, 64kb, 1mb, 15mb, 50mb): throughput_mb_s_<size> (platform, MB/s of
upload + download), baseline_mb_s_<size>, throughput_ratio_<size>; and
small_artifact_overhead_ms (platform minus baseline, median at 4 KB).
Usage: .venv/bin/python bench/artifact_transfer.py [--rounds 20]
"""

import argparse
import asyncio
import hashlib
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import aiohttp  # noqa: E402
from aiohttp import web  # noqa: E402

from edgecloud_agent.deploy.download import download  # noqa: E402
from edgecloud_servicekit.transfer_tokens import TransferGrant, sign_transfer  # noqa: E402
from tests.support.processes import free_port  # noqa: E402
from tests.support.stack import Stack  # noqa: E402

SIZES = {"4kb": 4 << 10, "64kb": 64 << 10, "1mb": 1 << 20, "15mb": 15 << 20, "50mb": 50 << 20}
MB = 1e6


async def baseline_server(root: Path) -> tuple[web.AppRunner, str]:
    async def put(request: web.Request) -> web.Response:
        path = root / request.match_info["name"]
        with path.open("wb") as out:
            async for chunk in request.content.iter_chunked(1 << 20):
                out.write(chunk)
        return web.Response(status=201)

    async def get(request: web.Request) -> web.FileResponse:
        return web.FileResponse(root / request.match_info["name"])

    app = web.Application(client_max_size=1 << 30)
    app.router.add_put("/files/{name}", put)
    app.router.add_get("/files/{name}", get)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, f"http://127.0.0.1:{port}"


async def baseline_round(
    http: aiohttp.ClientSession, url: str, data: bytes, target: Path, n: int
) -> float:
    started = time.perf_counter()
    async with http.put(f"{url}/files/b{n}", data=data) as answer:
        assert answer.status == 201
    with target.open("wb") as out:
        async with http.get(f"{url}/files/b{n}") as answer:
            async for chunk in answer.content.iter_chunked(1 << 20):
                out.write(chunk)
    return time.perf_counter() - started


async def platform_round(
    stack: Stack,
    http: aiohttp.ClientSession,
    headers: dict[str, str],
    tenant_id: str,
    data: bytes,
    target: Path,
) -> float:
    gateway = stack.url("gateway")
    started = time.perf_counter()
    sha256 = hashlib.sha256(data).hexdigest()
    announce = {"name": "app.tar", "size": len(data), "sha256": sha256, "kind": "application"}
    async with http.post(f"{gateway}/api/v1/artifacts", json=announce, headers=headers) as a:
        assert a.status == 201, await a.text()
        artifact = await a.json()
    async with http.patch(
        f"{gateway}{artifact['upload_url']}",
        data=data,
        headers={**headers, "Content-Range": f"bytes 0-{len(data) - 1}/{len(data)}"},
    ) as answer:
        assert answer.status == 200, await answer.text()
    grant = sign_transfer(
        TransferGrant(artifact["id"], tenant_id, "bench_node", "download"),
        secret=stack.internal_secret,
    )
    await download(
        http,
        f"{gateway}/api/v1/transfers/{artifact['id']}?grant={grant}",
        target,
        sha256=sha256,
        size=len(data),
    )
    elapsed = time.perf_counter() - started
    async with http.delete(
        f"{gateway}/api/v1/artifacts/{artifact['id']}", headers=headers
    ) as answer:
        assert answer.status == 204
    return elapsed


async def measure(stack: Stack, workdir: Path, rounds: int) -> dict[str, tuple[float, float]]:
    runner, baseline_url = await baseline_server(workdir / "baseline")
    results: dict[str, tuple[float, float]] = {}
    try:
        async with aiohttp.ClientSession() as http:
            login = {"username": "admin", "password": stack.admin_password}
            async with http.post(f"{stack.url('gateway')}/api/v1/auth/login", json=login) as a:
                token = (await a.json())["access_token"]
            headers = {"Authorization": f"Bearer {token}"}
            async with http.get(f"{stack.url('gateway')}/api/v1/me", headers=headers) as a:
                tenant_id = (await a.json())["tenant"]["id"]
            for label, size in SIZES.items():
                data = os.urandom(size)
                n = rounds if size <= (1 << 20) else max(3, rounds // 5)
                platform, baseline = [], []
                for i in range(n + 2):  # two warm-up rounds, dropped
                    # Interleaved, so drift on this shared machine hits both alike.
                    p = await platform_round(
                        stack, http, headers, tenant_id, data, workdir / "p.bin"
                    )
                    b = await baseline_round(http, baseline_url, data, workdir / "b.bin", i)
                    if i >= 2:
                        platform.append(p)
                        baseline.append(b)
                results[label] = (statistics.median(platform), statistics.median(baseline))
    finally:
        await runner.cleanup()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="bench-artifacts-"))
    (workdir / "baseline").mkdir()
    stack = Stack(backend="postgresql", workdir=workdir, only=("storage", "gateway"))
    try:
        stack.start()
        results = asyncio.run(measure(stack, workdir, args.rounds))
    finally:
        stack.stop()
    stack.cleanup()
    for label, (platform_s, baseline_s) in results.items():
        size = SIZES[label]
        platform_mb_s, baseline_mb_s = size / platform_s / MB, size / baseline_s / MB
        for name, value, extra in (
            (f"throughput_mb_s_{label}", platform_mb_s, {}),
            (f"baseline_mb_s_{label}", baseline_mb_s, {}),
            (
                f"throughput_ratio_{label}",
                platform_mb_s / baseline_mb_s,
                {"target": 0.7} if label == "50mb" else {},
            ),
        ):
            unit = "x" if name.startswith("throughput_ratio") else "MB/s"
            print(json.dumps({"name": name, "value": round(value, 3), "unit": unit, **extra}))
    platform_s, baseline_s = results["4kb"]
    print(
        json.dumps(
            {
                "name": "small_artifact_overhead_ms",
                "value": round((platform_s - baseline_s) * 1000, 2),
                "unit": "ms",
                "target": 20,
                "platform_ms": round(platform_s * 1000, 2),
                "baseline_ms": round(baseline_s * 1000, 2),
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    main()
