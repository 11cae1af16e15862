"""Write the book's appendix ``book/reproduction-notes.md`` from the records in ``results/``.

The chapters speak to the reader; how each reference number was produced (hardware, budget, steps and what ended
training, wall time, git commit, date) is listed once, in this generated appendix
(:func:`mlcore.report.reproduction_notes_markdown`). Run it after adding or re-running a record::

    python tools/reproduction_notes.py            # rewrite book/reproduction-notes.md   (make notes)
    python tools/reproduction_notes.py --check    # exit 1 if the page is not what the records give
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PAGE = ROOT / "book" / "reproduction-notes.md"


def main(argv: list[str] | None = None) -> int:
    from mlcore.report import reproduction_notes_markdown
    from mlcore.results import atomic_write_text

    p = argparse.ArgumentParser(description="write book/reproduction-notes.md from results/*.json")
    p.add_argument("--results", default=str(ROOT / "results"), help="folder of records (default: results/)")
    p.add_argument("--out", default=str(PAGE), help="page to write (default: book/reproduction-notes.md)")
    p.add_argument("--check", action="store_true", help="only check that the page is up to date")
    args = p.parse_args(argv)
    text, out = reproduction_notes_markdown(args.results), Path(args.out)
    if args.check:
        if not out.exists() or out.read_text(encoding="utf-8") != text:
            print(f"{out} is not what the records give: run `python tools/reproduction_notes.py` (make notes)")
            return 1
        print(f"{out.name} is up to date")
        return 0
    atomic_write_text(out, text)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
