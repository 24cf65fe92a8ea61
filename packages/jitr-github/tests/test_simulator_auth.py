"""The simulator authenticates like GitHub: App JWTs by signature and time, tokens by installation."""

from __future__ import annotations

import jwt
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from github_support import FakeClock, RawApp, SimFactory

TOKEN_PATH = "/app/installations/{installation_id}/access_tokens"


def _signed(key_pem: str, iat: float, exp: float, iss: str) -> str:
    return jwt.encode({"iat": int(iat), "exp": int(exp), "iss": iss}, key_pem, algorithm="RS256")


def _other_key() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def test_jwt_signed_with_another_key_is_refused(make_sim: SimFactory) -> None:
    clock = FakeClock()
    sim = make_sim(clock=clock)
    installation = sim.add_installation("octo-org")
    app = RawApp(sim)
    forged = _signed(_other_key(), clock() - 60, clock() + 540, str(sim.app_id))
    body = app.call("POST", TOKEN_PATH, 401, forged, installation_id=installation)
    assert body["message"] == "A JSON web token could not be decoded"
    app.call("POST", TOKEN_PATH, 401, "not.a.jwt", installation_id=installation)


def test_jwt_time_and_issuer_are_checked_against_the_simulator_clock(make_sim: SimFactory) -> None:
    clock = FakeClock()
    sim = make_sim(clock=clock)
    installation = sim.add_installation("octo-org")
    app = RawApp(sim)
    valid = _signed(sim.private_key_pem, clock() - 60, clock() + 540, str(sim.app_id))
    app.call("POST", TOKEN_PATH, 201, valid, installation_id=installation)
    by_client_id = _signed(sim.private_key_pem, clock() - 60, clock() + 540, sim.client_id)
    app.call("POST", TOKEN_PATH, 201, by_client_id, installation_id=installation)

    clock.advance(541)
    expired = app.call("POST", TOKEN_PATH, 401, valid, installation_id=installation)
    assert "'Expiration time' claim ('exp')" in expired["message"]
    too_long = _signed(sim.private_key_pem, clock(), clock() + 3600, str(sim.app_id))
    assert (
        "too far in the future" in app.call("POST", TOKEN_PATH, 401, too_long, installation_id=installation)["message"]
    )
    future = _signed(sim.private_key_pem, clock() + 300, clock() + 540, str(sim.app_id))
    assert "'Issued at' claim" in app.call("POST", TOKEN_PATH, 401, future, installation_id=installation)["message"]
    stranger = _signed(sim.private_key_pem, clock() - 60, clock() + 540, "999")
    app.call("POST", TOKEN_PATH, 401, stranger, installation_id=installation)


def test_installation_tokens_reach_only_their_installation(make_sim: SimFactory) -> None:
    sim = make_sim()
    org_a = sim.add_installation("org-a", repos=["app"])
    sim.add_installation("org-b", repos=["app"])
    app = RawApp(sim)
    token_a = app.token(org_a)
    runners = "/repos/{owner}/{repo}/actions/runners"
    app.call("GET", runners, 200, token_a, owner="org-a", repo="app")
    app.call("GET", runners, 404, token_a, owner="org-b", repo="app")
    app.call("GET", "/orgs/{org}/actions/runners", 200, token_a, org="org-a")
    app.call("GET", "/orgs/{org}/actions/runners", 403, token_a, org="org-b")
    app.call("GET", "/orgs/{org}/actions/runners", 404, token_a, org="nobody")


def test_credentials_of_the_wrong_kind_are_refused(make_sim: SimFactory) -> None:
    sim = make_sim()
    installation = sim.add_installation("org-a", repos=["app"])
    app = RawApp(sim)
    token = app.token(installation)
    app.call("POST", TOKEN_PATH, 401, token, installation_id=installation)
    answer = app.call("GET", "/repos/{owner}/{repo}/actions/runners", 403, app.jwt(), owner="org-a", repo="app")
    assert answer["message"] == "Resource not accessible by integration"


def test_installation_tokens_expire_after_an_hour(make_sim: SimFactory) -> None:
    clock = FakeClock()
    sim = make_sim(clock=clock)
    installation = sim.add_installation("org-a", repos=["app"])
    app = RawApp(sim)
    minted = app.call("POST", TOKEN_PATH, 201, app.jwt(clock()), installation_id=installation)
    assert minted["expires_at"] == "2027-01-15T09:00:00Z"  # FakeClock starts at 2027-01-15T08:00:00Z
    clock.advance(3599)
    app.call("GET", "/repos/{owner}/{repo}/actions/runners", 200, minted["token"], owner="org-a", repo="app")
    clock.advance(1)
    answer = app.call("GET", "/repos/{owner}/{repo}/actions/runners", 401, minted["token"], owner="org-a", repo="app")
    assert answer["message"] == "Bad credentials"


def test_tokens_come_in_more_than_one_length(make_sim: SimFactory) -> None:
    sim = make_sim()
    installation = sim.add_installation("org-a")
    app = RawApp(sim)
    lengths = {len(app.token(installation)) for _ in range(4)}
    assert len(lengths) > 1
    assert 40 in lengths


def test_token_scheme_and_bearer_scheme_both_work(make_sim: SimFactory) -> None:
    sim = make_sim()
    installation = sim.add_installation("org-a", repos=["app"])
    token = RawApp(sim).token(installation)
    url = f"{sim.base_url}/repos/org-a/app/actions/runners"
    assert requests.get(url, headers={"Authorization": f"token {token}"}).status_code == 200
    assert requests.get(url, headers={"Authorization": f"Bearer {token}"}).status_code == 200
