"""Fixtures of the GCP infrastructure tests: the emulators of jitr_gcp.testing (a missing emulator
skips, or fails under JITR_REQUIRE_EMULATORS=1) and jitr-functions' Cloud Run test support."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
# gcp_support (functions-framework servers) lives with jitr-functions' tests.
FUNCTION_TESTS = ROOT / "packages" / "jitr-functions" / "tests"
if str(FUNCTION_TESTS) not in sys.path:
    sys.path.append(str(FUNCTION_TESTS))

try:
    from jitr_gcp.testing import fixtures
except ImportError:  # the gcp extra is missing: the tests that need it skip themselves
    pass
else:
    gcp_emulators = fixtures.gcp_emulators
    pubsub_emulator = fixtures.pubsub_emulator
    firestore_emulator = fixtures.firestore_emulator
