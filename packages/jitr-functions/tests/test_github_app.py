"""``jitr github-app create`` end to end against the GitHub simulator over HTTP.

A small browser (``webbrowser.open`` replaced by an HTTP client) does what a person's browser
does: it loads the command's local page, submits its form to the simulator's
``/settings/apps/new`` and follows the redirect back to the local ``/callback``. The command then
exchanges the code and stores the App's secrets in the embedded backend's files, in AWS Secrets
Manager (moto) or in GCP Secret Manager (the fake); the stored key must mint installation tokens.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import uuid
import webbrowser
from collections.abc import Callable, Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

import pytest
import requests
from jitr_core.backend import Backend
from jitr_core.plugins import create_plugin_manager
from jitr_core.secret import Secret
from jitr_core.settings import Settings
from jitr_functions.cli import main
from jitr_github import GitHubClient
from jitr_github.simulator import GitHubSimulator

pytest.register_assert_rewrite("conftest_aws")  # other modules load it as a plugin, rewritten
try:  # moto in server mode, as the Lambda tests get it
    from conftest_aws import FAKE_CREDENTIALS, REGION, moto_endpoint  # noqa: F401 (a fixture)

    HAS_AWS = True
except ImportError:  # the aws extra is not installed: the AWS test skips
    FAKE_CREDENTIALS, REGION, HAS_AWS = {}, "", False

WEBHOOK_URL = "https://jitr.example.com/webhook"
CHUNK = 16


class _Form(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.action = ""
        self.fields: dict[str, str] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {k: v or "" for k, v in attrs}
        if tag == "form":
            self.action = values["action"]
        elif tag == "input" and values.get("type") == "hidden":
            self.fields[values["name"]] = values["value"]


class Browser:
    """Opens the command's page like a browser: loads it, posts its form, follows GitHub's redirect.

    ``before_redirect`` may change the redirect URL (a forged state, no code) or act first
    (exchange the code itself, as an eavesdropper would).
    """

    def __init__(self, before_redirect: Callable[[str], str] | None = None) -> None:
        self.before_redirect = before_redirect
        self.opened: list[str] = []
        self.manifest: dict[str, Any] = {}
        self.callback: requests.Response | None = None
        self.failure: BaseException | None = None
        self.done = threading.Event()

    def open(self, url: str, *args: Any, **kwargs: Any) -> bool:
        self.opened.append(url)
        threading.Thread(target=self._drive, args=(url,), daemon=True).start()
        return True

    def _drive(self, url: str) -> None:
        try:
            form = _Form()
            form.feed(requests.get(url, timeout=30).text)
            self.manifest = json.loads(form.fields["manifest"])
            answer = requests.post(form.action, data=form.fields, allow_redirects=False, timeout=30)
            assert answer.status_code == 302, answer.text
            location = answer.headers["Location"]
            if self.before_redirect is not None:
                location = self.before_redirect(location)
            self.callback = requests.get(location, timeout=30)
        except BaseException as exc:  # the test reads it; the command times out meanwhile
            self.failure = exc
        finally:
            self.done.set()

    def answered(self, status: int) -> bool:
        """Whether the command's ``/callback`` answered ``status`` (waiting for the browser to read it)."""
        assert self.done.wait(30), "the browser did not finish"
        assert self.failure is None, self.failure
        return self.callback is not None and self.callback.status_code == status


@pytest.fixture
def browser(monkeypatch: pytest.MonkeyPatch) -> Browser:
    found = Browser()
    monkeypatch.setattr(webbrowser, "open", found.open)
    return found


