"""Test helpers for the App manifest flow: submit a manifest's form to a simulator as a browser would."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qs, urlsplit

import requests
from jitr_github.simulator import GitHubSimulator

JITR_MANIFEST: dict[str, Any] = {
    "name": "jitr-runners",
    "url": "https://example.com/jitr",
    "hook_attributes": {"url": "https://jitr.example.com/webhook"},
    "redirect_url": "http://127.0.0.1:9/callback",
    "public": False,
    "default_permissions": {"actions": "read", "administration": "write", "metadata": "read"},
    "default_events": ["workflow_job"],
}


def submit(
    sim: GitHubSimulator, manifest: dict[str, Any] | str, *, org: str | None = None, state: str | None = None
) -> requests.Response:
    """POST the registration form (``manifest`` and ``state`` fields); the answer, redirects not followed."""
    page = f"/organizations/{org}/settings/apps/new" if org else "/settings/apps/new"
    form = {"manifest": manifest if isinstance(manifest, str) else json.dumps(manifest)}
    if state is not None:
        form["state"] = state
    return requests.post(sim.root_url + page, data=form, allow_redirects=False, timeout=30)


def redirect_query(answer: requests.Response) -> dict[str, str]:
    """The query of the 302 the form answered (``code``, ``state``)."""
    assert answer.status_code == 302, answer.text
    return {k: v[-1] for k, v in parse_qs(urlsplit(answer.headers["Location"]).query).items()}


def manifest_code(sim: GitHubSimulator, manifest: dict[str, Any], *, convert: bool = False) -> str:
    """The code of a submitted manifest (exchanged at once when ``convert``)."""
    code = redirect_query(submit(sim, manifest))["code"]
    if convert:
        answer = requests.post(f"{sim.base_url}/app-manifests/{code}/conversions", timeout=30)
        assert answer.status_code == 201, answer.text
    return code
