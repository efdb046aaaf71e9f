"""The one entry of every evaluator: YAML config + dotted overrides -> run -> JSON.

    python -m evals.audio.binary [--config configs/evals/binary.yaml] ckpt=runs/avsa/ckpt.pt \
        protocol.viewpoints=random

The grammar is the trainer's (:mod:`pipeline.config`): the evaluator's typed dataclass is read
from its YAML (default ``configs/evals/<name>.yaml``), dotted ``key=value`` overrides are
applied, the resolved config is printed, the evaluator runs and returns the JSON it wrote, and
the resolved config is saved beside that JSON as ``<json stem>.config.yaml`` (so every results
row links to the config that produced it). Errors take the shared path of
:func:`pipeline.runtime.run_main`: one ``error: ...`` line, exit code 2, ``--debug`` for the
traceback.

:class:`EvalIO` holds the fields every checkpoint evaluator shares; each evaluator's config
subclasses it and nests its protocol settings under ``protocol``.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence, TypeVar

from pipeline.config import ConfigError, dump_config, load_config, run_main, save_config
from pipeline.runtime import REPO_ROOT, setup_entry_point

T = TypeVar("T")

CONFIG_DIR = REPO_ROOT / "configs" / "evals"


@dataclass(frozen=True)
class EvalIO:
    """What every checkpoint evaluator reads and writes (paths relative to the working
    directory, or to the repository root when they do not exist there)."""

    ckpt: str = ""                 # trainer checkpoint, runs/<name>/ckpt.pt
    out: str = ""                  # output (default: beside the checkpoint, in its run folder)
    device: str = "auto"           # auto | cpu | cuda | cuda:N
    norm_stats: str = ""           # norm_stats.json (default: the training shards'); none = off
    cache: bool = True             # read/write cached features in <run>/eval_cache/


def config_path_of(json_path: str | Path) -> Path:
    """Where the resolved config of the run that wrote ``json_path`` is saved."""
    json_path = Path(json_path)
    return json_path.with_name(json_path.stem + ".config.yaml")


def run_evaluator(config_cls: type[T], run: Callable[[T], Any], argv: Sequence[str] | None,
                  *, name: str, description: str = "") -> int:
    """Parse ``[--config PATH] [key=value ...]``, load ``config_cls``, call ``run(cfg)`` and
    save the resolved config beside the JSON path(s) it returns (a path or a list of paths)."""

    def main(args: list[str]) -> int:
        parser = argparse.ArgumentParser(prog=f"python -m {_module_of(run)}",
                                         description=description or None)
        parser.add_argument("--config", default=str(CONFIG_DIR / f"{name}.yaml"),
                            help="evaluator YAML (default: %(default)s)")
        parser.add_argument("overrides", nargs="*", help="dotted overrides, e.g. ckpt=runs/x/ckpt.pt")
        parser.add_argument("--debug", action="store_true",
                            help="show the traceback of an error (handled by run_main)")
        parsed = parser.parse_args(args)
        setup_entry_point()
        cfg = load_config(config_cls, parsed.config, parsed.overrides)
        print(f"# resolved config ({parsed.config})\n{dump_config(cfg)}", file=sys.stderr,
              flush=True)
        written = run(cfg)
        paths = written if isinstance(written, (list, tuple)) else [written]
        for path in paths:
            if path:
                saved = save_config(cfg, config_path_of(path))
                print(f"==> {name}: {path} (config: {saved})", flush=True)
        return 0

    return run_main(main, argv)


def require_ckpt(cfg: EvalIO) -> str:
    """The checkpoint path, or a ConfigError saying how to give one."""
    if not cfg.ckpt:
        raise ConfigError("ckpt: expected a checkpoint path (ckpt=runs/<name>/ckpt.pt, or "
                          "CKPT=... with make), got none")
    if not Path(cfg.ckpt).is_file():
        raise FileNotFoundError(f"{cfg.ckpt}: no such checkpoint; train one with `make train` "
                                f"(or `make demo`) or give ckpt=<path>")
    return cfg.ckpt


def _module_of(func: Callable) -> str:
    return getattr(func, "__module__", "evals")
