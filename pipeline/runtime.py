"""Process-level set-up shared by every entry point (CLI ``main`` functions only).

Nothing here runs at import time of library modules: entry points call
:func:`setup_entry_point` first, so that ultralytics never tries to download or pip-install
anything, numba can cache its compiled kernels in a writable place, and logging is configured
exactly once.
"""

from __future__ import annotations

import logging
import os
import random
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CACHE_DIR = REPO_ROOT / "cache"


def offline_environment(cache_dir: str | Path | None = None) -> dict[str, str]:
    """Set the environment variables that keep third-party libraries offline and writable.

    Existing values set by the user win (``os.environ.setdefault``). Returns what is in force.
    """
    cache = Path(cache_dir or os.environ.get("SPATIAL_AVSA_CACHE", DEFAULT_CACHE_DIR))
    wanted = {
        "YOLO_OFFLINE": "1",
        "YOLO_AUTOINSTALL": "false",
        # Detector weights load with torch.load(weights_only=True) against ultralytics'
        # allow-list of model classes: a .pt that would run code when unpickled is refused.
        "ULTRALYTICS_SAFE_LOAD": "1",
        "YOLO_CONFIG_DIR": str(cache / "ultralytics"),
        "NUMBA_CACHE_DIR": str(cache / "numba"),
        "MPLCONFIGDIR": str(cache / "matplotlib"),
        "MPLBACKEND": "Agg",
    }
    for key, value in wanted.items():
        os.environ.setdefault(key, value)
    for key in ("YOLO_CONFIG_DIR", "NUMBA_CACHE_DIR", "MPLCONFIGDIR"):
        Path(os.environ[key]).mkdir(parents=True, exist_ok=True)
    return {key: os.environ[key] for key in wanted}


def configure_logging(level: str | int = "INFO") -> None:
    """Configure the root logger once (entry points only)."""
    logging.basicConfig(
        level=level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
        stream=sys.stderr,
        force=True,
    )


def seed_everything(seed: int) -> None:
    """Seed Python, numpy and (when imported) torch."""
    import numpy as np

    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.manual_seed(seed)


def setup_entry_point(log_level: str | int = "INFO") -> None:
    """Call first in every ``main()``: offline environment, then logging."""
    offline_environment()
    configure_logging(log_level)


# The one error path of every entry point lives with the command-line grammar; re-exported.
from pipeline.config import error_line, known_error_types, run_main  # noqa: E402,F401
