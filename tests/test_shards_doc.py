"""docs/SHARDS.md is generated from pipeline/shards.py and must not go stale."""

from pathlib import Path

from pipeline.shards import SAMPLE_FIELDS, shards_document

ROOT = Path(__file__).resolve().parents[1]


def test_shards_doc_is_the_generated_one():
    committed = (ROOT / "docs" / "SHARDS.md").read_text(encoding="utf-8")
    assert committed == shards_document(), (
        "docs/SHARDS.md is stale: run python -m pipeline.shards --write docs/SHARDS.md")


def test_every_sample_field_is_documented():
    text = shards_document()
    assert all(f"`{spec.name}`" in text for spec in SAMPLE_FIELDS)
