"""A tenant's day in the browser: sign up, get a device, launch a container and watch it run,
deploy an application and read its output live, fetch a result file, stop and remove; a second
tenant sees none of it. Every page is photographed on the way."""

import io
import re
import tarfile

import httpx
import pytest
from playwright.async_api import expect

from tests.support.users import login

from .conftest import ON_ONE_STACK, Person, PersonFactory

pytestmark = [pytest.mark.stack, ON_ONE_STACK]

IMAGE = "edgecloud/busybox:latest"
SCRIPT = b"""#!/bin/sh
echo "hello from $(cat greeting.txt)"
mkdir -p /app/results
echo 42 > /app/results/answer.txt
echo 'EDGECLOUD_DATA {"temperature": 21.5}'
"""


def application_tar() -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        info = tarfile.TarInfo("greeting.txt")
        info.size = 5
        archive.addfile(info, io.BytesIO(b"edge\n"))
    return buffer.getvalue()


async def grant_in_browser(operator: Person, device: str, tenant: str) -> None:
    await operator.go("/operator")
    grants = operator.page.locator("#grants")
    await grants.get_by_label("Device").select_option(device)
    await grants.get_by_label("Tenant").select_option(tenant)
    await grants.get_by_role("button", name="Grant").click()
    await expect(grants.get_by_role("status")).to_contain_text(f"Granted {device} to {tenant}")
    await expect(operator.page.locator(f'[data-grants="{device}"]')).to_contain_text(tenant)


