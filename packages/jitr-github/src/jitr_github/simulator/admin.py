"""The simulator's own HTTP API under ``/_sim``: the Python admin and agent API for other processes.

Not part of GitHub. Admin routes are unauthenticated (the simulator listens on loopback); agent
routes after ``connect`` require the runner's credential from its JIT config as a bearer token,
as a real runner authenticates with the credentials in its config.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

from .faults import Faults
from .http import HttpError, Request, Response, Route, match, route
from .jitconfig import runner_credential
from .shapes import error
from .state import RUNNER_VERSION, Job, Runner, SimulatorError, World
from .webhooks import Delivery

if TYPE_CHECKING:
    from .github import GitHubSimulator

PREFIX = "/_sim"
MAX_POLL_S = 30.0


def job_json(job: Job) -> dict[str, Any]:
    return dataclasses.asdict(job)


def runner_json(runner: Runner) -> dict[str, Any]:
    data = dataclasses.asdict(runner)
    del data["credential"]
    return data


def delivery_json(delivery: Delivery) -> dict[str, Any]:
    return {
        "id": delivery.id,
        "guid": delivery.guid,
        "event": delivery.event,
        "action": delivery.action,
        "installation_id": delivery.installation_id,
        "repository_id": delivery.repository_id,
        "job_id": delivery.job_id,
        "delivered_at": delivery.delivered_at,
        "redelivery": delivery.redelivery,
        "status": delivery.status,
        "status_code": delivery.status_code,
        "ok": delivery.ok,
    }


class AdminApi:
    def __init__(self, sim: GitHubSimulator, world: World) -> None:
        self._sim = sim
        self._world = world
        self._routes: list[Route] = [
            route("GET", "/info", self._info),
            route("GET", "/apps", self._apps),
            route("POST", "/installations", self._add_installation),
            route("DELETE", "/installations/{installation_id}", self._remove_installation),
            route("POST", "/repositories", self._add_repository),
            route("POST", "/runner-groups", self._add_runner_group),
            route("POST", "/jobs", self._queue_job),
            route("GET", "/jobs", self._jobs),
            route("GET", "/jobs/{job_id}", self._job),
            route("POST", "/jobs/{job_id}/cancel", self._cancel_job),
            route("POST", "/jobs/{job_id}/approve", self._approve_job),
            route("GET", "/runners", self._runners),
            route("POST", "/runners/{runner_id}/kill", self._kill_runner),
            route("GET", "/deliveries", self._deliveries),
            route("POST", "/deliveries/drain", self._drain),
            route("PUT", "/webhook", self._set_webhook),
            route("GET", "/faults", self._get_faults),
            route("PUT", "/faults", self._set_faults),
            route("POST", "/fail-next", self._fail_next),
            route("GET", "/calls", self._calls),
            route("DELETE", "/calls", self._reset_calls),
            route("POST", "/agent/connect", self._agent_connect),
            route("GET", "/agent/runners/{runner_id}/job", self._agent_poll),
            route("POST", "/agent/runners/{runner_id}/finish", self._agent_finish),
            route("POST", "/agent/runners/{runner_id}/leave", self._agent_leave),
        ]

    def handle(self, req: Request) -> Response:
        found, params, known = match(self._routes, req.method, req.path[len(PREFIX) :])
        if found is None:
            status = 405 if known else 404
            return Response.json(status, error("Not Found" if status == 404 else "Method Not Allowed", status))
        req.params = params
        try:
            return found.handler(req)
        except HttpError as exc:
            return Response.json(exc.status, error(exc.message, exc.status))
        except SimulatorError as exc:
            return Response.json(exc.status, error(str(exc), exc.status))
        except (TypeError, ValueError, KeyError) as exc:
            return Response.json(400, error(f"bad request: {exc}", 400))

    # -- admin --------------------------------------------------------------------------------

    def _info(self, req: Request) -> Response:
        sim = self._sim
        return Response.json(200, {"base_url": sim.base_url, "app_id": sim.app_id, "client_id": sim.client_id})

    def _apps(self, req: Request) -> Response:
        """Apps created from manifests, without their key and secrets."""
        apps = [
            {
                "id": app.id,
                "slug": app.slug,
                "name": app.manifest.name,
                "client_id": app.client_id,
                "owner": app.owner.login,
                "hook_url": app.manifest.hook_url,
                "permissions": dict(app.manifest.permissions),
                "events": list(app.manifest.events),
            }
            for app in self._sim.apps()
        ]
        return Response.json(200, {"apps": apps})

    def _add_installation(self, req: Request) -> Response:
        body = req.json()
        installation_id = self._sim.add_installation(
            body["owner"],
            owner_type=body.get("owner_type", "Organization"),
            repos=body.get("repos", []),
            private=body.get("private", True),
        )
        return Response.json(201, {"installation_id": installation_id})

    def _remove_installation(self, req: Request) -> Response:
        self._sim.remove_installation(int(req.params["installation_id"]))
        return Response(204)

    def _add_repository(self, req: Request) -> Response:
        body = req.json()
        return Response.json(201, {"id": self._sim.add_repository(body["repository"], body.get("private", True))})

    def _add_runner_group(self, req: Request) -> Response:
        body = req.json()
        group_id = self._sim.add_runner_group(
            body["org"], body["name"], allows_public_repositories=body.get("allows_public_repositories", False)
        )
        return Response.json(201, {"id": group_id})

    def _queue_job(self, req: Request) -> Response:
        body = req.json()
        job_id = self._sim.queue_job(
            body["repository"],
            body["labels"],
            name=body.get("name", "build"),
            run_id=body.get("run_id"),
            workflow_name=body.get("workflow_name", "CI"),
            waiting=bool(body.get("waiting", False)),
        )
        return Response.json(201, {"job_id": job_id})

    def _jobs(self, req: Request) -> Response:
        return Response.json(200, {"jobs": [job_json(j) for j in self._sim.jobs(req.query.get("repository"))]})

    def _job(self, req: Request) -> Response:
        return Response.json(200, job_json(self._sim.job(int(req.params["job_id"]))))

    def _cancel_job(self, req: Request) -> Response:
        return Response.json(200, job_json(self._sim.cancel_job(int(req.params["job_id"]))))

    def _approve_job(self, req: Request) -> Response:
        return Response.json(200, job_json(self._sim.approve_job(int(req.params["job_id"]))))

    def _runners(self, req: Request) -> Response:
        runners = self._sim.runners(req.query.get("owner"), req.query.get("repo"))
        return Response.json(200, {"runners": [runner_json(r) for r in runners]})

    def _kill_runner(self, req: Request) -> Response:
        self._sim.kill_runner(int(req.params["runner_id"]))
        return Response(204)

    def _deliveries(self, req: Request) -> Response:
        return Response.json(200, {"deliveries": [delivery_json(d) for d in self._sim.deliveries()]})

    def _drain(self, req: Request) -> Response:
        timeout = float(req.json().get("timeout", 10.0))
        return Response.json(200, {"drained": self._sim.drain_webhooks(timeout)})

    def _set_webhook(self, req: Request) -> Response:
        body = req.json()
        self._sim.set_webhook(body.get("url"), body.get("secret"))
        return Response(204)

    def _get_faults(self, req: Request) -> Response:
        return Response.json(200, self._sim.faults.to_dict())

    def _set_faults(self, req: Request) -> Response:
        self._sim.faults = Faults.from_dict(req.json())
        return Response.json(200, self._sim.faults.to_dict())

    def _fail_next(self, req: Request) -> Response:
        body = req.json()
        self._sim.fail_next(
            int(body.get("count", 1)),
            status=int(body.get("status", 503)),
            path_contains=body.get("path_contains"),
            retry_after=body.get("retry_after"),
        )
        return Response(204)

    def _calls(self, req: Request) -> Response:
        return Response.json(200, self._sim.call_counts())

    def _reset_calls(self, req: Request) -> Response:
        self._sim.reset_call_counts()
        return Response(204)

    # -- the runner agent ---------------------------------------------------------------------

    def _agent_connect(self, req: Request) -> Response:
        body = req.json()
        credential = runner_credential(body["jitconfig"])
        runner = self._world.agent_connect(credential, body.get("version") or RUNNER_VERSION, heartbeat=True)
        return Response.json(201, {"runner_id": runner.id, "runner_name": runner.name})

    def _credential(self, req: Request) -> str:
        scheme, _, credential = (req.header("Authorization") or "").partition(" ")
        if scheme.lower() != "bearer" or not credential:
            raise HttpError(401, "the agent API needs the runner credential as a bearer token")
        return credential.strip()

    def _agent_poll(self, req: Request) -> Response:
        wait = min(MAX_POLL_S, max(0.0, float(req.query.get("wait", "0"))))
        job = self._world.agent_poll(int(req.params["runner_id"]), self._credential(req), wait)
        return Response(204) if job is None else Response.json(200, job_json(job))

    def _agent_finish(self, req: Request) -> Response:
        conclusion = req.json().get("conclusion", "success")
        job = self._world.agent_finish(int(req.params["runner_id"]), self._credential(req), conclusion)
        return Response.json(200, job_json(job))

    def _agent_leave(self, req: Request) -> Response:
        self._world.agent_leave(int(req.params["runner_id"]), self._credential(req))
        return Response(204)
