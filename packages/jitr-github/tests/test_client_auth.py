"""The client authenticates as the App and as installations, caching what it can."""

from __future__ import annotations

import threading

import jwt
import pytest
from github_support import FakeClock, SimFactory, make_client
from jitr_core.errors import GitHubAuthError, GitHubNotFoundError
from jitr_core.model import Scope
from jitr_core.secret import Secret
from jitr_github import GitHubClient
from jitr_github.appauth import AppCredentials
from jitr_github.simulator import GitHubSimulator

TOKENS = "POST /app/installations/{installation_id}/access_tokens"


def test_app_jwts_are_backdated_short_lived_and_reused(github_simulator: GitHubSimulator) -> None:
    clock = FakeClock()
    credentials = AppCredentials(str(github_simulator.app_id), Secret(github_simulator.private_key_pem), clock)
    token = credentials.jwt().reveal()
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["iat"] == clock() - 60
    assert claims["exp"] - clock() <= 600
    assert claims["iss"] == str(github_simulator.app_id)
    clock.advance(400)
    assert credentials.jwt().reveal() == token, "a JWT with minutes left is reused"
    clock.advance(100)
    assert credentials.jwt().reveal() != token


def test_a_bad_private_key_is_refused_without_echoing_it() -> None:
    material = "-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEAsecretsecretsecret\n-----END RSA PRIVATE KEY-----\n"
    with pytest.raises(GitHubAuthError) as refused:
        GitHubClient("123", Secret(material))
    assert "secretsecret" not in str(refused.value)
    with pytest.raises(GitHubAuthError):
        GitHubClient("", Secret(material))


def test_installations_are_found_for_repositories_organisations_and_users(github_simulator: GitHubSimulator) -> None:
    sim = github_simulator
    org = sim.add_installation("octo-org", repos=["app"])
    user = sim.add_installation("octocat", owner_type="User", repos=["dotfiles"])
    client = make_client(sim)
    assert client.installation_for("octo-org", "app") == org
    assert client.installation_for("octo-org") == org
    assert client.installation_for("OctoCat") == user
    assert client.installation_for("octocat", "dotfiles") == user
    with pytest.raises(GitHubNotFoundError):
        client.installation_for("octo-org", "missing")
    before = sim.call_counts()
    for _ in range(3):
        client.installation_for("octo-org", "app")
        client.installation_for("octocat")
    assert sim.call_counts() == before, "installation ids are cached"


def test_one_token_serves_many_calls_and_is_refreshed_before_it_expires(make_sim: SimFactory) -> None:
    clock = FakeClock()
    sim = make_sim(clock=clock)
    installation = sim.add_installation("octo-org", repos=["app"])
    client = make_client(sim, clock=clock)
    scope = Scope(installation, "octo-org", "app")
    for _ in range(5):
        client.list_runners(scope)
    assert sim.call_counts()[TOKENS] == 1
    clock.advance(3600 - 300 - 1)
    client.list_runners(scope)
    assert sim.call_counts()[TOKENS] == 1, "still more than the margin left"
    clock.advance(2)
    client.list_runners(scope)
    assert sim.call_counts()[TOKENS] == 2, "refreshed within five minutes of expiry"


def test_a_token_github_refuses_is_replaced_once(make_sim: SimFactory) -> None:
    clock = FakeClock()
    sim = make_sim(clock=clock)
    installation = sim.add_installation("octo-org", repos=["app"])
    client = make_client(sim, clock=clock, token_refresh_margin_s=0)
    scope = Scope(installation, "octo-org", "app")
    client.list_runners(scope)
    clock.advance(3600)  # the simulator now refuses the token the client still thinks valid
    assert client.list_runners(scope) == []
    assert sim.call_counts()[TOKENS] == 2


def test_concurrent_callers_mint_one_token_per_installation(github_simulator: GitHubSimulator) -> None:
    sim = github_simulator
    orgs = [f"org-{i}" for i in range(3)]
    scopes = [Scope(sim.add_installation(org, repos=["app"]), org, "app") for org in orgs]
    client = make_client(sim)
    start = threading.Barrier(24)
    errors: list[BaseException] = []

    def work(index: int) -> None:
        start.wait()
        try:
            for _ in range(3):
                client.list_runners(scopes[index % 3])
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(24)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert sim.call_counts()[TOKENS] == 3
    assert sim.call_counts()["GET /repos/{owner}/{repo}/actions/runners"] == 72


def test_each_installation_is_called_with_its_own_token(github_simulator: GitHubSimulator) -> None:
    sim = github_simulator
    sim.add_installation("org-a", repos=["app"])
    sim.add_installation("org-b", repos=["app"])
    client = make_client(sim)
    for org in ("org-a", "org-b"):
        config = client.generate_jit_config(Scope(None, org, "app"), f"{org}-runner", ["self-hosted"], "")
        assert config.runner_name == f"{org}-runner"
    assert {r.owner for r in sim.runners()} == {"org-a", "org-b"}
    assert set(client.rate_limits()) == {"app", "installation:1001", "installation:1002"}


def test_an_app_reinstalled_under_a_new_id_is_found_again(github_simulator: GitHubSimulator) -> None:
    sim = github_simulator
    first = sim.add_installation("octo-org", repos=["app"])
    client = make_client(sim)
    scope = Scope(None, "octo-org", "app")
    client.list_runners(scope)
    sim.remove_installation(first)
    second = sim.add_installation("octo-org", repos=["app"])
    with pytest.raises(GitHubNotFoundError):
        client.list_runners(scope)  # the cached installation is gone; the client forgets it
    assert client.list_runners(scope) == []
    assert client.installation_for("octo-org", "app") == second
