"""The REST endpoints of the simulated GitHub that jitr's client calls.

Requests are authenticated as GitHub does (App JWT or installation token, scoped to the
installation's account and repositories), counted per endpoint, rate limited per principal with
``x-ratelimit-*`` headers on every answer, answered 304 for a matching ``If-None-Match`` (which
costs no rate limit), and broken on purpose according to the current :class:`Faults`.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar
from urllib.parse import urlencode

from cryptography.hazmat.primitives.asymmetric import rsa

from .auth import AppIdentities, AuthFailure, Bucket, RateLimiter, TokenStore
from .faults import FaultDice, Faults
from .http import HttpError, Request, Response, Route, match, route
from .jitconfig import CREDENTIALS_FILE, RSA_PARAMS_FILE, RUNNER_FILE, encode_jit_config, rsa_parameters
from .manifests import CodeNotFound, CreatedApp, ManifestError, ManifestFlow
from .shapes import DOCS, RATE_LIMIT_DOCS, Shapes, error, iso
from .state import Installation, Repository, Runner, SimulatorError, World
from .webhooks import WebhookSender

T = TypeVar("T")
API_VERSION = "2022-11-28"
NOT_ACCESSIBLE = "Resource not accessible by integration"


@dataclass(frozen=True, slots=True)
class Caller:
    """Who sent a request: an App (JWT; ``app_id``), an installation (token) or nobody."""

    kind: str
    installation_id: int | None = None
    app_id: int | None = None

    @property
    def principal(self) -> str:
        return f"installation:{self.installation_id}" if self.kind == "installation" else self.kind


ANONYMOUS = Caller("anonymous")


@dataclass(slots=True)
class ScriptedFailure:
    status: int
    remaining: int
    path_contains: str | None
    retry_after: int | None


class RestApi:
    """Routes, authentication, rate limits, faults and the handlers themselves."""

    def __init__(
        self,
        *,
        world: World,
        apps: AppIdentities,
        manifests: ManifestFlow,
        tokens: TokenStore,
        sender: WebhookSender,
        shapes: Shapes,
        clock: Callable[[], float],
        server_url: str,
        runner_key: Callable[[], rsa.RSAPrivateKey],
    ) -> None:
        self._world = world
        self._apps = apps
        self._manifests = manifests
        self._tokens = tokens
        self._sender = sender
        self._shapes = shapes
        self._clock = clock
        self._server_url = server_url
        self._runner_key = runner_key
        self._limiter = RateLimiter(clock)
        self._dice = FaultDice(Faults())
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()
        self._scripted: list[ScriptedFailure] = []
        self._request_ids = itertools.count(1)
        self._label_ids: dict[str, int] = {}
        self._jwts: deque[str] = deque(maxlen=10000)
        self._jit_configs: deque[str] = deque(maxlen=10000)
        self.actions_write = True  # the App's "actions: write" permission, which re-runs need
        self.routes: list[Route] = [
            route("POST", "/app/installations/{installation_id}/access_tokens", self._access_token, "jwt"),
            route("GET", "/repos/{owner}/{repo}/installation", self._repo_installation, "jwt"),
            route("GET", "/orgs/{org}/installation", self._org_installation, "jwt"),
            route("GET", "/users/{username}/installation", self._user_installation, "jwt"),
            route("GET", "/app/hook/deliveries", self._deliveries, "jwt"),
            route("POST", "/app/hook/deliveries/{delivery_id}/attempts", self._redeliver, "jwt"),
            route("POST", "/repos/{owner}/{repo}/actions/runners/generate-jitconfig", self._jit_repo, "token"),
            route("POST", "/orgs/{org}/actions/runners/generate-jitconfig", self._jit_org, "token"),
            route("GET", "/repos/{owner}/{repo}/actions/runners", self._runners_repo, "token"),
            route("GET", "/orgs/{org}/actions/runners", self._runners_org, "token"),
            route("GET", "/repos/{owner}/{repo}/actions/runners/{runner_id}", self._runner_repo, "token"),
            route("GET", "/orgs/{org}/actions/runners/{runner_id}", self._runner_org, "token"),
            route("DELETE", "/repos/{owner}/{repo}/actions/runners/{runner_id}", self._delete_repo, "token"),
            route("DELETE", "/orgs/{org}/actions/runners/{runner_id}", self._delete_org, "token"),
            route("GET", "/repos/{owner}/{repo}/actions/runs", self._runs, "token"),
            route("GET", "/repos/{owner}/{repo}/actions/runs/{run_id}/jobs", self._run_jobs, "token"),
            route("GET", "/repos/{owner}/{repo}/actions/jobs/{job_id}", self._job, "token"),
            route("POST", "/repos/{owner}/{repo}/actions/jobs/{job_id}/rerun", self._rerun_job, "token"),
            route("GET", "/orgs/{org}/actions/runner-groups", self._runner_groups, "token"),
            route("GET", "/rate_limit", self._rate_limit, "any"),
            route("POST", "/app-manifests/{code}/conversions", self._convert_manifest, "none"),
        ]

    # -- settings and counters ------------------------------------------------------------

    @property
    def faults(self) -> Faults:
        return self._dice.faults

    @faults.setter
    def faults(self, faults: Faults) -> None:
        self._dice = FaultDice(faults)

    def call_counts(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)

    def reset_call_counts(self) -> None:
        with self._lock:
            self._counts.clear()

    def fail_next(self, count: int, status: int, path_contains: str | None, retry_after: int | None) -> None:
        with self._lock:
            self._scripted.append(ScriptedFailure(status, count, path_contains, retry_after))

    def secrets_seen(self) -> list[str]:
        """App JWTs received and JIT configs issued (for tests proving none leaks)."""
        with self._lock:
            return [*self._jwts, *self._jit_configs]

    # -- dispatch ---------------------------------------------------------------------------

    def handle(self, req: Request) -> Response:
        found, params, path_known = match(self.routes, req.method, req.path)
        if found is None:
            status = 405 if path_known else 404
            return self._finish(
                Response.json(status, error("Not Found" if status == 404 else "Method Not Allowed", status)), ANONYMOUS
            )
        req.params = params
        with self._lock:
            self._counts[f"{req.method} {found.template}"] += 1
        faults = self._dice.faults
        if faults.latency_s:
            time.sleep(faults.latency_s)
        try:
            caller = self._authenticate(found.auth, req)
        except HttpError as exc:
            return self._finish(Response.json(exc.status, error(exc.message, exc.status)), ANONYMOUS)
        injected = self._injected_failure(req, caller)
        if injected is not None:
            return self._finish(injected, caller)
        limit = self._dice.faults.rate_limit
        if found.template != "/rate_limit":
            bucket = self._limiter.peek(caller.principal, limit, faults.rate_limit_window_s)
            if bucket.remaining <= 0:
                who = f"installation ID {caller.installation_id}" if caller.installation_id else "the App"
                message = f"API rate limit exceeded for {who}."
                return self._finish(Response.json(403, error(message, 403, RATE_LIMIT_DOCS)), caller, bucket)
        try:
            response: Response = found.handler(req, caller)
        except HttpError as exc:
            response = Response.json(exc.status, error(exc.message, exc.status), exc.headers)
        except SimulatorError as exc:
            response = Response.json(exc.status, error(str(exc), exc.status))
        if req.method == "GET" and response.status == 200:
            etag = 'W/"' + hashlib.sha256(response.body).hexdigest()[:40] + '"'
            response.headers["ETag"] = etag
            if etag in (req.header("If-None-Match") or "").replace(" ", "").split(","):
                response = Response(304, b"", {"ETag": etag})
        if response.status == 304 or found.template == "/rate_limit":
            return self._finish(response, caller)
        return self._finish(response, caller, self._limiter.take(caller.principal, limit, faults.rate_limit_window_s))

    def _finish(self, response: Response, caller: Caller, bucket: Bucket | None = None) -> Response:
        faults = self._dice.faults
        limit = faults.rate_limit if caller is not ANONYMOUS else 60
        bucket = bucket or self._limiter.peek(caller.principal, limit, faults.rate_limit_window_s)
        with self._lock:
            request_id = next(self._request_ids)
        response.headers.update(
            {
                "X-GitHub-Api-Version-Selected": API_VERSION,
                "X-GitHub-Media-Type": "github.v3; format=json",
                "X-GitHub-Request-Id": f"0000:{request_id:08X}",
                "x-ratelimit-limit": str(bucket.limit),
                "x-ratelimit-remaining": str(bucket.remaining),
                "x-ratelimit-reset": str(bucket.reset),
                "x-ratelimit-used": str(bucket.used),
                "x-ratelimit-resource": "core",
            }
        )
        return response

    def _authenticate(self, kind: str, req: Request) -> Caller:
        header = req.header("Authorization") or ""
        scheme, _, credential = header.partition(" ")
        credential = credential.strip()
        if kind == "none" or (kind == "any" and not credential):
            return ANONYMOUS
        if not credential or scheme.lower() not in ("bearer", "token"):
            raise HttpError(401, "Requires authentication")
        now = self._clock()
        if kind in ("jwt", "any") and credential.count(".") == 2:
            with self._lock:
                self._jwts.append(credential)
            try:
                identity = self._apps.verify_jwt(credential, now)
            except AuthFailure as exc:
                raise HttpError(401, str(exc)) from None
            return Caller("app", app_id=identity.app_id)
        if kind == "jwt":
            raise HttpError(401, "A JSON web token could not be decoded")
        try:
            return Caller("installation", self._tokens.installation_of(credential, now))
        except AuthFailure as exc:
            if credential.count(".") == 2:
                raise HttpError(403, NOT_ACCESSIBLE) from None
            raise HttpError(401, str(exc)) from None

    def _injected_failure(self, req: Request, caller: Caller) -> Response | None:
        with self._lock:
            for scripted in self._scripted:
                if scripted.path_contains is None or scripted.path_contains in req.path:
                    scripted.remaining -= 1
                    if scripted.remaining <= 0:
                        self._scripted.remove(scripted)
                    return self._failure(scripted.status, scripted.retry_after)
        if self._dice.hit("http_5xx"):
            return self._failure((502, 503, 504)[int(self._dice.draw("http_5xx_status") * 3)], None)
        if self._dice.hit("http_429"):
            return self._failure(429, self._dice.faults.retry_after_s)
        return None

    @staticmethod
    def _failure(status: int, retry_after: int | None) -> Response:
        headers = {} if retry_after is None else {"Retry-After": str(retry_after)}
        if status in (403, 429):
            message = "You have exceeded a secondary rate limit. Please wait a few minutes before you try again."
            return Response.json(status, error(message, status, RATE_LIMIT_DOCS), headers)
        return Response.json(status, {"message": "Server Error" if status < 503 else "Service Unavailable"}, headers)

    # -- scope checks -------------------------------------------------------------------------

    def _repo_for(self, req: Request, caller: Caller) -> tuple[Repository, Installation]:
        repo = self._world.repository(req.params["owner"], req.params["repo"])
        if repo is None or repo.installation_id != caller.installation_id:
            raise HttpError(404, "Not Found")
        inst = self._world.installation(repo.installation_id)
        assert inst is not None
        return repo, inst

    def _org_for(self, req: Request, caller: Caller) -> Installation:
        inst = self._world.account(req.params["org"])
        if inst is None or inst.account_type != "Organization":
            raise HttpError(404, "Not Found")
        if inst.id != caller.installation_id:
            raise HttpError(403, NOT_ACCESSIBLE)
        return inst

    # -- the App ----------------------------------------------------------------------------

    def _access_token(self, req: Request, caller: Caller) -> Response:
        inst = self._world.installation(_int(req.params["installation_id"]))
        if inst is None:
            raise HttpError(404, "Not Found")
        req.json()
        token, expires_at = self._tokens.issue(inst.id, self._clock(), caller.app_id)
        return Response.json(201, self._shapes.access_token(token, expires_at))

    def _repo_installation(self, req: Request, caller: Caller) -> Response:
        repo = self._world.repository(req.params["owner"], req.params["repo"])
        inst = self._world.installation(repo.installation_id) if repo else None
        if inst is None:
            raise HttpError(404, "Not Found")
        return Response.json(200, self._shapes.installation(inst, self._app_of(caller)))

    def _org_installation(self, req: Request, caller: Caller) -> Response:
        inst = self._world.account(req.params["org"])
        if inst is None or inst.account_type != "Organization":
            raise HttpError(404, "Not Found")
        return Response.json(200, self._shapes.installation(inst, self._app_of(caller)))

    def _user_installation(self, req: Request, caller: Caller) -> Response:
        inst = self._world.account(req.params["username"])
        if inst is None:
            raise HttpError(404, "Not Found")
        return Response.json(200, self._shapes.installation(inst, self._app_of(caller)))

    def _app_of(self, caller: Caller) -> CreatedApp | None:
        """The App made from a manifest that is calling, or None for the simulator's own App."""
        return self._manifests.app(caller.app_id) if caller.app_id is not None else None

    def _convert_manifest(self, req: Request, caller: Caller) -> Response:
        try:
            app = self._manifests.convert(req.params["code"])
        except CodeNotFound:
            raise HttpError(404, "Not Found") from None
        except ManifestError as exc:
            return Response.json(422, {"message": "Validation Failed", "documentation_url": DOCS, "errors": exc.errors})
        return Response.json(201, self._shapes.app_from_manifest(app))

    def _deliveries(self, req: Request, caller: Caller) -> Response:
        items = self._sender.deliveries()
        wanted = req.query.get("redelivery")
        if wanted in ("true", "false"):
            items = [d for d in items if d.redelivery == (wanted == "true")]
        cursor = req.query.get("cursor", "")
        if cursor.startswith("v1_"):
            before = _int(cursor[3:])
            items = [d for d in items if d.id < before]
        per_page = _per_page(req)
        page, more = items[:per_page], len(items) > per_page
        headers = {}
        if more:
            link = self._link(req, {"per_page": str(per_page), "cursor": f"v1_{page[-1].id}"})
            headers["Link"] = f'<{link}>; rel="next"'
        body = [
            {
                "id": d.id,
                "guid": d.guid,
                "delivered_at": iso(d.delivered_at),
                "redelivery": d.redelivery,
                "duration": d.duration,
                "status": d.status,
                "status_code": d.status_code,
                "event": d.event,
                "action": d.action,
                "installation_id": d.installation_id,
                "repository_id": d.repository_id,
                "throttled_at": None,
            }
            for d in page
        ]
        return Response.json(200, body, headers)

    def _redeliver(self, req: Request, caller: Caller) -> Response:
        if not self._sender.redeliver(_int(req.params["delivery_id"])):
            raise HttpError(404, "Not Found")
        return Response.json(202, {})

    # -- runners ----------------------------------------------------------------------------

    def _jit_repo(self, req: Request, caller: Caller) -> Response:
        repo, _ = self._repo_for(req, caller)
        return self._jit(req, repo.owner, repo.name)

    def _jit_org(self, req: Request, caller: Caller) -> Response:
        inst = self._org_for(req, caller)
        return self._jit(req, inst.account, None)

    def _jit(self, req: Request, owner: str, repo: str | None) -> Response:
        body = req.json()
        name, group_id, labels = body.get("name"), body.get("runner_group_id"), body.get("labels")
        work_folder = body.get("work_folder", "_work")
        if not isinstance(name, str) or not name.strip():
            raise HttpError(422, 'Invalid request.\n\n"name" wasn\'t supplied.')
        if not isinstance(group_id, int) or isinstance(group_id, bool):
            raise HttpError(422, 'Invalid request.\n\n"runner_group_id" wasn\'t supplied.')
        if not isinstance(labels, list) or not 1 <= len(labels) <= 100 or not all(isinstance(x, str) for x in labels):
            raise HttpError(422, 'Invalid request.\n\n"labels" must be 1 to 100 strings.')
        if not isinstance(work_folder, str):
            raise HttpError(422, 'Invalid request.\n\n"work_folder" must be a string.')
        if self._dice.hit("jit_409"):
            with contextlib.suppress(SimulatorError):  # a taken name or a bad request: register_runner says so
                self._world.add_stale_runner(owner, repo, name, labels, group_id, work_folder)
        runner = self._world.register_runner(owner, repo, name, labels, group_id, work_folder)
        encoded = self._encode_jit_config(runner)
        with self._lock:
            self._jit_configs.append(encoded)
        return Response.json(
            201, {"runner": self._shapes.runner(runner, self._label_ids), "encoded_jit_config": encoded}
        )

    def _encode_jit_config(self, runner: Runner) -> str:
        html = self._shapes.html
        settings = {
            "agentId": runner.id,
            "agentName": runner.name,
            "poolId": runner.group_id,
            "poolName": runner.group_name,
            "serverUrl": self._server_url,
            "gitHubUrl": f"{html}/{runner.owner}/{runner.repo}" if runner.repo else f"{html}/{runner.owner}",
            "workFolder": runner.work_folder,
            "ephemeral": True,
            "disableUpdate": True,
        }
        credentials = {
            "scheme": "OAuth",
            "data": {
                "clientId": runner.credential,
                "authorizationUrl": f"{self._server_url}_sim/oauth2/token",
                "requireFipsCryptography": "False",
            },
        }
        return encode_jit_config(
            {
                RUNNER_FILE: settings,
                CREDENTIALS_FILE: credentials,
                RSA_PARAMS_FILE: rsa_parameters(self._runner_key()),
            }
        )

    def _runners_repo(self, req: Request, caller: Caller) -> Response:
        repo, _ = self._repo_for(req, caller)
        return self._runner_list(req, self._world.runners(repo.owner, repo.name, scope_only=True))

    def _runners_org(self, req: Request, caller: Caller) -> Response:
        inst = self._org_for(req, caller)
        return self._runner_list(req, self._world.runners(inst.account, None, scope_only=True))

    def _runner_list(self, req: Request, runners: list[Runner]) -> Response:
        name = req.query.get("name")
        if name:
            runners = [r for r in runners if r.name.lower() == name.lower()]
        page, headers = self._paginate(req, runners)
        body = {"total_count": len(runners), "runners": [self._shapes.runner(r, self._label_ids) for r in page]}
        return Response.json(200, body, headers)

    def _scoped_runner(self, req: Request, owner: str, repo: str | None) -> Runner:
        runner = self._world.runner(_int(req.params["runner_id"]))
        if runner is None or runner.scope.lower() != (f"{owner}/{repo}" if repo else owner).lower():
            raise HttpError(404, "Not Found")
        return runner

    def _runner_repo(self, req: Request, caller: Caller) -> Response:
        repo, _ = self._repo_for(req, caller)
        return Response.json(200, self._shapes.runner(self._scoped_runner(req, repo.owner, repo.name), self._label_ids))

    def _runner_org(self, req: Request, caller: Caller) -> Response:
        inst = self._org_for(req, caller)
        return Response.json(200, self._shapes.runner(self._scoped_runner(req, inst.account, None), self._label_ids))

    def _delete_repo(self, req: Request, caller: Caller) -> Response:
        repo, _ = self._repo_for(req, caller)
        self._world.delete_runner(self._scoped_runner(req, repo.owner, repo.name).id)
        return Response(204)

    def _delete_org(self, req: Request, caller: Caller) -> Response:
        inst = self._org_for(req, caller)
        self._world.delete_runner(self._scoped_runner(req, inst.account, None).id)
        return Response(204)

    def _runner_groups(self, req: Request, caller: Caller) -> Response:
        inst = self._org_for(req, caller)
        groups = self._world.runner_groups(inst.account) or []
        page, headers = self._paginate(req, groups)
        body = {"total_count": len(groups), "runner_groups": [self._shapes.runner_group(inst.account, g) for g in page]}
        return Response.json(200, body, headers)

    # -- runs and jobs ----------------------------------------------------------------------

    def _runs(self, req: Request, caller: Caller) -> Response:
        repo, inst = self._repo_for(req, caller)
        runs = self._world.runs(repo.full_name)
        status = req.query.get("status")
        if status:
            runs = [r for r in runs if status in (r.status, r.conclusion)]
        page, headers = self._paginate(req, runs)
        body = {"total_count": len(runs), "workflow_runs": [self._shapes.run(r, repo, inst) for r in page]}
        return Response.json(200, body, headers)

    def _run_jobs(self, req: Request, caller: Caller) -> Response:
        repo, _ = self._repo_for(req, caller)
        run = self._world.run(_int(req.params["run_id"]))
        if run is None or run.repository.lower() != repo.full_name.lower():
            raise HttpError(404, "Not Found")
        jobs = [self._world.job(job_id) for job_id in run.job_ids]
        page, headers = self._paginate(req, jobs)
        body = {"total_count": len(jobs), "jobs": [self._shapes.job(j) for j in page]}
        return Response.json(200, body, headers)

    def _job(self, req: Request, caller: Caller) -> Response:
        repo, _ = self._repo_for(req, caller)
        try:
            job = self._world.job(_int(req.params["job_id"]))
        except SimulatorError:
            raise HttpError(404, "Not Found") from None
        if job.repository.lower() != repo.full_name.lower():
            raise HttpError(404, "Not Found")
        return Response.json(200, self._shapes.job(job))

    def _rerun_job(self, req: Request, caller: Caller) -> Response:
        repo, _ = self._repo_for(req, caller)
        if not self.actions_write:
            raise HttpError(403, "Resource not accessible by integration")
        try:
            job = self._world.job(_int(req.params["job_id"]))
        except SimulatorError:
            raise HttpError(404, "Not Found") from None
        if job.repository.lower() != repo.full_name.lower():
            raise HttpError(404, "Not Found")
        try:
            self._world.rerun_job(job.id)
        except SimulatorError as exc:
            raise HttpError(exc.status, str(exc)) from None
        return Response.json(201, {})

    # -- rate limit -------------------------------------------------------------------------

    def _rate_limit(self, req: Request, caller: Caller) -> Response:
        faults = self._dice.faults
        limit = faults.rate_limit if caller is not ANONYMOUS else 60
        core = self._limiter.peek(caller.principal, limit, faults.rate_limit_window_s)
        reset = int(self._clock()) + 60

        def bucket(b: Bucket) -> dict[str, int]:
            return {"limit": b.limit, "remaining": b.remaining, "reset": b.reset, "used": b.used}

        body = {
            "resources": {
                "core": bucket(core),
                "search": bucket(Bucket(30, 30, reset, 0)),
                "graphql": bucket(Bucket(5000, 5000, reset, 0)),
                "actions_runner_registration": bucket(Bucket(10000, 10000, reset, 0)),
            },
            "rate": bucket(core),
        }
        return Response.json(200, body)

    # -- helpers ----------------------------------------------------------------------------

    def _paginate(self, req: Request, items: Sequence[T]) -> tuple[Sequence[T], dict[str, str]]:
        per_page = _per_page(req)
        page = max(1, _int(req.query.get("page", "1"), default=1))
        last = max(1, -(-len(items) // per_page))
        links = []
        if page < last:
            links.append(f'<{self._link(req, {"per_page": str(per_page), "page": str(page + 1)})}>; rel="next"')
            links.append(f'<{self._link(req, {"per_page": str(per_page), "page": str(last)})}>; rel="last"')
        if page > 1:
            links.append(f'<{self._link(req, {"per_page": str(per_page), "page": str(page - 1)})}>; rel="prev"')
            links.append(f'<{self._link(req, {"per_page": str(per_page), "page": "1"})}>; rel="first"')
        headers = {"Link": ", ".join(links)} if links else {}
        return items[(page - 1) * per_page : page * per_page], headers

    def _link(self, req: Request, overrides: dict[str, str]) -> str:
        query = {**req.query, **overrides}
        return f"{self._shapes.api}{req.path}?{urlencode(query)}"


def _per_page(req: Request) -> int:
    return min(100, max(1, _int(req.query.get("per_page", "30"), default=30)))


def _int(value: str, default: int | None = None) -> int:
    try:
        return int(value)
    except ValueError:
        if default is not None:
            return default
        raise HttpError(404, "Not Found") from None
