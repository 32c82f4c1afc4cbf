"""The media-quality tests reuse the worker's in-process media harness (tests/worker)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "worker"))

from media_harness import run_media  # noqa: E402, F401  (a fixture)
