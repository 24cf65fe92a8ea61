"""``jitr github-app create``: register jitr's GitHub App from a manifest and store its secrets.

GitHub's manifest flow needs a browser: a page on ``127.0.0.1`` posts the manifest (the
permissions, the ``workflow_job`` event and the webhook URL jitr needs) to GitHub, the person
clicks "Create", and GitHub redirects back to that page's ``/callback`` with a one-time code.
The code is exchanged for the App's id, private key and webhook secret; the two secrets go
straight into jitr's secret store through ``jitr_store_secret``, and only what is not secret
(the App id, its pages, where the secrets went) is printed. A random ``state`` ties the
redirect to this run: any other answer stops the command.
"""

from __future__ import annotations

import argparse
import hmac
import html
import json
import os
import secrets
import shlex
import sys
import threading
import webbrowser
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO
from urllib.parse import parse_qs, urlsplit

from jitr_core.backend import Backend
from jitr_core.embedded.secrets import secrets_dir
from jitr_core.errors import JitrError, SecretNotFoundError, SettingsError
from jitr_core.plugins import create_plugin_manager
from jitr_core.settings import Settings

if TYPE_CHECKING:
    from jitr_github.manifest import CreatedApp

GITHUB_COM = "https://github.com"
DEFAULT_SECRET_REFERENCES = {
    "github_app_private_key": "env:JITR_GITHUB_APP_PRIVATE_KEY",
    "webhook_secret": "env:JITR_WEBHOOK_SECRET",
}
EMBEDDED_FILES = {"github_app_private_key": "github-app-private-key.pem", "webhook_secret": "webhook-secret"}
REPOSITORY_PERMISSIONS = {"actions": "read", "administration": "write", "metadata": "read"}
ORGANIZATION_PERMISSIONS = {"organization_self_hosted_runners": "write"}
EVENTS = ["workflow_job"]
MAX_NAME_LENGTH = 34


class GitHubAppSetupError(JitrError):
    """The App could not be created, or its secrets could not be stored."""


@dataclass(frozen=True, slots=True)
class Options:
    webhook_url: str
    name: str | None = None
    org: str | None = None
    github_url: str = GITHUB_COM
    api_url: str | None = None
    public: bool = False
    config: str | None = None
    port: int = 0
    open_browser: bool = True
    timeout_s: float = 600.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", required=True)
    p = actions.add_parser("create", help="register jitr's GitHub App from a manifest and store its secrets")
    p.add_argument("--webhook-url", required=True, help="jitr's webhook endpoint, reachable from GitHub")
    p.add_argument("--name", help="the App's name (default: jitr-<owner>-<random>); editable on GitHub's page")
    p.add_argument("--org", help="register the App in this organisation (default: your own account)")
    p.add_argument("--github-url", default=GITHUB_COM, help="GitHub's web URL; https://HOST for GitHub Enterprise")
    p.add_argument("--api-url", help="GitHub's API URL (default: api.github.com, or https://HOST/api/v3)")
    p.add_argument("--public", action="store_true", help="let any account install the App (default: owner only)")
    p.add_argument("--config", help="TOML settings of `jitr serve` (default: JITR_* environment)")
    p.add_argument("--port", type=int, default=0, help="port of the local page on 127.0.0.1 (default: any free)")
    p.add_argument("--no-browser", action="store_true", help="print the local page's URL instead of opening it")
    p.add_argument("--timeout", type=float, default=600.0, help="seconds to wait for GitHub (default: 600)")
    p.set_defaults(func=cmd_github_app)


def cmd_github_app(args: argparse.Namespace) -> int:
    options = Options(
        webhook_url=args.webhook_url,
        name=args.name,
        org=args.org,
        github_url=args.github_url,
        api_url=args.api_url,
        public=args.public,
        config=args.config,
        port=args.port,
        open_browser=not args.no_browser,
        timeout_s=args.timeout,
    )
    settings = Settings.from_toml(options.config) if options.config else Settings.from_env()
    create(options, settings)
    return 0


