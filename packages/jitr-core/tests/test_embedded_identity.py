"""The embedded VM identity: a per-VM token in the VM's environment, verified against a kept digest."""

from __future__ import annotations

import shlex
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from jitr_core.backend import Backend
from jitr_core.errors import IdentityError, NoProviderError
from jitr_core.model import LaunchRequest, LaunchResult
from jitr_core.plugins import create_plugin_manager
from jitr_core.settings import Settings
from jitr_core.testing.environment import wait_until

AUDIENCE = "http://127.0.0.1:8080/broker"


def _launch(backend: Backend, tmp_path: Path) -> tuple[LaunchResult, str, int]:
    """A local VM that writes down its token and its pid, then waits; returns it, the token and the pid."""
    out = tmp_path / f"vm-{uuid.uuid4().hex}"
    script = f'printf %s "$JITR_VM_TOKEN" > {shlex.quote(str(out))}.token\necho $$ > {shlex.quote(str(out))}.pid\n'
    result = backend.launch_vm(
        LaunchRequest(
            runner_name=f"jitr-linux-{uuid.uuid4().hex[:8]}",
            pool="linux",
            machine_type="local",
            placement=None,
            spot=False,
            image="",
            disk_gb=8,
            startup_script=script + "exec sleep 60\n",
            idempotency_token=uuid.uuid4().hex,
            max_lifetime_s=3600,
        )
    )
    pid_file = Path(f"{out}.pid")
    assert wait_until(lambda: pid_file.exists() and pid_file.read_text().strip() != "", 30)
    return result, Path(f"{out}.token").read_text(), int(pid_file.read_text())


def _refused(backend: Backend, proof: Mapping[str, Any], secret: str = "") -> IdentityError:
    with pytest.raises(IdentityError) as caught:
        backend.verify_vm_identity("embedded", proof, AUDIENCE)
    if secret:
        assert secret not in str(caught.value)
    return caught.value


def test_a_running_vm_proves_itself_with_its_token(embedded_backend: Backend, tmp_path: Path) -> None:
    result, token, _ = _launch(embedded_backend, tmp_path)
    identity = embedded_backend.verify_vm_identity("embedded", {"token": token}, AUDIENCE)
    assert (identity.provider, identity.vm_id, identity.zone, identity.account) == ("embedded", result.vm_id, "", "")
    assert identity.issued_at > 0
    again = embedded_backend.verify_vm_identity("embedded", {"token": token}, AUDIENCE)
    assert again == identity  # replay is the broker's business, not the verifier's


def test_the_token_travels_in_the_environment_and_is_kept_only_as_a_digest(
    embedded_backend: Backend, tmp_path: Path, embedded_section: dict[str, Any]
) -> None:
    result, token, pid = _launch(embedded_backend, tmp_path)
    assert token.startswith(result.vm_id + ".")
    with open(f"/proc/{pid}/cmdline", "rb") as handle:
        assert token.encode() not in handle.read()
    state = Path(embedded_section["state_dir"])
    for path in state.rglob("*"):
        if path.is_file() and path.suffix != ".lock":
            assert token.encode() not in path.read_bytes(), path


def test_each_vm_gets_its_own_token(embedded_backend: Backend, tmp_path: Path) -> None:
    _, first_token, _ = _launch(embedded_backend, tmp_path)
    second, second_token, _ = _launch(embedded_backend, tmp_path)
    assert first_token != second_token
    assert embedded_backend.verify_vm_identity("embedded", {"token": second_token}, AUDIENCE).vm_id == second.vm_id
    secret = first_token.split(".", 1)[1]
    _refused(embedded_backend, {"token": f"{second.vm_id}.{secret}"}, secret)  # one VM's secret, another's id


def test_a_tampered_or_guessed_token_is_refused(embedded_backend: Backend, tmp_path: Path) -> None:
    result, token, _ = _launch(embedded_backend, tmp_path)
    flipped = token[:-1] + ("A" if token[-1] != "A" else "B")
    assert "matches no local VM" in str(_refused(embedded_backend, {"token": flipped}, token[-40:-1]))
    _refused(embedded_backend, {"token": f"{result.vm_id}.{'x' * 43}"})
    _refused(embedded_backend, {"token": f"local-0000000000000000.{'x' * 43}"})


def test_the_token_dies_with_its_vm(embedded_backend: Backend, tmp_path: Path) -> None:
    result, token, _ = _launch(embedded_backend, tmp_path)
    assert embedded_backend.terminate_vm(result.vm_id)
    _refused(embedded_backend, {"token": token}, token.split(".", 1)[1])


@pytest.mark.parametrize(
    "proof",
    [
        {},
        {"token": ""},
        {"token": 42},
        {"token": None},
        {"token": "no-dot-in-it"},
        {"token": "local-1.short"},
        {"token": "local-1." + "x" * 40 + "\n"},
        {"token": "local-1." + "x" * 300},
        {"token": "a" * 1_000_000},
        {"other": "x"},
        ["token"],
    ],
    ids=lambda proof: repr(proof)[:30],
)
def test_malformed_and_oversized_proofs_are_refused(embedded_backend: Backend, proof: Any) -> None:
    error = _refused(embedded_backend, proof)
    assert len(str(error)) < 200


def test_another_providers_proof_is_not_the_embedded_providers_to_answer(embedded_backend: Backend) -> None:
    with pytest.raises(NoProviderError, match="jitr_verify_vm_identity"):
        embedded_backend.verify_vm_identity("aws", {"document": "{}", "signature": "x"}, AUDIENCE)


def test_embedded_tokens_are_refused_where_the_vm_provider_is_another(embedded_section: dict[str, Any]) -> None:
    settings = Settings.from_mapping({"provider": "embedded", "vm_provider": "aws", "embedded": embedded_section})
    backend = Backend(create_plugin_manager(load_entry_points=False, environ={}), settings)
    with pytest.raises(IdentityError, match="not in use"):
        backend.verify_vm_identity("embedded", {"token": f"local-0000000000000000.{'x' * 43}"}, AUDIENCE)
