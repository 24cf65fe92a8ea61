"""Registering an App from a manifest on the simulator, and exchanging the code as GitHub does.

The form at ``/settings/apps/new`` answers the redirect GitHub's "Create" button leads to; the
code converts once, within an hour, into an App whose key the simulator then accepts.
"""

from __future__ import annotations

import html
import json
from typing import Any

import jwt
import pytest
import requests
from github_manifest_support import JITR_MANIFEST, manifest_code, redirect_query, submit
from github_support import FakeClock, SimFactory, Sleeps, assert_conforms
from jitr_core.errors import GitHubNotFoundError, GitHubUnavailableError
from jitr_github import GitHubClient
from jitr_github.manifest import convert_manifest_code
from jitr_github.simulator import GitHubSimulator

CONVERSION = "/app-manifests/{code}/conversions"


def convert(sim: GitHubSimulator, code: str, status: int) -> Any:
    answer = requests.post(f"{sim.base_url}/app-manifests/{code}/conversions", timeout=30)
    assert answer.status_code == status, answer.text
    body = answer.json()
    assert_conforms("POST", CONVERSION, status, body)
    return body


def test_the_form_redirects_with_a_code_that_converts_once_into_a_working_app(
    github_simulator: GitHubSimulator,
) -> None:
    sim = github_simulator
    installation = sim.add_installation("octo-org", repos=["api"])
    query = redirect_query(submit(sim, JITR_MANIFEST, state="st4te"))
    assert query["state"] == "st4te"

    created = convert(sim, query["code"], 201)
    assert (created["name"], created["slug"], created["owner"]["login"]) == ("jitr-runners", "jitr-runners", "monalisa")
    assert created["permissions"] == JITR_MANIFEST["default_permissions"]
    assert created["events"] == ["workflow_job"] and created["external_url"] == JITR_MANIFEST["url"]
    assert created["html_url"] == f"{sim.root_url}/apps/jitr-runners"
    assert created["webhook_secret"] and created["client_secret"] and created["id"] != sim.app_id
    convert(sim, query["code"], 404)

    client = GitHubClient(str(created["id"]), created["pem"], sim.base_url, backoff_s=0.001)
    assert client.installation_for("octo-org") == installation
    assert client.fetch_rate_limit(installation).limit == 5000  # an installation token of the new App
    seen = requests.get(
        f"{sim.base_url}/orgs/octo-org/installation",
        headers={"Authorization": f"Bearer {jwt_for(created['id'], created['pem'], sim)}"},
        timeout=30,
    ).json()
    assert (seen["app_id"], seen["app_slug"]) == (created["id"], "jitr-runners")
    assert {created["pem"], created["client_secret"], created["webhook_secret"]} <= set(sim.secrets_issued())


def jwt_for(app_id: int, pem: str, sim: GitHubSimulator) -> str:
    now = int(sim.clock())
    return jwt.encode({"iat": now - 60, "exp": now + 540, "iss": str(app_id)}, pem, algorithm="RS256")


def test_a_jwt_naming_the_new_app_must_be_signed_with_its_key(github_simulator: GitHubSimulator) -> None:
    sim = github_simulator
    created = convert(sim, manifest_code(sim, JITR_MANIFEST), 201)
    forged = jwt_for(created["id"], sim.private_key_pem, sim)
    answer = requests.get(f"{sim.base_url}/app/hook/deliveries", headers={"Authorization": f"Bearer {forged}"})
    assert answer.status_code == 401


def test_codes_expire_after_an_hour(make_sim: SimFactory) -> None:
    clock = FakeClock()
    sim = make_sim(clock=clock)
    fresh, stale = manifest_code(sim, JITR_MANIFEST), manifest_code(sim, {**JITR_MANIFEST, "name": "other"})
    clock.advance(3599)
    convert(sim, fresh, 201)
    clock.advance(2)
    convert(sim, stale, 404)
    convert(sim, "0123456789abcdef0123", 404)


def test_an_organization_page_makes_the_organization_the_owner(github_simulator: GitHubSimulator) -> None:
    sim = github_simulator
    sim.add_installation("octo-org")
    created = convert(sim, redirect_query(submit(sim, JITR_MANIFEST, org="octo-org"))["code"], 201)
    assert (created["owner"]["login"], created["owner"]["type"]) == ("octo-org", "Organization")
    other = convert(sim, redirect_query(submit(sim, {**JITR_MANIFEST, "name": "n2"}, org="new-org"))["code"], 201)
    assert other["owner"]["login"] == "new-org"
    assert requests.post(f"{sim.root_url}/organizations/bad!org/settings/apps/new", timeout=30).status_code == 404