@pytest.fixture
def sim() -> Iterator[GitHubSimulator]:
    with GitHubSimulator() as started:
        started.add_installation("octo-org", repos=["api"])
        yield started


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "jitr.toml"
    path.write_text(f'[embedded]\nstate_dir = "{tmp_path / "state"}"\n')
    return path


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["github-app", "create", "--webhook-url", WEBHOOK_URL, "--timeout", "60", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def sim_args(sim: GitHubSimulator) -> list[str]:
    return ["--github-url", sim.root_url, "--api-url", sim.base_url]


def assert_no_secret(sim: GitHubSimulator, *texts: str) -> None:
    """No 16-character piece of any key, token or secret the simulator handed out appears in ``texts``."""
    pieces = {
        line[i : i + CHUNK]
        for secret in sim.secrets_issued()
        for line in secret.splitlines()
        if "-----" not in line
        for i in range(0, len(line) - CHUNK + 1, CHUNK)
    }
    for text in texts:
        assert not any(text[i : i + CHUNK] in pieces for i in range(len(text) - CHUNK + 1)), text[:200]


def mints_a_token(settings: Settings, sim: GitHubSimulator) -> bool:
    """The stored key, read back through the backend, authenticates the new App and mints a token."""
    key = Backend(create_plugin_manager(), settings).secret("github_app_private_key")
    client = GitHubClient(settings.github_app_id, Secret(key), sim.base_url, backoff_s=0.001)
    installation = client.installation_for("octo-org")
    return client.fetch_rate_limit(installation).limit > 0


def snippet(out: str, config: Path) -> str:
    """The TOML the command says to add to ``config``."""
    lines = out.split(f"Add to {config}:\n", 1)[1].splitlines()
    return "\n".join(lines[: lines.index("")]) + "\n"


# -- the embedded backend ---------------------------------------------------------------------


def test_embedded_secrets_become_owner_only_files_and_the_key_mints_tokens(
    sim: GitHubSimulator,
    browser: Browser,
    config: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    code, out, err = run(capsys, *sim_args(sim), "--config", str(config), "--name", "jitr-test-app")
    assert code == 0, err
    [app] = sim.apps()
    assert browser.answered(200)
    assert browser.manifest["hook_attributes"] == {"url": WEBHOOK_URL, "active": True}
    assert browser.manifest["default_permissions"] == {"actions": "read", "administration": "write", "metadata": "read"}
    assert (browser.manifest["default_events"], browser.manifest["public"]) == (["workflow_job"], False)
    assert browser.manifest["redirect_url"].startswith("http://127.0.0.1:") and app.slug == "jitr-test-app"

    secrets = tmp_path / "state" / "secrets"
    for name, value in (("github-app-private-key.pem", app.private_key_pem), ("webhook-secret", app.webhook_secret)):
        assert (secrets / name).stat().st_mode & 0o777 == 0o600
        assert (secrets / name).read_text().rstrip("\n") == str(value).rstrip("\n")
    assert f"id {app.id}" in out and f"{sim.root_url}/apps/jitr-test-app/installations/new" in out
    assert f"{sim.root_url}/settings/apps/jitr-test-app" in out

    config.write_text(config.read_text() + snippet(out, config))
    settings = Settings.from_toml(config)
    assert settings.github_app_id == str(app.id) and settings.github_api_url == sim.base_url
    assert Backend(create_plugin_manager(), settings).secret("webhook_secret") == app.webhook_secret
    assert mints_a_token(settings, sim)
    assert_no_secret(sim, out, err, caplog.text, *(r.getMessage() for r in caplog.records))


def test_enterprise_server_and_an_organization(
    browser: Browser, config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with GitHubSimulator(api_prefix="/api/v3") as ghes:
        ghes.add_installation("octo-org")
        code, out, err = run(capsys, "--github-url", ghes.root_url, "--org", "octo-org", "--config", str(config))
        assert code == 0, err
        [app] = ghes.apps()
    assert (app.owner.login, app.owner.type) == ("octo-org", "Organization")
    assert app.slug.startswith("jitr-octo-org-") and len(app.slug) <= 34
    assert browser.manifest["default_permissions"]["organization_self_hosted_runners"] == "write"
    assert f"{ghes.root_url}/organizations/octo-org/settings/apps/{app.slug}" in out
    assert f'api_url = "{ghes.root_url}/api/v3"' in out  # GHES's API, derived from --github-url


# -- hostile and broken answers ------------------------------------------------------------------


def _with_query(url: str, **changes: str | None) -> str:
    parts = urlsplit(url)
    query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    query.update({k: v for k, v in changes.items() if v is not None})
    for key in [k for k, v in changes.items() if v is None]:
        query.pop(key, None)
    return urlunsplit(parts._replace(query=urlencode(query)))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"state": "forged-by-someone-else"}, "carried a state that this run did not send"),
        ({"state": None}, "carried a state that this run did not send"),
        ({"code": None}, "carried no code"),
    ],
)
def test_a_redirect_with_a_wrong_state_or_no_code_stops_before_anything_is_stored(
    sim: GitHubSimulator,
    browser: Browser,
    config: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    change: dict[str, str | None],
    message: str,
) -> None:
    browser.before_redirect = lambda url: _with_query(url, **change)
    code, out, err = run(capsys, *sim_args(sim), "--config", str(config))
    assert code == 2 and message in err and out == ""
    assert browser.answered(400)
    assert sim.apps() == [] and not (tmp_path / "state" / "secrets").exists()


