"""Every answer of the gateway tells browsers what they may do with it: pages run only the
site's own scripts and cannot be framed, nothing is sniffed, the Referer stays on the site;
and the pages work under that policy (the browser tests fail on any violation of it)."""

import httpx

from tests.conftest import ONE_DATABASE
from tests.support.stack import Stack

pytestmark = ONE_DATABASE

EVERYWHERE = {
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
}


def directives(policy: str) -> dict[str, str]:
    return {
        name: value.strip()
        for name, _, value in (part.strip().partition(" ") for part in policy.split(";"))
    }


async def test_every_answer_carries_the_security_headers(
    stack: Stack, api: httpx.AsyncClient
) -> None:
    async with httpx.AsyncClient(base_url=stack.url("gateway"), timeout=10) as client:
        answers = {
            "page": await client.get("/login"),
            "problem": await client.get("/api/v1/me"),
            "json": await api.get("/api/v1/me"),
            "script": await client.get("/static/dashboard/dashboard.js"),
            "explorer": await client.get("/docs"),
            "description": await client.get("/openapi.json"),
            "no such route": await client.get("/api/v1/no-such-route"),
        }
    for what, answer in answers.items():
        assert {k: answer.headers.get(k) for k in EVERYWHERE} == EVERYWHERE, what
        assert "strict-transport-security" not in answer.headers, what  # plain HTTP
        policy = directives(answer.headers["content-security-policy"])
        assert policy["frame-ancestors"] == "'none'", what
        assert policy["object-src" if "object-src" in policy else "default-src"] == "'none'", what

    page = directives(answers["page"].headers["content-security-policy"])
    assert page["script-src"] == "'self'"  # no inline script, no handler, no eval
    assert page["style-src"] == "'self'"
    assert page["base-uri"] == "'none'"
    assert page["form-action"] == "'self'"
    not_a_page = directives(answers["problem"].headers["content-security-policy"])
    assert not_a_page["default-src"] == "'none'"
    # The explorer's one inline script runs by its hash, not by 'unsafe-inline'.
    explorer = directives(answers["explorer"].headers["content-security-policy"])
    assert explorer["script-src"].startswith("'self' 'sha256-")
    assert "unsafe" not in explorer["script-src"]
