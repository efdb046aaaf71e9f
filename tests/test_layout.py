"""The floors of the code base and who may import whom (docs/ARCHITECTURE.md), checked by
parsing every module's imports (``ast``), including imports inside functions.

- ``pipeline`` imports nothing from ``trainer``, ``evals`` or ``baselines``;
- ``trainer`` imports from ``pipeline`` only the shard contract, the config grammar and the
  spatial conventions and the folder lock (``pipeline.shards``, ``pipeline.config``,
  ``pipeline.spatial``, ``pipeline.locks``);
- nothing imports ``evals`` or ``baselines`` (outside themselves);
- no pipeline stage and no evaluator imports the data generator ``pipeline.synth`` (only make
  targets, tests and benchmarks call it); ground truth is read through ``pipeline.ground_truth``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("pipeline", "trainer", "evals", "baselines")
TRAINER_MAY_IMPORT = {"pipeline.shards", "pipeline.config", "pipeline.spatial", "pipeline.locks"}


def import_statements(path: Path) -> list[list[str]]:
    """Per import statement anywhere in the file, the absolute module names it may load
    (``from a.b import c`` gives ``a.b`` and ``a.b.c``, since ``c`` may be a module)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    statements: list[list[str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            statements.extend([alias.name] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            statements.append([node.module, *(f"{node.module}.{a.name}" for a in node.names)])
    return statements


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _within(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def broken_rule(module: str, target: str) -> str | None:
    """The rule that ``module`` importing ``target`` breaks, or None."""
    package, top = module.split(".")[0], target.split(".")[0]
    if top not in PACKAGES:
        return None
    if top in ("evals", "baselines") and package != top:
        return f"nothing imports {top}"
    if package == "pipeline" and top != "pipeline":
        return "pipeline imports only pipeline"
    if package == "trainer" and top == "pipeline" and not any(
            _within(target, allowed) for allowed in TRAINER_MAY_IMPORT):
        return f"trainer imports only {sorted(TRAINER_MAY_IMPORT)} from pipeline"
    if _within(target, "pipeline.synth") and not _within(module, "pipeline.synth"):
        return "no stage or evaluator imports the generator"
    return None


def violations(root: Path) -> list[str]:
    """Every import statement that breaks a rule, as ``module: imports target (rule)``."""
    found = []
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            module = module_name(path, root)
            for candidates in import_statements(path):
                for target in candidates:
                    rule = broken_rule(module, target)
                    if rule is not None:
                        found.append(f"{module}: imports {target} ({rule})")
                        break
    return found


def test_the_code_base_follows_the_import_rules():
    assert violations(ROOT) == []


@pytest.mark.parametrize("package, source, rule", [
    ("pipeline", "from trainer.models import build_model\n", "pipeline imports only pipeline"),
    ("trainer", "def f():\n    from pipeline.decode import decode_audio\n", "trainer imports only"),
    ("pipeline", "import evals.frozen\n", "nothing imports evals"),
    ("trainer", "from baselines.multisensory import model\n", "nothing imports baselines"),
    ("evals", "from pipeline.synth.scenes import envelope\n", "no stage or evaluator"),
    ("pipeline", "from pipeline.synth import render\n", "no stage or evaluator"),
])
def test_a_forbidden_import_is_caught(tmp_path, package, source, rule):
    """A temporary module with one forbidden import, in a copy of the package layout."""
    for name in PACKAGES:
        (tmp_path / name).mkdir()
        (tmp_path / name / "__init__.py").write_text("")
    (tmp_path / package / "offender.py").write_text(source)
    found = violations(tmp_path)
    assert len(found) == 1 and f"{package}.offender" in found[0] and rule in found[0], found


def test_allowed_imports_pass(tmp_path):
    for name in PACKAGES:
        (tmp_path / name).mkdir()
        (tmp_path / name / "__init__.py").write_text("")
    (tmp_path / "trainer" / "ok.py").write_text("from pipeline.shards import open_shard\n"
                                                "from pipeline.config import load_config\n")
    (tmp_path / "evals" / "ok.py").write_text("from trainer.models import build_model\n"
                                              "from pipeline.ground_truth import envelope\n"
                                              "from evals.cli import run_evaluator\n")
    (tmp_path / "pipeline" / "synth").mkdir()
    (tmp_path / "pipeline" / "synth" / "ok.py").write_text("from pipeline.synth import scenes\n")
    assert violations(tmp_path) == []


#: Functions with one home: defined there only, imported everywhere else.
ONE_HOME = {"resolve_device": "trainer/distributed.py",
            "angular_distance_rad": "pipeline/spatial.py",
            "view_basis": "pipeline/spatial.py"}


@pytest.mark.parametrize("name, home", sorted(ONE_HOME.items()))
def test_shared_helpers_are_defined_once(name, home):
    root = Path(__file__).resolve().parents[1]
    homes = sorted(
        str(path.relative_to(root)) for package in PACKAGES for path in (root / package).rglob("*.py")
        if any(isinstance(node, ast.FunctionDef) and node.name == name
               for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))))
    assert homes == [home], f"{name} is defined in {homes}; keep it in {home} and import it"


def test_the_shard_contract_stands_alone():
    """``pipeline.shards`` is most of what the trainer reads of the pipeline, so it imports no
    other pipeline module but the config grammar (its command line's error handling): no cycle
    with ``pipeline.features``, which imports it."""
    outside = sorted(
        f"{module_name(path, ROOT)}: {target}"
        for path in (ROOT / "pipeline" / "shards").rglob("*.py")
        for candidates in import_statements(path) for target in candidates[:1]
        if _within(target, "pipeline") and not _within(target, "pipeline.shards")
        and not _within(target, "pipeline.config"))
    assert outside == [], outside


def test_the_architecture_document_names_files_that_exist():
    """Every repository path docs/ARCHITECTURE.md spells out (``pipeline/x.py``, ``tests/...``)
    exists, and every bare module name it gives (``data.py``) exists somewhere in the tree."""
    text = (ROOT / "docs" / "ARCHITECTURE.md").read_text(encoding="utf-8")
    names = set(__import__("re").findall(r"`([\w/]+(?:\.py|/))`", text))
    assert len(names) > 20
    skip = {".venv", ".git", "data", "runs", "cache", "outputs"}
    tree = {str(p.relative_to(ROOT)) for p in ROOT.rglob("*")
            if not skip.intersection(p.relative_to(ROOT).parts)}
    missing = []
    for name in sorted(names):
        bare = name.rstrip("/")
        if "/" in bare:
            ok = (ROOT / bare).exists()
        else:
            ok = any(entry == bare or entry.endswith("/" + bare) for entry in tree)
        if not ok:
            missing.append(name)
    assert missing == [], f"docs/ARCHITECTURE.md names {missing}, which do not exist"
