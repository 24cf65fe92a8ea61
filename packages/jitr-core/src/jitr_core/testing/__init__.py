"""The backend contract suite: every store, queue, VM and secrets provider must pass it.

A backend package subclasses the contract classes in its own tests and provides the fixtures
they use::

    from jitr_core.testing import StoreContract

    class TestDynamoStore(StoreContract):
        @pytest.fixture
        def backend(self, moto_server) -> Backend: ...

Fixtures: ``backend`` (a :class:`~jitr_core.backend.Backend` whose settings choose the provider
under test) for every class; ``launch_request`` (a callable ``(runner_name, token) ->
LaunchRequest``) for :class:`VMContract`; ``secret_reference`` (a callable ``(name, value) ->
reference``) and ``missing_reference`` for :class:`SecretsContract`.

:mod:`jitr_core.testing.environment` holds what every package's tests share about their machine:
:func:`wait_until` (condition waits whose deadlines scale with ``JITR_TEST_TIMEOUT_SCALE``) and
:func:`require_tool` (a missing tool skips, or fails under ``JITR_REQUIRE_TOOLS=1``).

:mod:`jitr_core.testing.sandbox` runs a rendered startup script for real: bash in a temporary
root with recording fakes on ``PATH``, a fake runner, and one fake HTTP server on 127.0.0.1 for
the runner download and the EC2 and GCE metadata services.
"""

from .contract import QueueContract, SecretsContract, StoreContract, VMContract
from .environment import deadline_s, require_tool, unavailable, wait_until

__all__ = [
    "QueueContract",
    "SecretsContract",
    "StoreContract",
    "VMContract",
    "deadline_s",
    "require_tool",
    "unavailable",
    "wait_until",
]