# -- the parts --------------------------------------------------------------------------------


def github_urls(github_url: str, api_url: str | None) -> tuple[str, str]:
    """GitHub's web and API base URLs: github.com and api.github.com, or ``https://HOST`` and ``/api/v3``."""
    web = github_url.rstrip("/")
    if urlsplit(web).scheme not in ("http", "https") or not urlsplit(web).netloc:
        raise SettingsError(f"--github-url must be http(s)://host, found {github_url!r}")
    if api_url:
        api = api_url.rstrip("/")
    elif urlsplit(web).netloc.lower() == "github.com":
        api = "https://api.github.com"
    else:
        api = web + "/api/v3"
    return web, api


def check_webhook_url(url: str) -> None:
    webhook = urlsplit(url)
    if webhook.scheme not in ("http", "https") or not webhook.netloc:
        raise SettingsError(f"--webhook-url must be jitr's http(s) webhook URL, found {url!r}")


def manifest(options: Options, redirect_url: str) -> dict[str, Any]:
    """The App jitr needs: its webhook, ``workflow_job`` and the runner permissions, nothing more."""
    check_webhook_url(options.webhook_url)
    webhook = urlsplit(options.webhook_url)
    permissions = dict(REPOSITORY_PERMISSIONS)
    if options.org or options.public:  # organisation runners need an organisation's installation
        permissions.update(ORGANIZATION_PERMISSIONS)
    return {
        "name": options.name or default_name(options.org),
        "url": f"{webhook.scheme}://{webhook.netloc}",
        "hook_attributes": {"url": options.webhook_url, "active": True},
        "redirect_url": redirect_url,
        "public": options.public,
        "default_permissions": permissions,
        "default_events": list(EVENTS),
    }


def default_name(org: str | None) -> str:
    """App names are unique across GitHub: ``jitr-<owner>-<4 hex digits>``, at most 34 characters."""
    suffix = secrets.token_hex(2)
    owner = (org or "runners").lower()[: MAX_NAME_LENGTH - len("jitr--") - len(suffix)]
    return f"jitr-{owner}-{suffix}"


