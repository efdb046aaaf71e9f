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


# ---------------------------------------------------------------------------------------------
# one error path for every entry point

DEBUG_FLAG = "--debug"


def known_error_types() -> tuple[type[BaseException], ...]:
    """Errors raised on purpose, whose message says what is wrong and how to fix it: they are
    printed as one line. Anything else is a bug and keeps its traceback."""
    from pipeline.config import ConfigError
    from pipeline.errors import PipelineError

    return (PipelineError, ConfigError, ValueError, OSError)


def error_line(exc: BaseException) -> str:
    """``error: <what>`` on one line (continuation lines of a long message are indented)."""
    message = str(exc).strip() or type(exc).__name__
    if isinstance(exc, FileNotFoundError) and exc.filename and str(exc.filename) not in message:
        message = f"{exc.filename}: {message}"
    return "error: " + message.replace("\n", "\n  ")


def run_main(main, argv=None) -> int:
    """Call ``main(argv)`` (the entry point's real body) with the shared error path.

    A known error (:func:`known_error_types`) prints ``error: ...`` on stderr and returns 2;
    ``--debug`` anywhere in ``argv`` re-raises it with its traceback. ``main`` returns an exit
    code (``None`` counts as 0).
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = DEBUG_FLAG in argv
    argv = [a for a in argv if a != DEBUG_FLAG]
    try:
        code = main(argv)
    except known_error_types() as exc:
        if debug:
            raise
        print(error_line(exc) + "\n  (run again with --debug for the traceback)",
              file=sys.stderr, flush=True)
        return 2
    return 0 if code is None else int(code)
