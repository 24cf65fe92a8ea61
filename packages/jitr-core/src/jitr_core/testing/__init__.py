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
"""

from .contract import QueueContract, SecretsContract, StoreContract, VMContract

__all__ = ["QueueContract", "SecretsContract", "StoreContract", "VMContract"]