def secret_references(settings: Settings, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """Where each secret will be written, refusing before GitHub is asked when one cannot be.

    An embedded deployment still on the built-in ``env:`` defaults gets files in its state
    directory (the settings to adopt them are printed); any other ``env:`` reference is an error.
    """
    found: dict[str, str] = {}
    for name, default in DEFAULT_SECRET_REFERENCES.items():
        reference = settings.secrets.get(name, default)
        if reference == default and settings.provider("secrets") == "embedded":
            reference = f"file:{secrets_dir(settings, environ) / EMBEDDED_FILES[name]}"
        elif reference.startswith("env:"):
            raise SettingsError(
                f"secret {name!r} is read from {reference}, an environment variable, which jitr cannot write; "
                f"point [secrets] {name} (JITR_SECRETS_{name.upper()}) at a file: reference or a secrets manager "
                f"before creating the App"
            )
        found[name] = reference
    return found


def check_secret_store(backend: Backend, references: Mapping[str, str]) -> None:
    """Fail now, not after GitHub created the App, when the secrets clearly cannot be stored.

    A ``file:`` target needs a writable directory; any other reference is read once through
    its provider, which proves the provider's settings and that it can be reached (an absent
    secret is fine: it will be created). Values read are never shown.
    """
    for name, reference in references.items():
        try:
            if reference.startswith("file:"):
                _check_writable(name, Path(reference.removeprefix("file:")).expanduser())
            else:
                backend.secret(name)
        except SecretNotFoundError:
            continue
        except JitrError as exc:
            raise GitHubAppSetupError(
                f"jitr cannot store secret {name!r} in {reference}, so no App was created: {exc}"
            ) from None


def _check_writable(name: str, path: Path) -> None:
    ancestor = path.parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir() or not os.access(ancestor, os.W_OK | os.X_OK):
        raise SettingsError(f"secret {name!r}: {ancestor} is not a directory this user can write to")


class CallbackServer:
    """The local page that posts the manifest to GitHub, and the ``/callback`` GitHub redirects to."""

    def __init__(self, port: int, make_page: Callable[[str, str], str]) -> None:
        self.state = secrets.token_urlsafe(32)
        self._done = threading.Event()
        self._code: str | None = None
        self._error: str | None = None
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                parts = urlsplit(self.path)
                if parts.path == "/":
                    self._answer(200, server.page)
                elif parts.path == "/callback":
                    self._answer(*server.received(parse_qs(parts.query)))
                else:
                    self._answer(404, _html("Not found", "jitr serves only / and /callback here."))

            def _answer(self, status: int, body: str) -> None:
                data = body.encode()
                self.send_response(status)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                """Quiet: the callback's query holds the one-time code."""

        self._httpd = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self._httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        self.page = make_page(self.url + "/callback", self.state)
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="jitr-github-app", daemon=True)

    def __enter__(self) -> CallbackServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def received(self, query: Mapping[str, list[str]]) -> tuple[int, str]:
        """Take GitHub's redirect once: the code when the state matches, an error otherwise."""
        if self._done.is_set():
            return 409, _html("Already done", "This page already received GitHub's answer; return to your terminal.")
        state = (query.get("state") or [""])[-1]
        code = (query.get("code") or [""])[-1]
        if not hmac.compare_digest(state.encode(), self.state.encode()):
            self._error = "GitHub's redirect carried a state that this run did not send; nothing was stored"
        elif not code:
            self._error = "GitHub's redirect carried no code; the App was not created"
        else:
            self._code = code
        self._done.set()
        if self._error:
            return 400, _html("jitr stopped", self._error + ".")
        return 200, _html("GitHub App created", "jitr is storing the App's secrets; return to your terminal.")

    def wait(self, timeout_s: float) -> str:
        """The code GitHub sent back; raises when the redirect was wrong or did not come in time."""
        if not self._done.wait(timeout_s):
            raise GitHubAppSetupError(
                f"GitHub did not redirect back to {self.url}/callback within {timeout_s:g}s, so no App was "
                f"stored; submit the page at {self.url}/ and click Create on GitHub, or run the command again"
            )
        if self._error or not self._code:
            raise GitHubAppSetupError(self._error or "no code")
        return self._code


def manifest_page(action: str, manifest_json: str, state: str) -> str:
    """A page that posts the manifest to GitHub at once (and offers a button without JavaScript)."""
    return (
        '<!DOCTYPE html><html><head><meta charset="utf-8"><title>Create the jitr GitHub App</title></head><body>'
        "<p>Sending jitr's App manifest to GitHub&hellip;</p>"
        f'<form id="manifest" method="post" action="{html.escape(action)}">'
        f'<input type="hidden" name="manifest" value="{html.escape(manifest_json)}">'
        f'<input type="hidden" name="state" value="{html.escape(state)}">'
        '<button type="submit">Continue to GitHub</button></form>'
        '<script>document.getElementById("manifest").submit();</script></body></html>'
    )


def _settings_url(web: str, org: str | None, slug: str) -> str:
    """The App's settings page, where its owner manages keys and the webhook."""
    return f"{web}/organizations/{org}/settings/apps/{slug}" if org else f"{web}/settings/apps/{slug}"


def _html(title: str, text: str) -> str:
    return (
        f'<!DOCTYPE html><html><head><meta charset="utf-8"><title>{html.escape(title)}</title></head>'
        f"<body><h1>{html.escape(title)}</h1><p>{html.escape(text)}</p></body></html>"
    )


# -- the command ------------------------------------------------------------------------------


