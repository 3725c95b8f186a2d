"""Replace a generated block of a Markdown document: the text between ``<!-- NAME:start -->`` and
``<!-- NAME:end -->``, so that a script can regenerate its table without touching the prose."""
from __future__ import annotations

from pathlib import Path
from typing import Optional


def check_block(doc: Path, name: str) -> str:
    """``doc``'s text; ValueError when the file or its ``name`` markers are missing, so that a script
    can fail before its (long) measurement rather than after it."""
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    content = doc.read_text() if doc.is_file() else ""
    if start not in content or end not in content:
        raise ValueError(f"{doc} has no {start} ... {end} block")
    return content


def replace_block(doc: Path, name: str, text: str) -> None:
    """Write ``text`` between the ``name`` markers of ``doc``; ValueError when the markers are missing."""
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    content = check_block(doc, name)
    head, rest = content.split(start, 1)
    doc.write_text(head + start + "\n" + text + "\n" + end + rest.split(end, 1)[1])


def publish(text: str, doc: Optional[str], name: str) -> None:
    """Print a generated table and, when ``doc`` is given, write it into that file's ``name`` block."""
    print(text)
    if doc:
        replace_block(Path(doc), name, text)
        print(f"wrote the {name} block of {doc}")
