"""The program's name as the user typed it, for usage lines and messages."""

from __future__ import annotations

import sys
from pathlib import Path


def invoked_as(module: str) -> str:
    """``testbed-proxy`` when run as that console script, else ``python -m MODULE``."""
    script = Path(sys.argv[0]).name
    return script if script.startswith("testbed-") else f"python -m {module}"
