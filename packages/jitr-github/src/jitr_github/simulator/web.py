"""The simulated GitHub's web pages an App author meets: registering an App from a manifest.

``POST /settings/apps/new`` (the signed-in user's account) and
``POST /organizations/{org}/settings/apps/new`` take the form fields ``manifest`` (JSON) and
``state``. Where github.com shows a page to review the App and a "Create" button, the simulator
creates the code at once and answers the redirect the button leads to: ``302`` to
``redirect_url?code=...&state=...``. A manifest GitHub would refuse answers ``422`` with the
reasons in a small HTML page. These pages live on the web root, never under an API prefix.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable
from urllib.parse import parse_qs

from .http import Request, Response, Route, match, route
from .manifests import ManifestError, ManifestFlow, Owner, parse_manifest, redirect_location

_LOGIN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]{0,38}$")
FORM_TYPE = "application/x-www-form-urlencoded"


class WebPages:
    """Answers the web routes; :meth:`handle` returns None for any other path."""

    def __init__(self, flow: ManifestFlow, owner_of: Callable[[str | None], Owner]) -> None:
        self._flow = flow
        self._owner_of = owner_of
        self._routes: list[Route] = [
            route("POST", "/settings/apps/new", self._new_app),
            route("POST", "/organizations/{org}/settings/apps/new", self._new_app),
        ]

    def handle(self, req: Request) -> Response | None:
        found, params, known = match(self._routes, req.method, req.path)
        if found is None:
            return _page(405, "Method Not Allowed", "Submit the form with POST.") if known else None
        req.params = params
        return found.handler(req)

    def _new_app(self, req: Request) -> Response:
        org = req.params.get("org")
        if org is not None and not _LOGIN.match(org):
            return _page(404, "Not Found", "No such organization.")
        content_type = (req.header("Content-Type") or FORM_TYPE).split(";")[0].strip().lower()
        if content_type != FORM_TYPE:
            return _page(415, "Unsupported Media Type", f"Post the form as {FORM_TYPE}.")
        try:
            form = parse_qs(req.body.decode("utf-8"), keep_blank_values=True, strict_parsing=False)
        except UnicodeDecodeError:
            return _page(400, "Bad Request", "The form is not UTF-8.")
        text = (form.get("manifest") or [""])[-1]
        if not text:
            return _page(422, "Unprocessable Entity", "The form has no manifest.")
        state = form["state"][-1] if "state" in form else None
        try:
            manifest = parse_manifest(text)
            code = self._flow.submit(manifest, self._owner_of(org))
        except ManifestError as exc:
            return _page(422, "Unprocessable Entity", *exc.errors)
        return Response(302, b"", {"Location": redirect_location(manifest.redirect_url, code, state)})


def _page(status: int, title: str, *lines: str) -> Response:
    items = "".join(f"<li>{html.escape(line)}</li>" for line in lines)
    body = (
        f"<!DOCTYPE html><html><head><title>{title}</title></head><body><h1>{title}</h1><ul>{items}</ul></body></html>"
    )
    return Response(status, body.encode(), {"Content-Type": "text/html; charset=utf-8"})
