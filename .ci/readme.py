"""Make README.md from nbs/index.ipynb (nbdev's readme notebook) without Quarto, or check it is current.

nbdev_readme needs Quarto; nbconvert's markdown exporter gives the same text from the notebook's markdown cells.
Usage: python .ci/readme.py [--check]
"""
import argparse, sys
from pathlib import Path

import nbformat
from nbconvert import MarkdownExporter

ROOT = Path(__file__).resolve().parents[1]
MAX_WORDS = 2000  # the README's first screen answers; tables and detail live on the docs pages (issue #35)


def render() -> str:
    nb = nbformat.read(ROOT / "nbs" / "index.ipynb", as_version=4)
    nb.cells = [c for c in nb.cells if not c.source.lstrip().startswith("#|")]
    body, _ = MarkdownExporter().from_notebook_node(nb)
    note = "<!-- Generated from nbs/index.ipynb by `make readme`: edit the notebook, not this file. -->\n\n"
    body = body.replace("](images/", "](nbs/images/")  # figures live beside the notebook; the README sits one folder up
    return note + body.strip() + "\n"


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="fail if README.md differs from the notebook")
    args = ap.parse_args()
    text, readme = render(), ROOT / "README.md"
    if args.check:
        if readme.read_text() != text:
            sys.exit("README.md is out of date with nbs/index.ipynb: run `make readme` and commit")
        if (n := len(text.split())) >= MAX_WORDS:
            sys.exit(f"README.md has {n:,} words (as `wc -w` counts them), {MAX_WORDS:,} or more: move detail from "
                     "nbs/index.ipynb to a docs page")
        print(f"README.md is current ({n:,} words)")
    else:
        readme.write_text(text)
        print(f"wrote {readme}")
