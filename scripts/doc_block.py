"""Replace a generated block of a Markdown document: the text between ``<!-- NAME:start -->`` and
``<!-- NAME:end -->``, so that a script can regenerate its table without touching the prose."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Callable, Optional, Sequence


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


def check_block_or_exit(parser: argparse.ArgumentParser, doc: Optional[str], name: str) -> None:
    """:func:`check_block` for a command line: a usage error (exit 2) before any measurement."""
    if doc:
        try:
            check_block(Path(doc), name)
        except ValueError as err:
            parser.error(str(err))


def labelled_paths(parser: argparse.ArgumentParser, items: list[str], what: str) -> dict[str, Path]:
    """``LABEL=PATH`` arguments as an ordered dict; a usage error (exit 2) for any other form."""
    paths = {}
    for item in items:
        label, sep, path = item.partition("=")
        if not sep or not label:
            parser.error(f"expected LABEL={what}, got {item!r}")
        paths[label] = Path(path)
    return paths


def labelled_table_main(argv: Optional[Sequence[str]], description: str, what: str, default_block: str,
                        make_table: Callable[[dict[str, Path]], str]) -> int:
    """The command line of a script that tables labelled files side by side: ``LABEL=PATH ...
    [--doc DOC [--block NAME]]``. The block is checked before the table is made; a missing or
    unreadable file is a usage error (exit 2, one line)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("items", nargs="+", metavar=f"LABEL={what}")
    parser.add_argument("--doc", help="also write the table into this document's block")
    parser.add_argument("--block", default=default_block, help="the block's name (default: %(default)s)")
    args = parser.parse_args(argv)
    paths = labelled_paths(parser, args.items, what)
    check_block_or_exit(parser, args.doc, args.block)
    try:
        publish(make_table(paths), args.doc, args.block)
    except (FileNotFoundError, ValueError) as err:  # json.JSONDecodeError is a ValueError
        parser.error(str(err))
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``python scripts/doc_block.py DOC NAME FILE``: FILE's text into DOC's NAME block, for shell
    scripts that keep a generated table in a file; ``--check DOC NAME`` only checks that the block
    is there. A missing block or file is a usage error (exit 2)."""
    parser = argparse.ArgumentParser(description="Write a file's text into a generated block of a Markdown document.")
    parser.add_argument("doc", help="the Markdown document")
    parser.add_argument("name", help="the block's name (<!-- NAME:start --> ... <!-- NAME:end -->)")
    parser.add_argument("file", nargs="?", help="the text to write (needed unless --check)")
    parser.add_argument("--check", action="store_true", help="only check that the block is there")
    args = parser.parse_args(argv)
    check_block_or_exit(parser, args.doc, args.name)
    if args.check:
        return 0
    if args.file is None or not Path(args.file).is_file():
        parser.error(f"file not found: {args.file}" if args.file else "FILE is needed unless --check")
    replace_block(Path(args.doc), args.name, Path(args.file).read_text().rstrip("\n"))
    print(f"wrote the {args.name} block of {args.doc}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
