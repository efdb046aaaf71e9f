"""``python -m pipeline.importers``: :func:`pipeline.importers.cli.main`."""

import sys

from pipeline.importers.cli import main

if __name__ == "__main__":
    sys.exit(main())
