"""Fixtures for the worker-side media tests (the harness lives in media_harness.py)."""

from media_harness import run_media  # noqa: F401  (a fixture)
