"""The GitHub simulator: one object that is GitHub for tests, the demo and the benchmarks."""

from __future__ import annotations

import secrets
import threading
import time
import zlib
from collections.abc import Callable, Sequence
from types import TracebackType

from cryptography.hazmat.primitives.asymmetric import rsa

from .admin import PREFIX, AdminApi
from .auth import AppIdentities, AppIdentity, TokenStore, generate_key
from .faults import Faults
from .http import Request, Response, Server
from .jitconfig import runner_credential
from .manifests import CreatedApp, ManifestFlow, Owner
from .rest import RestApi
from .shapes import ACTOR, APP_SLUG, Shapes, error
from .state import RUNNER_VERSION, Installation, Job, Repository, Runner, SimulatorError, World
from .web import WebPages
from .webhooks import Delivery, WebhookSender

HOOK_ID = 4242001


class GitHubSimulator:
    """A GitHub App's view of GitHub over real HTTP, with an admin API to drive it.

    It generates the App's key pair, verifies the App's JWTs, issues installation tokens,
    registers JIT runners, lists runs and jobs, assigns queued jobs to connected runner agents
    as GitHub does, and sends signed ``workflow_job`` webhooks. It registers further Apps from
    manifests (``/settings/apps/new``, then ``/app-manifests/{code}/conversions``); those Apps
    share the simulator's installations. Everything is thread-safe.
    ``clock`` drives timestamps, token expiry, JWT checks and rate-limit windows (inject one to
    test expiry without waiting); ``api_prefix`` serves the API under a path such as
    ``/api/v3`` as GitHub Enterprise Server does.
    """

    def __init__(
        self,
        *,
        faults: Faults | None = None,
        clock: Callable[[], float] = time.time,
        api_prefix: str = "",
        host: str = "127.0.0.1",
        port: int = 0,
        webhook_url: str | None = None,
        webhook_secret: str | None = None,
        webhook_workers: int = 8,
        heartbeat_timeout_s: float = 30.0,
        app_id: int = 424242,
    ) -> None:
        self.app_id = app_id
        self.client_id = "Iv23li" + secrets.token_hex(7)
        self._app = AppIdentity(app_id, self.client_id, generate_key())
        self._identities = AppIdentities(self._app)
        self.private_key_pem: str = self._app.private_key_pem
        self.clock = clock
        self._manifests = ManifestFlow(clock, self._identities, lambda: {APP_SLUG})
        self._web = WebPages(self._manifests, self._owner_of)
        self._prefix = "/" + api_prefix.strip("/") if api_prefix.strip("/") else ""
        self._host, self._port = host, port
        self._heartbeat_timeout_s = heartbeat_timeout_s
        self._world = World(clock, self._on_job_event)
        self._tokens = TokenStore(app_id)
        self._sender = WebhookSender(clock, app_id, HOOK_ID, workers=webhook_workers)
        self._sender.configure(webhook_url, webhook_secret)
        self._webhook_secret = webhook_secret
        self._faults = faults or Faults()
        self._sender.faults = self._faults
        self._runner_key_lock = threading.Lock()
        self._runner_key_value: rsa.RSAPrivateKey | None = None
        self._server: Server | None = None
        self._rest: RestApi | None = None
        self._shapes: Shapes | None = None
        self._admin = AdminApi(self, self._world)
        self._stopped = threading.Event()
        self._threads: list[threading.Thread] = []
        self.root_url = ""
        self.base_url = ""

    # -- lifecycle --------------------------------------------------------------------------

    def start(self) -> str:
        """Listen on the host (an ephemeral port by default) and return the API base URL."""
        if self._server is not None:
            return self.base_url
        self._server = Server(self._host, self._port, self._serve)
        host = "127.0.0.1" if self._host in ("", "0.0.0.0") else self._host
        self.root_url = f"http://{host}:{int(self._server.server_address[1])}"
        self.base_url = self.root_url + self._prefix
        self._shapes = Shapes(self.base_url, self.root_url, self.app_id, self.client_id)
        self._rest = RestApi(
            world=self._world,
            apps=self._identities,
            manifests=self._manifests,
            tokens=self._tokens,
            sender=self._sender,
            shapes=self._shapes,
            clock=self.clock,
            server_url=self.root_url + "/",
            runner_key=self._runner_key,
        )
        self._rest.faults = self._faults
        self._sender.start()
        self._threads = [self._server.serve_in_thread()]
        housekeeping = threading.Thread(target=self._housekeeping, name="github-simulator-heartbeats", daemon=True)
        housekeeping.start()
        self._threads.append(housekeeping)
        return self.base_url

    def stop(self) -> None:
        """Stop serving and sending; pending webhook deliveries are abandoned."""
        if self._server is None:
            return
        self._stopped.set()
        self._world.wake_all()
        self._server.shutdown()
        self._server.server_close()
        self._sender.stop()
        for thread in self._threads:
            thread.join(timeout=5)
        self._server = None

    def __enter__(self) -> GitHubSimulator:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def _serve(self, req: Request) -> Response:
        if req.path == PREFIX or req.path.startswith(PREFIX + "/"):
            return self._admin.handle(req)
        page = self._web.handle(req)
        if page is not None:
            return page
        assert self._rest is not None
        if self._prefix:
            if not req.path.startswith(self._prefix + "/"):
                return Response.json(404, error("Not Found", 404))
            req.path = req.path[len(self._prefix) :]
        return self._rest.handle(req)

    def _housekeeping(self) -> None:
        while not self._stopped.wait(0.5):
            self._world.expire_heartbeats(self._heartbeat_timeout_s)

    def _owner_of(self, org: str | None) -> Owner:
        """Who owns an App registered on ``org``'s page, or on the signed-in user's (``monalisa``)."""
        if org is None:
            return Owner(ACTOR[0], ACTOR[1], "User")
        inst = self._world.account(org)
        if inst is not None and inst.account_type == "Organization":
            return Owner(inst.account, inst.account_id, "Organization")
        return Owner(org, 70_000_000 + zlib.crc32(org.lower().encode()) % 10_000_000, "Organization")

    def _runner_key(self) -> rsa.RSAPrivateKey:
        with self._runner_key_lock:
            if self._runner_key_value is None:
                self._runner_key_value = generate_key()
            return self._runner_key_value

    def _on_job_event(self, action: str, job: Job, repo: Repository, inst: Installation) -> None:
        def build() -> dict[str, object]:
            assert self._shapes is not None
            return self._shapes.workflow_job_event(action, job, repo, inst)

        self._sender.send("workflow_job", action, build, installation_id=inst.id, repository_id=repo.id, job_id=job.id)

    # -- settings ---------------------------------------------------------------------------

    @property
    def faults(self) -> Faults:
        return self._faults

    @faults.setter
    def faults(self, faults: Faults) -> None:
        self._faults = faults
        self._sender.faults = faults
        if self._rest is not None:
            self._rest.faults = faults

    def set_actions_write(self, granted: bool) -> None:
        """Grant or withdraw the App's ``actions: write`` permission: without it a re-run answers 403."""
        self._require_started().actions_write = granted

    def set_webhook(self, url: str | None, secret: str | None) -> None:
        """Where the App's webhook deliveries go and the secret that signs them (None: no delivery)."""
        self._webhook_secret = secret
        self._sender.configure(url, secret)

    def fail_next(
        self, count: int = 1, status: int = 503, *, path_contains: str | None = None, retry_after: int | None = None
    ) -> None:
        """Answer the next ``count`` REST calls (whose path contains ``path_contains``) with ``status``."""
        self._require_started().fail_next(count, status, path_contains, retry_after)

    # -- installations and jobs -------------------------------------------------------------

    def add_installation(
        self, owner: str, owner_type: str = "Organization", repos: Sequence[str] = (), private: bool = True
    ) -> int:
        """Install the App on an organisation or user with these repositories; the installation id."""
        inst, _ = self._world.add_installation(owner, owner_type, list(repos), private)
        return inst.id

    def remove_installation(self, installation_id: int) -> None:
        """Uninstall the App from an account: its tokens are revoked, its repositories out of reach."""
        self._world.remove_installation(installation_id)
        self._tokens.revoke(installation_id)

    def add_repository(self, repository: str, private: bool = True) -> int:
        """Add ``owner/name`` to the owner's installation; the repository id."""
        owner, _, name = repository.partition("/")
        return self._world.add_repository(owner, name, private).id

    def add_runner_group(self, org: str, name: str, *, allows_public_repositories: bool = False) -> int:
        """A runner group in an organisation (each has ``Default``, id 1, closed to public repos)."""
        return self._world.add_runner_group(org, name, allows_public_repositories).id

    def queue_job(
        self,
        repository: str,
        labels: Sequence[str],
        *,
        name: str = "build",
        run_id: int | None = None,
        workflow_name: str = "CI",
        head_branch: str = "main",
        waiting: bool = False,
    ) -> int:
        """Queue a job in a new workflow run (or in ``run_id``) and send its ``queued`` webhook; the job id.

        ``waiting``: the job waits (an environment's approval, webhook ``waiting``) until :meth:`approve_job`.
        """
        return self._world.queue_job(repository, labels, name, run_id, workflow_name, head_branch, waiting).id

    def approve_job(self, job_id: int) -> Job:
        """Approve a waiting job: it becomes ``queued`` (with webhook)."""
        return self._world.approve_job(job_id)

    def rerun_job(self, job_id: int) -> Job:
        """Re-run a completed job as GitHub's ``POST .../jobs/{id}/rerun`` does: the new job, in attempt + 1."""
        return self._world.rerun_job(job_id)

    def cancel_job(self, job_id: int) -> Job:
        """Cancel a queued or running job (``completed``/``cancelled``, with webhook)."""
        return self._world.cancel_job(job_id)

    def job(self, job_id: int) -> Job:
        return self._world.job(job_id)

    def jobs(self, repository: str | None = None) -> list[Job]:
        return self._world.jobs(repository)

    def runners(self, owner: str | None = None, repo: str | None = None) -> list[Runner]:
        """Registered runners (of an owner, of one repository), oldest first."""
        return self._world.runners(owner, repo)

    def kill_runner(self, runner_id: int) -> None:
        """The runner's machine disappears (spot reclaim): offline at once, its running job fails."""
        self._world.kill_runner(runner_id)

    # -- the runner agent -------------------------------------------------------------------

    def agent_connect(self, encoded_jit_config: str, *, version: str = RUNNER_VERSION) -> Runner:
        """A runner starts with this JIT config: online, idle or busy at once; unknown or used configs are refused."""
        try:
            credential = runner_credential(encoded_jit_config)
        except ValueError as exc:
            raise SimulatorError(str(exc)) from None
        return self._world.agent_connect(credential, version, heartbeat=False)

    def agent_poll(self, runner_id: int, timeout: float = 0.0) -> Job | None:
        """The job assigned to the runner, waiting up to ``timeout`` seconds for one."""
        return self._world.agent_poll(runner_id, None, timeout)

    def agent_finish(self, runner_id: int, conclusion: str = "success") -> Job:
        """The runner finished its job (``completed`` webhook with the conclusion)."""
        return self._world.agent_finish(runner_id, None, conclusion)

    def agent_leave(self, runner_id: int) -> None:
        """The runner exits: after its job it deregisters (ephemeral); without one it just goes offline."""
        self._world.agent_leave(runner_id, None)

    # -- Apps made from manifests ----------------------------------------------------------

    def apps(self) -> list[CreatedApp]:
        """Apps registered from manifests and converted, oldest first (their keys and secrets included)."""
        return self._manifests.apps()

    # -- observations -----------------------------------------------------------------------

    def deliveries(self) -> list[Delivery]:
        """Webhook delivery attempts, newest first."""
        return self._sender.deliveries()

    def drain_webhooks(self, timeout: float = 10.0) -> bool:
        """Wait until every webhook sent so far was attempted; False on timeout."""
        return self._sender.drain(timeout)

    def call_counts(self) -> dict[str, int]:
        """REST calls received per endpoint, keyed ``"METHOD /path/{template}"``."""
        return self._require_started().call_counts()

    def reset_call_counts(self) -> None:
        self._require_started().reset_call_counts()

    def secrets_issued(self) -> list[str]:
        """Every secret the simulator handed out or received, for tests proving none leaks."""
        found = [self.private_key_pem, *self._tokens.issued(), *self._manifests.secrets()]
        if self._rest is not None:
            found += self._rest.secrets_seen()
        if self._webhook_secret:
            found.append(self._webhook_secret)
        return found

    def _require_started(self) -> RestApi:
        if self._rest is None:
            raise RuntimeError("the simulator is not started; call start() first")
        return self._rest
