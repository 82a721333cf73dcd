"""Shared pieces of the exploration figures: the file-only pyplot, file names, saving, the index page."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Sequence

from mgr_tf.core.io import write_text
from mgr_tf.core.plotting import plt


def pyplot():
    """matplotlib.pyplot on the file-only Agg backend."""
    return plt


def slug(name: str) -> str:
    """A file-name-safe form of a class name ("Hip-Hop" -> "hip-hop")."""
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "class"


def save(fig, path: Path) -> Path:
    """Saves and closes a figure."""
    fig.savefig(path, dpi=110, bbox_inches="tight")
    pyplot().close(fig)
    return path


def write_index(out: Path, title: str, sections: Sequence[tuple[str, str, Sequence[str]]]) -> Path:
    """Writes `out/index.md`: a title, then per section its heading, text and images (file names in `out`)."""
    lines = [f"# {title}", ""]
    for heading, text, images in sections:
        lines += [f"## {heading}", ""] + ([text, ""] if text else [])
        for image in images:
            lines += [f"![{Path(image).stem}]({image})", ""]
    path = out / "index.md"
    write_text(path, "\n".join(lines))
    return path
