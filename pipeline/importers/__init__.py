"""One small recipe per corpus: scan a data folder, probe the media, return manifest records.

Every importer returns ``(records, problems)``: nothing is dropped silently. A problem is an
``ImportProblem(item, reason)`` (missing file, unreadable media, wrong channel count, ...); the
command line logs a summary and writes them beside the manifest as ``<name>.problems.jsonl``.
One module per corpus: :mod:`~pipeline.importers.yt360`, :mod:`~pipeline.importers.eigenscape`,
:mod:`~pipeline.importers.starss23` (also its layout and label reader),
:mod:`~pipeline.importers.folder` (your own clips); :mod:`~pipeline.importers.common` holds what
they share and :mod:`~pipeline.importers.cli` the command line::

    python -m pipeline.importers yt360 --root /data/yt360 --clip-list clips.txt \\
        --train-ids train.txt --test-ids test.txt --out data_manifests/yt360.jsonl \\
        [--channel-order ambix|yt360-note|WYZX|...]
    python -m pipeline.importers eigenscape --folder /data/eigenscape --out data_manifests/eigenscape.jsonl
    python -m pipeline.importers folder --folder /data/my360 --out data_manifests/my360.jsonl \\
        [--channel-order WYZX|...]
    python -m pipeline.importers starss23 --root /data/STARSS23 --out data_manifests/starss23.jsonl

Paths in the records are relative to the scanned root (the data root).
"""

from pipeline.importers.cli import main
from pipeline.importers.common import ImportProblem, write_problems
from pipeline.importers.eigenscape import (eigenscape_fold, eigenscape_fold_split,
                                           import_eigenscape, parse_eigenscape_name)
from pipeline.importers.folder import import_video_folder
from pipeline.importers.starss23 import import_starss23
from pipeline.importers.yt360 import (YT360_CHANNEL_ORDERS, import_yt360,
                                      parse_yt360_channel_order, parse_yt360_clip_list)

__all__ = [
    "ImportProblem",
    "import_yt360",
    "YT360_CHANNEL_ORDERS",
    "parse_yt360_channel_order",
    "import_eigenscape",
    "import_starss23",
    "import_video_folder",
    "eigenscape_fold",
    "eigenscape_fold_split",
    "parse_yt360_clip_list",
    "parse_eigenscape_name",
    "write_problems",
    "main",
]
