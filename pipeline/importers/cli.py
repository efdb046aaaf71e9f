"""``python -m pipeline.importers <corpus> ...``: write a manifest and its problems file."""

from __future__ import annotations

import argparse
import dataclasses
import logging
from pathlib import Path
from typing import Sequence

from pipeline.decode import AMBIX_CHANNEL_ORDER, check_channel_order
from pipeline.errors import ManifestError
from pipeline.manifest import write_manifest


from pipeline.importers.common import (DEFAULT_SPLIT_FRACTIONS, EIGENSCAPE_SEGMENT_S,
                                      _problems_path, write_problems)
from pipeline.importers.eigenscape import import_eigenscape
from pipeline.importers.folder import import_video_folder
from pipeline.importers.starss23 import import_starss23
from pipeline.importers.yt360 import import_yt360, parse_yt360_channel_order

log = logging.getLogger(__name__)


def _parse_fractions(text: str) -> dict[str, float]:
    """``"train=0.8,val=0.1,test=0.1"`` -> dict."""
    try:
        return {name.strip(): float(share) for name, share in
                (item.split("=") for item in text.split(","))}
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected 'train=0.8,val=0.1,test=0.1', got {text!r}") from exc


def _channel_order_arg(text: str) -> str:
    """``ambix`` or four letters W, X, Y, Z (what channels 0-3 of the files hold)."""
    try:
        return check_channel_order(AMBIX_CHANNEL_ORDER if text.lower() == "ambix"
                                   else text.upper())
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def _yt360_channel_order_arg(text: str) -> str:
    try:
        return parse_yt360_channel_order(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m pipeline.importers",
                                     description="Build a JSONL manifest for a corpus.")
    sub = parser.add_subparsers(dest="corpus", required=True)

    yt = sub.add_parser("yt360", help="YouTube-360 release (video/ and audio/ folders)")
    yt.add_argument("--root", required=True, help="data root holding video/ and audio/")
    yt.add_argument("--clip-list", required=True, help="lines 'YOUTUBE_ID start1,start2,...'")
    yt.add_argument("--train-ids", required=True)
    yt.add_argument("--test-ids", required=True)
    yt.add_argument("--workers", type=int, default=4)
    yt.add_argument("--channel-order", type=_yt360_channel_order_arg, default=AMBIX_CHANNEL_ORDER,
                    help="what channels 0-3 of the .m4a files hold: 'ambix' = WYZX (default, as "
                         "released), 'yt360-note' = XYWZ (the switch a public note reports), or "
                         "any 4 letters W, X, Y, Z (docs/channel_order.md)")

    eig = sub.add_parser("eigenscape", help="EigenScape folder of Beach-01.wav-style files")
    eig.add_argument("--folder", required=True)
    eig.add_argument("--segment-s", type=float, default=EIGENSCAPE_SEGMENT_S)

    fol = sub.add_parser("folder", help="a folder of your own 360° clips with FOA inside")
    fol.add_argument("--folder", required=True)
    fol.add_argument("--ambisonics", default="ambix", choices=["ambix", "fuma", "acn_n3d", "hoa_ambix"])
    fol.add_argument("--split", type=_parse_fractions, default=dict(DEFAULT_SPLIT_FRACTIONS),
                     help="split shares, e.g. train=0.8,val=0.1,test=0.1")
    fol.add_argument("--split-by", choices=["file", "folder"], default="file")
    fol.add_argument("--workers", type=int, default=4)

    sta = sub.add_parser("starss23", help="STARSS23 development set (foa_dev/, video_dev/, "
                                          "metadata_dev/), labels kept")
    sta.add_argument("--root", required=True, help="folder holding foa_dev/ and video_dev/")
    sta.add_argument("--workers", type=int, default=4)

    for command in (fol, sta):
        command.add_argument("--channel-order", type=_channel_order_arg,
                             default=AMBIX_CHANNEL_ORDER,
                             help="what channels 0-3 of the audio hold: 'ambix' = WYZX (default) "
                                  "or any 4 letters W, X, Y, Z, e.g. the order make "
                                  "channel-order recommends (docs/channel_order.md)")
    for command in (yt, eig, fol, sta):
        command.add_argument("--out", required=True, help="manifest path, e.g. data_manifests/x.jsonl")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point: write the manifest and, if any, ``<name>.problems.jsonl`` beside it.
    Errors take the shared path (one ``error:`` line, exit code 2, ``--debug``)."""
    from pipeline.config import run_main

    return run_main(_main, argv)


def _main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = _build_parser().parse_args(argv)
    if args.corpus == "yt360":
        records, problems = import_yt360(args.root, args.clip_list, args.train_ids, args.test_ids,
                                         workers=args.workers, channel_order=args.channel_order)
        data_root = args.root
    elif args.corpus == "eigenscape":
        records, problems = import_eigenscape(args.folder, segment_s=args.segment_s)
        data_root = args.folder
    elif args.corpus == "starss23":
        records, problems = import_starss23(args.root, workers=args.workers)
        records = [dataclasses.replace(r, channel_order=args.channel_order) for r in records]
        data_root = args.root
    else:
        records, problems = import_video_folder(args.folder, ambisonics=args.ambisonics,
                                                split_fractions=args.split, split_by=args.split_by,
                                                workers=args.workers)
        records = [dataclasses.replace(r, channel_order=args.channel_order) for r in records]
        data_root = args.folder
    problems_path = _problems_path(Path(args.out))
    if not records:
        if problems:
            write_problems(problems_path, problems)
        raise ManifestError(f"{args.out}: no usable records found under {data_root} "
                            f"({len(problems)} items skipped"
                            + (f", reasons in {problems_path}" if problems else "") +
                            "); nothing written")
    out = write_manifest(args.out, records)
    if problems:
        write_problems(problems_path, problems)
    elif problems_path.exists():
        problems_path.unlink()  # stale list from an earlier run
    print(f"wrote {len(records)} records to {out} (data root: {Path(data_root).resolve()})")
    if problems:
        print(f"{len(problems)} items skipped, reasons in {problems_path}")
    return 0

