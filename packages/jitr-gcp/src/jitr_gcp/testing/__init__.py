"""Test support for the GCP backend, reusable by other packages' tests.

- :mod:`jitr_gcp.testing.emulators`: start/stop Google's Firestore and Pub/Sub emulators.
- :mod:`jitr_gcp.testing.compute_fake`, :mod:`jitr_gcp.testing.secretmanager_fake`: local HTTP
  fakes of the GCE and Secret Manager REST APIs for the real client libraries.
- :mod:`jitr_gcp.testing.fixtures`: pytest fixtures over all of them (import its names into a
  ``conftest.py``).
- :mod:`jitr_gcp.testing.backend`: settings and a plugin manager wired to the GCP plugin.
- :mod:`jitr_gcp.testing.identity`: a key signing identity tokens as Google does, and its
  certificate, for the broker's verifier (needs ``cryptography``, of the ``test`` extra).
"""
