"""JIT runner registration, name conflicts, and runner listing and removal, at both scopes."""

from __future__ import annotations

import inspect

import pytest
from github_support import make_client
from jitr_core.errors import GitHubConflictError, GitHubNotFoundError
from jitr_core.github import GitHubAPI
from jitr_core.model import Scope
from jitr_core.secret import Secret
from jitr_github import GitHubClient
from jitr_github.simulator import GitHubSimulator

JITCONFIG_REPO = "POST /repos/{owner}/{repo}/actions/runners/generate-jitconfig"
DELETE_REPO = "DELETE /repos/{owner}/{repo}/actions/runners/{runner_id}"
GROUPS = "GET /orgs/{org}/actions/runner-groups"


def test_the_client_has_every_method_of_the_protocol_core_depends_on(github_client: GitHubClient) -> None:
    api: GitHubAPI = github_client  # and mypy checks the assignment
    for name, member in vars(GitHubAPI).items():
        if callable(member) and not name.startswith("_"):
            expected = list(inspect.signature(member).parameters)[1:]
            assert list(inspect.signature(getattr(api, name)).parameters) == expected, name


def test_a_repository_jit_config_registers_a_runner_that_can_run(github_simulator: GitHubSimulator) -> None:
    sim = github_simulator
    sim.add_installation("octo-org", repos=["app"])
    client = make_client(sim)
    scope = Scope(None, "octo-org", "app")
    config = client.generate_jit_config(scope, "jitr-linux-7-1", ["self-hosted", "linux", "x64"], "ignored", "_w")
    assert isinstance(config.encoded, Secret)
    assert config.encoded.reveal() not in repr(config)
    assert config.runner_name == "jitr-linux-7-1"
    (listed,) = client.list_runners(scope)
    assert (listed.id, listed.online, listed.busy) == (config.runner_id, False, False)
    assert {label.lower() for label in listed.labels} == {"self-hosted", "linux", "x64"}
    job = sim.queue_job("octo-org/app", ["self-hosted", "linux"])
    runner = sim.agent_connect(config.encoded.reveal())
    assert sim.job(job).runner_id == runner.id == config.runner_id
    fetched = client.get_runner(scope, config.runner_id)
    assert fetched is not None
    assert (fetched.online, fetched.busy) == (True, True)


def test_organisation_runners_join_the_runner_group_named(github_simulator: GitHubSimulator) -> None:
    sim = github_simulator
    sim.add_installation("octo-org", repos=["app"])
    gpu = sim.add_runner_group("octo-org", "GPU")
    client = make_client(sim)
    scope = Scope(None, "octo-org")
    client.generate_jit_config(scope, "g1", ["self-hosted", "gpu"], "gpu")
    client.generate_jit_config(scope, "d1", ["self-hosted"], "Default")
    client.generate_jit_config(scope, "d2", ["self-hosted"], "")
    groups = {r.name: r.group_id for r in sim.runners("octo-org")}
    assert groups == {"g1": gpu, "d1": 1, "d2": 1}
    assert sim.call_counts()[GROUPS] == 1, "runner groups are cached"
    later = sim.add_runner_group("octo-org", "arm")
    client.generate_jit_config(scope, "a1", ["self-hosted"], "arm")
    assert {r.name: r.group_id for r in sim.runners("octo-org")}["a1"] == later
    with pytest.raises(GitHubNotFoundError, match="'missing' does not exist"):
        client.generate_jit_config(scope, "m1", ["self-hosted"], "missing")


def test_a_name_held_by_a_stale_offline_runner_is_freed_and_registered_again(github_simulator: GitHubSimulator) -> None:
    sim = github_simulator
    sim.add_installation("octo-org", repos=["app"])
    client = make_client(sim)
    scope = Scope(None, "octo-org", "app")
    crashed = client.generate_jit_config(scope, "jitr-linux-9-1", ["self-hosted"], "")
    sim.agent_leave(sim.agent_connect(crashed.encoded.reveal()).id)  # came up, went away, still registered
    sim.reset_call_counts()
    again = client.generate_jit_config(scope, "jitr-linux-9-1", ["self-hosted"], "")
    assert again.runner_id != crashed.runner_id
    assert sim.call_counts()[JITCONFIG_REPO] == 2
    assert sim.call_counts()[DELETE_REPO] == 1
    assert [r.id for r in sim.runners()] == [again.runner_id]


@pytest.mark.parametrize("busy", [True, False])
def test_a_name_held_by_a_live_runner_is_a_conflict(github_simulator: GitHubSimulator, busy: bool) -> None:
    sim = github_simulator
    sim.add_installation("octo-org", repos=["app"])
    client = make_client(sim)
    scope = Scope(None, "octo-org", "app")
    live = client.generate_jit_config(scope, "jitr-linux-3-1", ["self-hosted"], "")
    if busy:
        sim.queue_job("octo-org/app", ["self-hosted"])
    sim.agent_connect(live.encoded.reveal())
    sim.reset_call_counts()
    with pytest.raises(GitHubConflictError, match="busy" if busy else "online"):
        client.generate_jit_config(scope, "jitr-linux-3-1", ["self-hosted"], "")
    assert DELETE_REPO not in sim.call_counts()
    assert sim.call_counts()[JITCONFIG_REPO] == 1, "a conflict is not retried blindly"


def test_listing_follows_pages_past_one_hundred_runners(github_simulator: GitHubSimulator) -> None:
    sim = github_simulator
    sim.add_installation("octo-org", repos=["app"])
    client = make_client(sim)
    scope = Scope(None, "octo-org")
    names = [f"runner-{i:03d}" for i in range(150)]
    for name in names:
        client.generate_jit_config(scope, name, ["self-hosted"], "")
    sim.reset_call_counts()
    assert [r.name for r in client.list_runners(scope)] == names
    assert sim.call_counts()["GET /orgs/{org}/actions/runners"] == 2
    found = client.find_runner(scope, "RUNNER-149")
    assert found is not None
    assert found.name == "runner-149"
    assert client.find_runner(scope, "runner-999") is None


def test_deleting_runners_at_both_scopes(github_simulator: GitHubSimulator) -> None:
    sim = github_simulator
    sim.add_installation("octo-org", repos=["app"])
    client = make_client(sim)
    for scope in (Scope(None, "octo-org", "app"), Scope(None, "octo-org")):
        config = client.generate_jit_config(scope, "to-delete", ["self-hosted"], "")
        assert client.delete_runner(scope, config.runner_id) is True
        assert client.delete_runner(scope, config.runner_id) is False
        assert client.get_runner(scope, config.runner_id) is None


def test_a_busy_runner_is_never_deleted(github_simulator: GitHubSimulator) -> None:
    sim = github_simulator
    sim.add_installation("octo-org", repos=["app"])
    client = make_client(sim)
    scope = Scope(None, "octo-org", "app")
    config = client.generate_jit_config(scope, "busy", ["self-hosted"], "")
    sim.queue_job("octo-org/app", ["self-hosted"])
    sim.agent_connect(config.encoded.reveal())
    with pytest.raises(GitHubConflictError, match="running a job"):
        client.delete_runner(scope, config.runner_id)
    assert [r.name for r in sim.runners()] == ["busy"]


def test_a_scope_with_its_installation_id_needs_no_lookup(github_simulator: GitHubSimulator) -> None:
    sim = github_simulator
    installation = sim.add_installation("octo-org", repos=["app"])
    client = make_client(sim)
    client.list_runners(Scope(installation, "octo-org", "app"))
    assert not [call for call in sim.call_counts() if call.endswith("/installation")]