async def test_a_tenant_runs_an_application_from_the_browser(
    stack, device: str, operator: Person, people: PersonFactory
) -> None:
    alice = await people()
    await alice.sign_up()
    await alice.shot("overview")
    # Out and in again, with the same account.
    await alice.page.get_by_role("button", name="Sign out").click()
    await expect(alice.page.get_by_role("heading", name="Sign in")).to_be_visible()
    await alice.shot("sign-in")
    await alice.sign_in()

    # The operator grants the device to alice's tenant (named after her) and enrols another.
    await grant_in_browser(operator, device, alice.username)
    await operator.page.get_by_label("Note").fill("rack 2")
    await operator.page.get_by_role("button", name="Create enrolment token").click()
    await expect(operator.page.locator("[data-enrol-command]")).to_contain_text("--enrol ece_")
    await operator.shot("operator")

    # Alice sees the device online, with its graphs.
    await alice.go("/devices")
    row = alice.page.locator(f'tr[data-device="{device}"]')
    await expect(row).to_contain_text("online")
    await alice.shot("devices")
    await row.get_by_role("link").click()
    await expect(alice.page.locator("[data-graph-note]")).to_contain_text("heartbeats shown")
    await alice.shot("device")

    # Launch: the form, then the container's page, where it runs.
    await alice.go(f"/launch?device={device}")
    await alice.page.get_by_label("Name").fill("web")
    # The device list follows the image: this one is built for amd64 only.
    await alice.page.get_by_label("Image").fill("127.0.0.1:5000/edgecloud/busybox:1.0")
    await expect(alice.page.locator("#h-device")).to_contain_text("built for amd64")
    await expect(alice.page.get_by_label("Device")).to_have_value(device)
    await alice.page.get_by_label("Image").fill(IMAGE)
    await expect(alice.page.locator("#h-device")).to_contain_text("cannot be read here")
    await alice.page.get_by_label("Command (optional)").fill("sleep 3600")
    # Half a CPU each for this one and the next: a tenant's share of a node is half of it.
    await alice.page.get_by_label("CPUs").fill("0.5")
    await alice.shot("launch")
    await alice.page.get_by_role("button", name="Launch").click()
    await expect(alice.page).to_have_url(re.compile(r"/containers/[^/]+$"))
    web_id = alice.page.url.rsplit("/", 1)[1]
    await expect(alice.page.locator("[data-container-state]")).to_have_text("running")

    # Live: a container created elsewhere (the API) appears running without a reload.
    await alice.go("/containers")
    await alice.live()
    navigations: list[str] = []
    alice.page.on("framenavigated", lambda frame: navigations.append(frame.url))
    token = await login(stack, alice.username, alice.password)
    async with httpx.AsyncClient(base_url=stack.url("gateway"), timeout=40) as client:
        created = await client.post(
            "/api/v1/containers",
            json={
                "device": device,
                "name": "worker",
                "image": IMAGE,
                "command": ["sleep", "3600"],
                "limits": {"cpus": 0.5},
            },
            headers={"Authorization": f"Bearer {token}"},
        )
    assert created.status_code == 201, created.text
    worker = alice.page.locator(f'tr[data-container="{created.json()["id"]}"]')
    await expect(worker.locator("[data-state]")).to_contain_text("running")
    assert navigations == []
    await alice.shot("containers")

    # Deploy an application: upload with progress, follow the steps, read the live log.
    await alice.go(f"/containers/{web_id}")
    await alice.live()
    deploy = alice.page.locator("[data-deploy-form]")
    await deploy.get_by_label("Application (.tar or .tar.gz)").set_input_files(
        files=[{"name": "app.tar", "mimeType": "application/x-tar", "buffer": application_tar()}]
    )
    await deploy.get_by_label("Command script").set_input_files(
        files=[{"name": "run.sh", "mimeType": "text/x-sh", "buffer": SCRIPT}]
    )
    await deploy.get_by_role("button", name="Upload and deploy").click()
    outputs = alice.page.locator("#outputs")
    await expect(outputs.locator("[data-deployment]").first).to_contain_text(
        "succeeded", timeout=60_000
    )
    await expect(outputs.locator("[data-deployment]").first).to_contain_text("run")
    await expect(alice.page.locator("#logs")).to_contain_text("hello from edge", timeout=20_000)

    # Fetch the result files and download them.
    await alice.page.get_by_label("Path in the container").fill("/app/results")
    await alice.page.get_by_role("button", name="Fetch").click()
    link = outputs.get_by_role("link", name="results.tar")
    await expect(link).to_be_visible(timeout=30_000)
    await alice.shot("container")
    async with alice.page.expect_download() as downloading:
        await link.click()
    download = await downloading.value
    path = await download.path()
    with tarfile.open(path) as archive:
        answer = archive.extractfile("results/answer.txt")
        assert answer is not None
        assert answer.read() == b"42\n"

    # The number the application published, on the data page's graph.
    await alice.go(f"/data?container={web_id}")
    await expect(alice.page.locator('[data-data-series="temperature"]')).to_have_count(
        1, timeout=30_000
    )
    await alice.shot("data")
    await alice.go(f"/containers/{web_id}")

    # Stop, then remove.
    await alice.page.get_by_role("button", name="Stop").click()
    await expect(alice.page.locator("[data-container-state]")).to_have_text("exited")
    await alice.page.get_by_role("button", name="Remove").click()
    await expect(alice.page).to_have_url(re.compile(r"/containers$"))
    await expect(alice.page.locator(f'tr[data-container="{web_id}"]')).to_have_count(0)

    # Bob, another tenant, sees none of it.
    bob = await people()
    await bob.sign_up()
    await bob.go("/devices")
    await expect(bob.page.locator("tr[data-device]")).to_have_count(0)
    await bob.go("/containers")
    await expect(bob.page.locator("tr[data-container]")).to_have_count(0)
    await bob.go(f"/containers/{created.json()['id']}")
    await expect(bob.page.get_by_role("heading", name="Not found")).to_be_visible()
    await bob.go(f"/devices/{device}")
    await expect(bob.page.get_by_role("heading", name="Not found")).to_be_visible()

    # The operator takes the device back, choosing that Alice's containers there stop.
    await operator.go("/operator")
    grants = operator.page.locator("#grants")
    await grants.get_by_label("Device").select_option(device)
    await grants.get_by_label("Tenant").select_option(alice.username)
    await grants.get_by_label("When taken away").select_option("stop")
    await grants.get_by_role("button", name="Take away").click()
    await expect(grants.get_by_role("status")).to_contain_text("are being stopped")
    await alice.go("/devices")
    await expect(alice.page.locator("tr[data-device]")).to_have_count(0)

    for name in ("alerts", "migrations", "admin"):
        await alice.go(f"/{name}")
        await alice.shot(name)
    assert [*alice.errors, *bob.errors, *operator.errors] == []
