"""The `mprobe` console script: `main` behind a start-up guard.

Importing the command line takes a second or more (torch, scikit-learn, plotly). A Ctrl-C
in that time would print a Python traceback from somewhere inside an import; here it
prints one line and exits with code 130, as a Ctrl-C during a command does. Nothing has
been written at that point.
"""

from __future__ import annotations

import os
import signal
import sys

STARTUP_INTERRUPTED = b"interrupted during start-up; nothing was written.\n"


def _interrupted_at_startup(signum, frame) -> None:
    os.write(2, STARTUP_INTERRUPTED)
    os._exit(130)


def run() -> None:
    """Import the command line with SIGINT answered by one line and exit 130, then run it."""
    previous = signal.signal(signal.SIGINT, _interrupted_at_startup)
    from .main import main

    signal.signal(signal.SIGINT, previous)
    sys.exit(main())


if __name__ == "__main__":
    run()
