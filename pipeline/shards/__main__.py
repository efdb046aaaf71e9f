"""``python -m pipeline.shards``: print or write the shard format document, or verify a shard
folder against its index."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pipeline.shards import INDEX_NAME, ShardIndex, shards_document, verify_shards
from pipeline.shards.schema import schema_markdown


def main() -> int:
    parser = argparse.ArgumentParser(description="The shard format document, or verify a shard "
                                                 "folder against its index.")
    parser.add_argument("--markdown", action="store_true", help="print the dataset table only")
    parser.add_argument("--write", metavar="PATH", help="write the whole document (docs/SHARDS.md)")
    parser.add_argument("--verify", metavar="SHARDS_DIR",
                        help="check every shard's size and sha256 against shards.jsonl")
    args = parser.parse_args()
    if args.verify:
        from pipeline.config import run_main

        def verify_command(_argv) -> int:
            found = verify_shards(args.verify)
            n_shards = len(ShardIndex.load(args.verify, check_sizes=False).records)
            for problem in found:
                print(f"error: {problem}", file=sys.stderr)
            print(f"==> {args.verify}: {n_shards - len(found)} of {n_shards} shards match "
                  f"{INDEX_NAME}")
            return 2 if found else 0

        return run_main(verify_command, [])    # a folder without an index: one error line
    if args.write:
        Path(args.write).write_text(shards_document(), encoding="utf-8")
        print(f"wrote {args.write}")
    else:
        print(schema_markdown() if args.markdown else shards_document())
    return 0


if __name__ == "__main__":
    sys.exit(main())
