"""Where the documents shipped with the package are, so that ``--help`` can point at them.

PROTOCOL.md and FAULTS.md are package data (pyproject.toml): a help text
names the file where this installation has it, in a checkout or an installed
wheel alike.
"""

from __future__ import annotations

from pathlib import Path


def doc_path(name: str) -> str:
    """The absolute path of ``transports/NAME`` as installed, e.g. ``doc_path("FAULTS.md")``."""
    return str(Path(__file__).with_name(name))