def test_enterprise_server_layout_keeps_the_form_on_the_web_root(make_sim: SimFactory) -> None:
    sim = make_sim(api_prefix="/api/v3")
    code = manifest_code(sim, JITR_MANIFEST)
    assert requests.post(f"{sim.root_url}/app-manifests/{code}/conversions", timeout=30).status_code == 404
    app = convert_manifest_code(sim.base_url, code)
    assert app.install_url == f"{sim.root_url}/apps/jitr-runners/installations/new"


def test_no_state_means_none_in_the_redirect_and_the_redirect_query_is_kept(github_simulator: GitHubSimulator) -> None:
    answer = submit(github_simulator, {**JITR_MANIFEST, "redirect_url": "http://127.0.0.1:9/cb?session=7"})
    query = redirect_query(answer)
    assert set(query) == {"session", "code"} and query["session"] == "7"


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"name": ""}, "Name can't be blank"),
        ({"name": "x" * 35}, "Name is too long"),
        ({"name": "jitr-simulator"}, "already taken"),
        ({"url": "ftp://example.com"}, "Homepage URL must be an http(s) URL"),
        ({"redirect_url": None}, "Redirect URL must be"),
        ({"hook_attributes": {"url": "not a url"}}, "Webhook URL must be"),
        ({"hook_attributes": None}, "Hook attributes url can't be blank"),
        ({"public": "yes"}, "public must be true or false"),
        ({"default_permissions": {"runners": "write"}}, "'runners' is not a GitHub App permission"),
        ({"default_permissions": {"actions": "admin", "metadata": "read"}}, "'actions' cannot be 'admin'"),
        ({"default_permissions": {"metadata": "read"}}, "workflow_job needs the 'actions' permission"),
        ({"default_events": "workflow_job"}, "default_events must be a list"),
    ],
)
def test_manifests_github_would_refuse_answer_422(
    github_simulator: GitHubSimulator, change: dict[str, Any], reason: str
) -> None:
    manifest = {key: value for key, value in {**JITR_MANIFEST, **change}.items() if value is not None}
    answer = submit(github_simulator, manifest, state="s")
    assert answer.status_code == 422 and reason in html.unescape(answer.text)
    assert answer.headers["Content-Type"].startswith("text/html")


def test_malformed_forms_are_refused(github_simulator: GitHubSimulator) -> None:
    page = github_simulator.root_url + "/settings/apps/new"
    assert submit(github_simulator, "{not json").status_code == 422
    assert submit(github_simulator, json.dumps(["a list"])).status_code == 422
    assert requests.post(page, data={"state": "s"}, timeout=30).status_code == 422
    assert requests.post(page, json={"manifest": "{}"}, timeout=30).status_code == 415
    assert requests.get(page, timeout=30).status_code == 405
    assert github_simulator.apps() == []


def test_the_admin_api_lists_created_apps_without_secrets(github_simulator: GitHubSimulator) -> None:
    created = convert(github_simulator, manifest_code(github_simulator, JITR_MANIFEST), 201)
    listed = requests.get(f"{github_simulator.root_url}/_sim/apps", timeout=30).json()["apps"]
    assert [a["id"] for a in listed] == [created["id"]]
    text = json.dumps(listed)
    assert created["client_secret"] not in text and created["webhook_secret"] not in text and "PRIVATE" not in text


def test_the_client_retries_a_failed_conversion_and_keeps_secrets_out_of_reprs(
    github_simulator: GitHubSimulator,
) -> None:
    sim = github_simulator
    sim.fail_next(1, 503, path_contains="app-manifests")
    sleeps = Sleeps()
    app = convert_manifest_code(sim.base_url, manifest_code(sim, JITR_MANIFEST), sleep=sleeps)
    assert len(sleeps) == 1 and app.id in [a.id for a in sim.apps()]
    created = sim.apps()[-1]
    assert app.pem.reveal() == created.private_key_pem
    assert app.webhook_secret is not None and app.webhook_secret.reveal() == created.webhook_secret
    text = repr(app) + str(app)
    assert created.client_secret not in text and "PRIVATE" not in text and str(created.webhook_secret) not in text


def test_a_code_refused_after_a_retry_says_the_app_may_exist(github_simulator: GitHubSimulator) -> None:
    sim = github_simulator
    code = manifest_code(sim, JITR_MANIFEST, convert=True)
    sim.fail_next(1, 502, path_contains="app-manifests")
    with pytest.raises(GitHubNotFoundError, match="may have created the App"):
        convert_manifest_code(sim.base_url, code, sleep=Sleeps())
    with pytest.raises(GitHubNotFoundError, match="works once"):
        convert_manifest_code(sim.base_url, code)


def test_the_client_gives_up_on_a_github_that_keeps_failing(github_simulator: GitHubSimulator) -> None:
    github_simulator.fail_next(5, 503, path_contains="app-manifests")
    with pytest.raises(GitHubUnavailableError, match="failed 3 times"):
        convert_manifest_code(github_simulator.base_url, "abc", sleep=Sleeps())