def create(options: Options, settings: Settings, out: TextIO | None = None, err: TextIO | None = None) -> CreatedApp:
    """Run the manifest flow end to end; prints what is not secret, returns the App."""
    from jitr_github.manifest import convert_manifest_code  # requests is imported only by this command

    out, err = out or sys.stdout, err or sys.stderr
    web, api = github_urls(options.github_url, options.api_url)
    check_webhook_url(options.webhook_url)
    references = secret_references(settings)
    backend = Backend(create_plugin_manager(), settings)
    check_secret_store(backend, references)  # refuse before anything exists on GitHub
    options = replace(options, name=options.name or default_name(options.org))
    action = f"{web}/organizations/{options.org}/settings/apps/new" if options.org else f"{web}/settings/apps/new"

    def page(redirect_url: str, state: str) -> str:
        return manifest_page(action, json.dumps(manifest(options, redirect_url)), state)

    with CallbackServer(options.port, page) as server:
        print(f"Creating the GitHub App {options.name!r} on {web} through {server.url}/ ...", file=err, flush=True)
        if not options.open_browser or not webbrowser.open(server.url + "/"):
            print(f"Open {server.url}/ in a browser on this machine to continue.", file=err, flush=True)
        code = server.wait(options.timeout_s)
    app = convert_manifest_code(api, code, backoff_s=0.5)
    stored = _store(backend, app, references, web, options.org)
    _report(out, app, stored, settings, options, api, web)
    return app


def _store(
    backend: Backend, app: CreatedApp, references: Mapping[str, str], web: str, org: str | None
) -> dict[str, tuple[str, bool]]:
    values = {"github_app_private_key": app.pem, "webhook_secret": app.webhook_secret}
    stored: dict[str, tuple[str, bool]] = {}
    try:
        for name, value in values.items():
            if value is None:
                raise GitHubAppSetupError("GitHub answered no webhook secret")
            stored[name] = (references[name], backend.store_secret(name, value, references[name]))
    except JitrError as exc:
        settings_url = _settings_url(web, org, app.slug)
        raise GitHubAppSetupError(
            f"the GitHub App {app.slug!r} (id {app.id}) was created, but its secrets could not be stored: {exc}. "
            f"Generate a new private key and set a new webhook secret at {settings_url}, and store them as "
            f"docs/github-app-setup.md describes"
        ) from None
    return stored


def _report(
    out: TextIO,
    app: CreatedApp,
    stored: Mapping[str, tuple[str, bool]],
    settings: Settings,
    options: Options,
    api: str,
    web: str,
) -> None:
    settings_url = _settings_url(web, options.org, app.slug)
    lines = [
        f"Created the GitHub App {app.name!r} (id {app.id}, slug {app.slug}) owned by {app.owner}.",
        f"  App page:        {app.html_url}",
        f"  Settings:        {settings_url}",
        f"  Install it:      {app.install_url}",
    ]
    for name, label in (("github_app_private_key", "Private key"), ("webhook_secret", "Webhook secret")):
        reference, created = stored[name]
        lines.append(f"  {label + ':':<16} stored in {reference} ({'new' if created else 'new value'})")
    changes: dict[str, str] = {"github.app_id": str(app.id)}
    if api != settings.github_api_url:
        changes["github.api_url"] = api
    for name, (reference, _) in stored.items():
        if reference != settings.secrets.get(name):
            changes[f"secrets.{name}"] = reference
    lines.append("")
    if options.config:
        lines.append(f"Add to {options.config}:")
        for table in ("github", "secrets"):
            keys = {k.split(".", 1)[1]: v for k, v in changes.items() if k.startswith(table + ".")}
            if keys:
                lines.append(f"[{table}]")
                lines += [f"{key} = {json.dumps(value)}" for key, value in keys.items()]
    else:
        where = "jitr's environment" if settings.provider("secrets") == "embedded" else "jitr's functions"
        lines.append(f"Set in {where} (the App id is not secret):")
        for key, value in changes.items():
            variable = "JITR_" + key.replace(".", "_").upper()
            lines.append(f"export {variable}={shlex.quote(value)}")
    lines.append("")
    lines.append(f"Then install the App on the accounts and repositories jitr serves: {app.install_url}")
    print("\n".join(lines), file=out, flush=True)
