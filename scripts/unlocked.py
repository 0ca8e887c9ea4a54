"""Print the installed distributions that a lock file does not name (scripts/setup.sh
removes them), space-separated; the project itself and pip are never listed.

    python scripts/unlocked.py requirements.lock
"""

from __future__ import annotations

import re
import sys
from importlib import metadata
from pathlib import Path

KEEP = {"dualserve", "pip"}


def canonical(name: str) -> str:
    """PEP 503's normalized name: runs of -, _ and . become one -, lower case."""
    return re.sub(r"[-_.]+", "-", name).lower()


def locked(lock: Path) -> set[str]:
    """Names pinned in a pip requirements file (`name==version` lines, comments skipped)."""
    names = set()
    for line in lock.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line and not line.startswith(("#", "-")):
            names.add(canonical(re.split(r"[=<>!~;\[ ]", line, maxsplit=1)[0]))
    return names


def main(lock: str) -> None:
    installed = {canonical(d.metadata["Name"]) for d in metadata.distributions()}
    print(" ".join(sorted(installed - locked(Path(lock)) - KEEP)))


if __name__ == "__main__":
    main(sys.argv[1])
