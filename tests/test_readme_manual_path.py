"""The README's manual path, as written: every command is a make target that exists, every
override is a key the configs accept, the evaluations read the checkpoint the training writes,
and its preprocessing and training settings are the demo's (``make demo`` runs those targets
with the Makefile's DEMO_* settings, end to end; so the path a newcomer types is the one the
demo proves)."""

from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path

import pytest

from pipeline.config import load_config
from pipeline.preprocess_config import PreprocessConfig
from trainer.config import TrainConfig

ROOT = Path(__file__).resolve().parents[1]


def manual_path_commands(readme: str) -> list[list[str]]:
    """The commands of the README's first bash block under "The manual path", continuation
    lines joined and comments dropped, each split as the shell would."""
    section = readme.split("## The manual path", 1)[1]
    block = section.split("```bash", 1)[1].split("```", 1)[0]
    joined = re.sub(r"\\\n\s*", " ", block)
    commands = []
    for line in joined.splitlines():
        tokens = shlex.split(line, comments=True)
        if tokens:
            commands.append(tokens)
    return commands


def make_variable(name: str) -> str:
    """A Makefile variable's value, expanded by make itself."""
    out = subprocess.run(["make", "--no-print-directory", "-f", "Makefile", "-f", "-",
                          f"print-{name}"], input="print-%:\n\t@echo $($*)\n", cwd=ROOT,
                         capture_output=True, text=True, check=True)
    return out.stdout.strip()


@pytest.fixture(scope="module")
def commands() -> list[list[str]]:
    return manual_path_commands((ROOT / "README.md").read_text(encoding="utf-8"))


def settings(command: list[str]) -> dict[str, str]:
    """``KEY=VALUE`` words of a make command (``ARGS`` kept whole)."""
    return dict(word.split("=", 1) for word in command[2:] if "=" in word)


def test_every_command_is_an_existing_make_target(commands):
    targets = set(re.findall(r"^([a-z][\w-]*):", (ROOT / "Makefile").read_text(), re.M))
    assert len(commands) >= 10
    for command in commands:
        assert command[0] == "make" and command[1] in targets, command


def test_training_and_preprocessing_overrides_are_accepted_and_match_the_demo(commands):
    by_target = {command[1]: settings(command) for command in commands}
    train = by_target["train"]
    overrides = train["ARGS"].split()
    cfg = load_config(TrainConfig, ROOT / "configs" / "experiments" / f"{train['EXP']}.yaml",
                      [*overrides, f"data.shards_dir={train['SHARDS']}"])
    assert cfg.data.avc_batch_size == 0                  # no 112-clip AVC steps on a CPU
    demo = make_variable("DEMO_TRAIN").split()
    assert sorted(o for o in overrides if not o.startswith("run.name=")) == sorted(demo)
    assert train["EXP"] == make_variable("DEMO_EXP")
    prep = by_target["preprocess"]
    load_config(PreprocessConfig, ROOT / "configs" / "preprocess.yaml", prep["ARGS"].split())
    assert sorted(prep["ARGS"].split()) == sorted(make_variable("DEMO_PREP").split())
    assert prep["SHARDS"] == train["SHARDS"] == make_variable("DEMO_SHARDS")


def test_evaluations_read_the_checkpoint_the_training_writes(commands):
    train = next(settings(c) for c in commands if c[1] == "train")
    run_name = next(o.split("=", 1)[1] for o in train["ARGS"].split() if o.startswith("run.name="))
    checkpoints = {settings(c)["CKPT"] for c in commands if "CKPT" in settings(c)}
    assert checkpoints == {f"runs/{run_name}/ckpt.pt"}
