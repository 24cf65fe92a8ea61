"""Properties of the pure parts: JIT config encoding, label matching, rate-limit waits, the token cache."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from jitr_core.secret import Secret
from jitr_github.ratelimit import rate_limit_wait
from jitr_github.simulator.jitconfig import JIT_FILES, decode_jit_config, encode_jit_config
from jitr_github.simulator.state import labels_match
from jitr_github.tokens import InstallationToken, TokenCache

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(), children, max_size=3),
    max_leaves=8,
)
runner_file = st.dictionaries(st.text(), json_values, max_size=5)
labels = st.lists(st.text(alphabet="abcXYZ-0123", min_size=1, max_size=6), max_size=5)


@given(st.tuples(runner_file, runner_file, runner_file))
def test_jit_configs_decode_to_what_was_encoded(contents: tuple[dict[str, object], ...]) -> None:
    files = dict(zip(JIT_FILES, contents, strict=True))
    assert decode_jit_config(encode_jit_config(files)) == files


@given(labels, labels)
def test_a_runner_matches_exactly_when_it_has_every_job_label(job: list[str], runner: list[str]) -> None:
    have = {label.lower() for label in runner} | {"self-hosted"}
    assert labels_match(job, runner) == all(label.lower() in have for label in job)
    assert labels_match([label.upper() for label in job], runner) == labels_match(job, runner)
    assert labels_match([*job, "Self-Hosted"], runner) == labels_match(job, runner)


@given(st.integers(min_value=100, max_value=599).filter(lambda s: s not in (403, 429)), st.text())
def test_only_403_and_429_can_be_rate_limits(status: int, message: str) -> None:
    assert rate_limit_wait(status, {"retry-after": "5", "x-ratelimit-remaining": "0"}, message, 0.0) is None


@given(st.sampled_from([403, 429]), st.integers(min_value=0, max_value=10**6), st.floats(0, 2e9))
def test_retry_after_wins_and_waits_are_never_negative(status: int, retry_after: int, now: float) -> None:
    headers = {"retry-after": str(retry_after), "x-ratelimit-remaining": "0", "x-ratelimit-reset": "0"}
    assert rate_limit_wait(status, headers, "", now) == retry_after
    exhausted = {"x-ratelimit-remaining": "0", "x-ratelimit-reset": "1000"}
    wait = rate_limit_wait(status, exhausted, "", now)
    assert wait is not None
    assert wait >= 0


@given(st.lists(st.floats(min_value=0, max_value=5000), max_size=30))
def test_the_token_cache_never_hands_out_a_token_near_expiry(advances: list[float]) -> None:
    now = [0.0]
    minted: list[float] = []

    def mint(installation_id: int) -> InstallationToken:
        minted.append(now[0])
        return InstallationToken(Secret(f"token-{len(minted)}"), now[0] + 3600)

    cache = TokenCache(mint, lambda: now[0], margin_s=300)
    for step in advances:
        now[0] += step
        token = cache.get(7)
        expires = 3600 + minted[int(token.reveal().split("-")[1]) - 1]
        assert expires - now[0] > 300
    assert len(minted) <= len(advances)
