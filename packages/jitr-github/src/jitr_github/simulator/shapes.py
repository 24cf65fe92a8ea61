"""JSON shapes of the simulated GitHub: REST resources and webhook payloads.

Every object has the keys GitHub's OpenAPI description requires (REST) and the keys the
octokit webhook schemas require and allow (webhooks); the conformance tests validate both.
"""

from __future__ import annotations

import base64
import time
from typing import TYPE_CHECKING, Any

from .state import Installation, Job, Repository, Run, Runner, RunnerGroup

if TYPE_CHECKING:
    from .manifests import CreatedApp

DOCS = "https://docs.github.com/rest"
RATE_LIMIT_DOCS = "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api"
APP_SLUG = "jitr-simulator"
ACTOR = ("monalisa", 2)
PERMISSIONS = {
    "actions": "read",
    "administration": "write",
    "metadata": "read",
    "organization_self_hosted_runners": "write",
}
EVENTS = ["workflow_job"]
_READ_ONLY = frozenset({"self-hosted", "linux", "windows", "macos", "x64", "arm", "arm64"})


def iso(ts: float) -> str:
    """An epoch time as GitHub writes it."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def node_id(kind: str, ident: int) -> str:
    return base64.b64encode(f"0{len(kind)}:{kind}{ident}".encode()).decode()


def error(message: str, status: int, documentation_url: str = DOCS) -> dict[str, Any]:
    return {"message": message, "documentation_url": documentation_url, "status": str(status)}


class Shapes:
    """Builds the JSON objects for one simulator (its API and web base URLs, its App)."""

    def __init__(self, api_url: str, html_url: str, app_id: int, client_id: str) -> None:
        self.api = api_url.rstrip("/")
        self.html = html_url.rstrip("/")
        self.app_id = app_id
        self.client_id = client_id

    # -- accounts ---------------------------------------------------------------------------

    def user(self, login: str, ident: int, kind: str = "User") -> dict[str, Any]:
        """A simple user; organisations look the same in REST ``account`` and ``owner`` fields."""
        api = f"{self.api}/users/{login}"
        return {
            "login": login,
            "id": ident,
            "node_id": node_id(kind, ident),
            "avatar_url": f"{self.html}/avatars/u/{ident}",
            "gravatar_id": "",
            "url": f"{self.api}/orgs/{login}" if kind == "Organization" else api,
            "html_url": f"{self.html}/{login}",
            "followers_url": f"{api}/followers",
            "following_url": f"{api}/following{{/other_user}}",
            "gists_url": f"{api}/gists{{/gist_id}}",
            "starred_url": f"{api}/starred{{/owner}}{{/repo}}",
            "subscriptions_url": f"{api}/subscriptions",
            "organizations_url": f"{api}/orgs",
            "repos_url": f"{api}/repos",
            "events_url": f"{api}/events{{/privacy}}",
            "received_events_url": f"{api}/received_events",
            "type": kind,
            "site_admin": False,
        }

    def actor(self) -> dict[str, Any]:
        return self.user(*ACTOR)

    def owner(self, inst: Installation) -> dict[str, Any]:
        return self.user(inst.account, inst.account_id, inst.account_type)

    def organization(self, inst: Installation) -> dict[str, Any]:
        api = f"{self.api}/orgs/{inst.account}"
        return {
            "login": inst.account,
            "id": inst.account_id,
            "node_id": node_id("Organization", inst.account_id),
            "url": api,
            "repos_url": f"{api}/repos",
            "events_url": f"{api}/events",
            "hooks_url": f"{api}/hooks",
            "issues_url": f"{api}/issues",
            "members_url": f"{api}/members{{/member}}",
            "public_members_url": f"{api}/public_members{{/member}}",
            "avatar_url": f"{self.html}/avatars/u/{inst.account_id}",
            "description": None,
        }

    def repository(self, repo: Repository, inst: Installation) -> dict[str, Any]:
        """A repository, valid both as REST ``minimal-repository`` and as a webhook ``repository``."""
        api = f"{self.api}/repos/{repo.full_name}"
        html = f"{self.html}/{repo.full_name}"
        created = iso(inst.created_at)
        return {
            "id": repo.id,
            "node_id": node_id("Repository", repo.id),
            "name": repo.name,
            "full_name": repo.full_name,
            "private": repo.private,
            "owner": self.owner(inst),
            "html_url": html,
            "description": None,
            "fork": False,
            "url": api,
            "forks_url": f"{api}/forks",
            "keys_url": f"{api}/keys{{/key_id}}",
            "collaborators_url": f"{api}/collaborators{{/collaborator}}",
            "teams_url": f"{api}/teams",
            "hooks_url": f"{api}/hooks",
            "issue_events_url": f"{api}/issues/events{{/number}}",
            "events_url": f"{api}/events",
            "assignees_url": f"{api}/assignees{{/user}}",
            "branches_url": f"{api}/branches{{/branch}}",
            "tags_url": f"{api}/tags",
            "blobs_url": f"{api}/git/blobs{{/sha}}",
            "git_tags_url": f"{api}/git/tags{{/sha}}",
            "git_refs_url": f"{api}/git/refs{{/sha}}",
            "trees_url": f"{api}/git/trees{{/sha}}",
            "statuses_url": f"{api}/statuses/{{sha}}",
            "languages_url": f"{api}/languages",
            "stargazers_url": f"{api}/stargazers",
            "contributors_url": f"{api}/contributors",
            "subscribers_url": f"{api}/subscribers",
            "subscription_url": f"{api}/subscription",
            "commits_url": f"{api}/commits{{/sha}}",
            "git_commits_url": f"{api}/git/commits{{/sha}}",
            "comments_url": f"{api}/comments{{/number}}",
            "issue_comment_url": f"{api}/issues/comments{{/number}}",
            "contents_url": f"{api}/contents/{{+path}}",
            "compare_url": f"{api}/compare/{{base}}...{{head}}",
            "merges_url": f"{api}/merges",
            "archive_url": f"{api}/{{archive_format}}{{/ref}}",
            "downloads_url": f"{api}/downloads",
            "issues_url": f"{api}/issues{{/number}}",
            "pulls_url": f"{api}/pulls{{/number}}",
            "milestones_url": f"{api}/milestones{{/number}}",
            "notifications_url": f"{api}/notifications{{?since,all,participating}}",
            "labels_url": f"{api}/labels{{/name}}",
            "releases_url": f"{api}/releases{{/id}}",
            "deployments_url": f"{api}/deployments",
            "created_at": created,
            "updated_at": created,
            "pushed_at": created,
            "git_url": f"git://{self.html.split('://', 1)[-1]}/{repo.full_name}.git",
            "ssh_url": f"git@{self.html.split('://', 1)[-1]}:{repo.full_name}.git",
            "clone_url": f"{html}.git",
            "svn_url": html,
            "homepage": None,
            "size": 0,
            "stargazers_count": 0,
            "watchers_count": 0,
            "language": None,
            "has_issues": True,
            "has_projects": True,
            "has_downloads": True,
            "has_wiki": True,
            "has_pages": False,
            "forks_count": 0,
            "mirror_url": None,
            "archived": False,
            "disabled": False,
            "open_issues_count": 0,
            "license": None,
            "forks": 0,
            "open_issues": 0,
            "watchers": 0,
            "default_branch": "main",
            "is_template": False,
            "web_commit_signoff_required": False,
            "topics": [],
            "visibility": "private" if repo.private else "public",
            "custom_properties": {},
        }

    # -- the App ----------------------------------------------------------------------------

    def installation(self, inst: Installation, app: CreatedApp | None = None) -> dict[str, Any]:
        """An installation as seen by the simulator's App, or by ``app`` (one made from a manifest)."""
        created = iso(inst.created_at)
        settings = "organizations/" + inst.account if inst.account_type == "Organization" else "settings"
        answer = {
            "id": inst.id,
            "account": self.owner(inst),
            "repository_selection": "all",
            "access_tokens_url": f"{self.api}/app/installations/{inst.id}/access_tokens",
            "repositories_url": f"{self.api}/installation/repositories",
            "html_url": f"{self.html}/{settings}/settings/installations/{inst.id}",
            "app_id": self.app_id,
            "client_id": self.client_id,
            "target_id": inst.account_id,
            "target_type": inst.account_type,
            "permissions": dict(PERMISSIONS),
            "events": list(EVENTS),
            "created_at": created,
            "updated_at": created,
            "single_file_name": None,
            "has_multiple_single_files": False,
            "single_file_paths": [],
            "app_slug": APP_SLUG,
            "suspended_by": None,
            "suspended_at": None,
        }
        if app is not None:
            answer.update(
                app_id=app.id,
                client_id=app.client_id,
                app_slug=app.slug,
                permissions=dict(app.manifest.permissions),
                events=list(app.manifest.events),
            )
        return answer

    def app_from_manifest(self, app: CreatedApp) -> dict[str, Any]:
        """The answer to a manifest conversion: the App (``integration``) with its secrets, shown once."""
        manifest = app.manifest
        created = iso(app.created_at)
        owner = self.user(app.owner.login, app.owner.id, app.owner.type)
        return {
            "id": app.id,
            "slug": app.slug,
            "node_id": node_id("Integration", app.id),
            "client_id": app.client_id,
            "owner": owner,
            "name": manifest.name,
            "description": manifest.description,
            "external_url": manifest.url,
            "html_url": f"{self.html}/apps/{app.slug}",
            "created_at": created,
            "updated_at": created,
            "permissions": dict(manifest.permissions),
            "events": list(manifest.events),
            "client_secret": app.client_secret,
            "webhook_secret": app.webhook_secret,
            "pem": app.private_key_pem,
        }

    @staticmethod
    def access_token(token: str, expires_at: float) -> dict[str, Any]:
        return {
            "token": token,
            "expires_at": iso(expires_at),
            "permissions": dict(PERMISSIONS),
            "repository_selection": "all",
        }

    # -- runners ----------------------------------------------------------------------------

    @staticmethod
    def runner(runner: Runner, label_ids: dict[str, int]) -> dict[str, Any]:
        labels = []
        for label in runner.labels:
            ident = label_ids.setdefault(label.lower(), len(label_ids) + 1)
            kind = "read-only" if label.lower() in _READ_ONLY else "custom"
            labels.append({"id": ident, "name": label, "type": kind})
        return {
            "id": runner.id,
            "runner_group_id": runner.group_id,
            "name": runner.name,
            "os": runner.os,
            "status": runner.status,
            "busy": runner.busy,
            "ephemeral": True,
            "version": runner.version,
            "labels": labels,
        }

    def runner_group(self, org: str, group: RunnerGroup) -> dict[str, Any]:
        base = f"{self.api}/orgs/{org}/actions/runner-groups/{group.id}"
        return {
            "id": group.id,
            "name": group.name,
            "visibility": "all",
            "default": group.default,
            "runners_url": f"{base}/runners",
            "inherited": False,
            "allows_public_repositories": group.allows_public_repositories,
            "restricted_to_workflows": False,
            "selected_workflows": [],
            "workflow_restrictions_read_only": False,
        }

    # -- runs and jobs ----------------------------------------------------------------------

    def job(self, job: Job) -> dict[str, Any]:
        """A workflow job: the REST ``job`` and the webhook ``workflow_job`` share these keys."""
        api = f"{self.api}/repos/{job.repository}/actions"
        return {
            "id": job.id,
            "run_id": job.run_id,
            "workflow_name": job.workflow_name,
            "head_branch": job.head_branch,
            "run_url": f"{api}/runs/{job.run_id}",
            "run_attempt": job.run_attempt,
            "node_id": node_id("WorkflowJob", job.id),
            "head_sha": job.head_sha,
            "url": f"{api}/jobs/{job.id}",
            "html_url": f"{self.html}/{job.repository}/actions/runs/{job.run_id}/job/{job.id}",
            "status": job.status,
            "conclusion": job.conclusion,
            "created_at": iso(job.created_at),
            "started_at": iso(job.started_at),
            "completed_at": iso(job.completed_at) if job.completed_at is not None else None,
            "name": job.name,
            "steps": self._steps(job),
            "check_run_url": f"{self.api}/repos/{job.repository}/check-runs/{job.id}",
            "labels": list(job.labels),
            "runner_id": job.runner_id,
            "runner_name": job.runner_name,
            "runner_group_id": job.runner_group_id,
            "runner_group_name": job.runner_group_name,
        }

    @staticmethod
    def _steps(job: Job) -> list[dict[str, Any]]:
        if job.status == "queued" or job.runner_id is None:
            return []
        started = iso(job.started_at)
        if job.status == "in_progress":
            return [
                {
                    "name": "Set up job",
                    "status": "in_progress",
                    "conclusion": None,
                    "number": 1,
                    "started_at": started,
                    "completed_at": None,
                }
            ]
        done = iso(job.completed_at or job.started_at)
        return [
            {"name": name, "status": "completed", "conclusion": job.conclusion, "number": number, **times}
            for number, name, times in (
                (1, "Set up job", {"started_at": started, "completed_at": started}),
                (2, "Run job", {"started_at": started, "completed_at": done}),
                (3, "Complete job", {"started_at": done, "completed_at": done}),
            )
        ]

    def run(self, run: Run, repo: Repository, inst: Installation) -> dict[str, Any]:
        api = f"{self.api}/repos/{repo.full_name}/actions/runs/{run.id}"
        repository = self.repository(repo, inst)
        actor = self.actor()
        return {
            "id": run.id,
            "name": run.workflow_name,
            "node_id": node_id("WorkflowRun", run.id),
            "check_suite_id": run.id,
            "check_suite_node_id": node_id("CheckSuite", run.id),
            "head_branch": run.head_branch,
            "head_sha": run.head_sha,
            "path": ".github/workflows/ci.yml",
            "run_number": run.run_number,
            "run_attempt": run.run_attempt,
            "referenced_workflows": [],
            "event": "push",
            "display_title": f"{run.workflow_name} #{run.run_number}",
            "status": run.status,
            "conclusion": run.conclusion,
            "workflow_id": 1,
            "url": api,
            "html_url": f"{self.html}/{repo.full_name}/actions/runs/{run.id}",
            "pull_requests": [],
            "created_at": iso(run.created_at),
            "updated_at": iso(run.updated_at),
            "actor": actor,
            "triggering_actor": actor,
            "run_started_at": iso(run.created_at),
            "jobs_url": f"{api}/jobs",
            "logs_url": f"{api}/logs",
            "check_suite_url": f"{self.api}/repos/{repo.full_name}/check-suites/{run.id}",
            "artifacts_url": f"{api}/artifacts",
            "cancel_url": f"{api}/cancel",
            "rerun_url": f"{api}/rerun",
            "previous_attempt_url": None,
            "workflow_url": f"{self.api}/repos/{repo.full_name}/actions/workflows/1",
            "head_commit": {
                "id": run.head_sha,
                "tree_id": run.head_sha[::-1],
                "message": f"{run.workflow_name} run {run.run_number}",
                "timestamp": iso(run.created_at),
                "author": {"name": ACTOR[0], "email": f"{ACTOR[0]}@users.noreply.github.com"},
                "committer": {"name": ACTOR[0], "email": f"{ACTOR[0]}@users.noreply.github.com"},
            },
            "repository": repository,
            "head_repository": repository,
        }

    # -- webhooks ---------------------------------------------------------------------------

    def workflow_job_event(self, action: str, job: Job, repo: Repository, inst: Installation) -> dict[str, Any]:
        """A ``workflow_job`` delivery of the App, with ``installation`` as App deliveries carry it."""
        payload: dict[str, Any] = {
            "action": action,
            "workflow_job": self.job(job),
            "repository": self.repository(repo, inst),
            "sender": self.actor(),
            "installation": {"id": inst.id, "node_id": node_id("Installation", inst.id)},
        }
        if inst.account_type == "Organization":
            payload["organization"] = self.organization(inst)
        return payload