def test_a_code_used_by_someone_else_first_is_refused(
    sim: GitHubSimulator, browser: Browser, config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    def steal(url: str) -> str:
        stolen = parse_qs(urlsplit(url).query)["code"][-1]
        assert requests.post(f"{sim.base_url}/app-manifests/{stolen}/conversions", timeout=30).status_code == 201
        return url

    browser.before_redirect = steal
    code, out, err = run(capsys, *sim_args(sim), "--config", str(config))
    assert code == 2 and "GitHub does not know this manifest code" in err and "works once" in err
    assert not (tmp_path / "state" / "secrets").exists()
    assert_no_secret(sim, out, err)


def test_a_failing_github_is_reported_and_nothing_is_stored(
    sim: GitHubSimulator, browser: Browser, config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sim.fail_next(3, 503, path_contains="app-manifests")
    code, _, err = run(capsys, *sim_args(sim), "--config", str(config))
    assert code == 2 and "did not convert the manifest code" in err and "HTTP 503" in err
    assert sim.apps() == [] and not (tmp_path / "state" / "secrets").exists()


def test_an_environment_reference_is_refused_before_github_is_asked(
    sim: GitHubSimulator, browser: Browser, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "jitr.toml"
    config.write_text('[secrets]\nwebhook_secret = "env:MY_WEBHOOK_SECRET"\n')
    code, out, err = run(capsys, *sim_args(sim), "--config", str(config))
    assert code == 2 and "env:MY_WEBHOOK_SECRET" in err and "cannot write" in err
    assert browser.opened == [] and sim.apps() == [] and out == ""


def test_an_unwritable_secrets_location_is_refused_before_github_is_asked(
    sim: GitHubSimulator, browser: Browser, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("x")
    config = tmp_path / "jitr.toml"
    config.write_text(f'[secrets]\ngithub_app_private_key = "file:{blocker}/keys/app.pem"\n')
    code, _, err = run(capsys, *sim_args(sim), "--config", str(config))
    assert code == 2 and "so no App was created" in err and f"{blocker} is not a directory" in err
    assert browser.opened == [] and sim.apps() == []


def test_secrets_that_cannot_be_stored_after_all_leave_instructions_but_no_secret(
    sim: GitHubSimulator, browser: Browser, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    taken = tmp_path / "a-directory-where-the-key-should-go"
    taken.mkdir()
    config = tmp_path / "jitr.toml"
    config.write_text(f'[embedded]\nstate_dir = "{tmp_path}"\n[secrets]\ngithub_app_private_key = "file:{taken}"\n')
    code, out, err = run(capsys, *sim_args(sim), "--config", str(config))
    [app] = sim.apps()
    assert code == 2 and f"{app.slug!r} (id {app.id}) was created, but its secrets could not be stored" in err
    assert f"{sim.root_url}/settings/apps/{app.slug}" in err
    assert_no_secret(sim, out, err)


def test_no_redirect_in_time_is_a_clear_error(
    sim: GitHubSimulator, config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    code = main(
        ["github-app", "create", "--webhook-url", WEBHOOK_URL, *sim_args(sim), "--config", str(config),
         "--no-browser", "--port", str(port), "--timeout", "0.2"]
    )  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and f"Open http://127.0.0.1:{port}/ in a browser" in err
    assert f"did not redirect back to http://127.0.0.1:{port}/callback within 0.2s" in err


def test_a_webhook_url_that_is_not_a_url_is_refused(
    sim: GitHubSimulator, browser: Browser, config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["github-app", "create", "--webhook-url", "jitr.example.com/webhook", "--config", str(config)])
    assert code == 2 and "--webhook-url must be" in capsys.readouterr().err and browser.opened == []


# -- the clouds ---------------------------------------------------------------------------------


def _settings_env(monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> None:
    monkeypatch.delenv("JITR_CONFIG", raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)


def test_aws_secrets_manager_gets_both_secrets_and_the_app_id_is_printed(
    sim: GitHubSimulator,
    browser: Browser,
    request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    if not HAS_AWS:
        pytest.skip("the aws extra is not installed")
    import boto3

    endpoint = request.getfixturevalue("moto_endpoint")
    prefix = f"jitr/{uuid.uuid4().hex[:10]}"
    _settings_env(
        monkeypatch,
        {
            **FAKE_CREDENTIALS,
            "JITR_PROVIDER": "aws",
            "JITR_AWS_REGION": REGION,
            "JITR_AWS_ENDPOINT_URL": endpoint,
            "JITR_SECRETS_WEBHOOK_SECRET": f"{prefix}/webhook",
            "JITR_SECRETS_GITHUB_APP_PRIVATE_KEY": f"{prefix}/app-key",
        },
    )
    code, _, err = run(capsys, *sim_args(sim))  # every role on AWS, but no queue configured yet
    assert code == 2 and "JITR_AWS_JOBS_QUEUE_URL is required" in err and "so no App was created" in err
    assert browser.opened == [] and sim.apps() == []

    monkeypatch.setenv("JITR_PROVIDER", "embedded")
    monkeypatch.setenv("JITR_SECRETS_PROVIDER", "aws")  # what this command needs of AWS: its secrets
    code, out, err = run(capsys, *sim_args(sim))
    assert code == 0, err
    [app] = sim.apps()
    stored = boto3.client("secretsmanager", region_name=REGION, endpoint_url=endpoint)
    assert stored.get_secret_value(SecretId=f"{prefix}/app-key")["SecretString"] == app.private_key_pem
    assert stored.get_secret_value(SecretId=f"{prefix}/webhook")["SecretString"] == app.webhook_secret
    assert f"export JITR_GITHUB_APP_ID={app.id}" in out and f"export JITR_GITHUB_API_URL={sim.base_url}" in out
    assert "JITR_SECRETS_" not in out  # the settings already name where the secrets are
    monkeypatch.setenv("JITR_GITHUB_APP_ID", str(app.id))
    assert mints_a_token(Settings.from_env(), sim)
    assert_no_secret(sim, out, err)


def test_gcp_secret_manager_gets_new_secrets_and_the_key_mints_tokens(
    sim: GitHubSimulator, browser: Browser, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("jitr_gcp", reason="the gcp extra is not installed")
    from jitr_gcp.testing.secretmanager_fake import FakeSecretManager

    fake = FakeSecretManager()
    fake.start()
    try:
        _settings_env(
            monkeypatch,
            {
                "JITR_PROVIDER": "gcp",
                "JITR_GCP_PROJECT": "jitr-test",
                "JITR_GCP_SECRETMANAGER_ENDPOINT": fake.url,
                "JITR_GCP_SECRET_CACHE_TTL_S": "0",
                "JITR_SECRETS_WEBHOOK_SECRET": "webhook-secret",
                "JITR_SECRETS_GITHUB_APP_PRIVATE_KEY": "projects/jitr-test/secrets/github-app-key",
            },
        )
        code, out, err = run(capsys, *sim_args(sim), "--public")
        assert code == 0, err
        [app] = sim.apps()
        assert set(fake.secrets) == {
            "projects/jitr-test/secrets/webhook-secret",
            "projects/jitr-test/secrets/github-app-key",
        }
        assert "organization_self_hosted_runners" in browser.manifest["default_permissions"]  # --public
        monkeypatch.setenv("JITR_GITHUB_APP_ID", str(app.id))
        settings = Settings.from_env()
        assert Backend(create_plugin_manager(), settings).secret("webhook_secret") == app.webhook_secret
        assert mints_a_token(settings, sim)
        assert f"export JITR_GITHUB_APP_ID={app.id}" in out
        assert_no_secret(sim, out, err)
    finally:
        fake.stop()
