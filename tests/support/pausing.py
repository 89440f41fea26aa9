"""Stop a process at a named checkpoint (deltacrown.signals) so a test can SIGKILL it there.

`pause_at(point, folder)` connects a receiver to `checkpoint`: when this process,
or a work horse forked from it, reaches `point`, it writes its pid to
<folder>/<point>.reached and waits for <folder>/<point>.release (at most
`timeout` seconds, then it raises rather than go on). ":" in a point's name
becomes "-" in file names (`pause_file`). Other points pass at once.

`python -m tests.support.pausing POINT FOLDER [QUEUE ...]` runs worker.py's
`main` with that receiver connected: a real worker that stops at POINT.
Production code never imports this module; without it `checkpoint` has no receiver.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

from deltacrown.signals import checkpoint
from tests.support.processes import wait_for


def pause_file(point: str, suffix: str, folder: str | Path) -> Path:
    return Path(folder) / f"{point.replace(':', '-')}.{suffix}"


def pause_at(point: str, folder: str | Path, timeout: float = 300.0):
    """Make this process (and its forks) wait at `point`; returns the connected receiver."""

    def pause(name, **_):
        if name != point:
            return
        pause_file(point, "reached", folder).write_text(str(os.getpid()))
        release = pause_file(point, "release", folder)
        wait_for(release.exists, timeout=timeout, message=f"test pause point {point!r} to be released")

    checkpoint.connect(pause, weak=False)
    return pause


def main(argv: list[str]) -> int:
    point, folder, *queues = argv
    pause_at(point, folder)
    import worker  # the project root is the working directory, so on sys.path under -m

    return worker.main(queues)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
