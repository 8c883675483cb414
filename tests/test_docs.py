"""The Quarto-free docs preview: every notebook gets a page with its title and its figures."""
import json, re
from pathlib import Path

import nbformat

from conftest import ROOT, run
import sys


def notebook_title(nb) -> str:
    first = next(c for c in nb.cells if c.cell_type == "markdown")
    return re.match(r"#\s+(.+)", first.source).group(1).strip()


def test_preview_has_a_page_per_notebook(tmp_path):
    out = tmp_path / "_docs"
    r = run([sys.executable, ".ci/docs_preview.py", "--out", str(out)], timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    manifest = {m["notebook"]: m for m in json.loads((out / "preview.json").read_text())}
    notebooks = sorted((ROOT / "nbs").glob("*.ipynb"))
    assert set(manifest) == {p.name for p in notebooks}
    for p in notebooks:
        nb = nbformat.read(p, as_version=4)
        page = out / manifest[p.name]["page"]
        html = page.read_text()
        title = notebook_title(nb)
        assert f'<h1 class="title">{title}</h1>' in html, (p.name, title)
        assert "Quarto-free preview" in html
        figures = sum(1 for c in nb.cells if c.cell_type == "code"
                      for o in c.get("outputs", []) if {"image/png", "image/jpeg"} & set(o.get("data", {})))
        embedded = html.count("data:image/png;base64,") + html.count("data:image/jpeg;base64,")
        assert embedded >= figures, (p.name, figures, embedded)
    assert (out / "index.html").exists()
    # the pages that teach with pictures do carry them
    assert manifest["20_distortions.ipynb"]["figures"] >= 1 and manifest["52_diagnostics.ipynb"]["figures"] >= 1


def test_quarto_config_has_one_source():
    link = ROOT / "nbs" / "_quarto.yml"
    assert link.is_symlink() and link.resolve() == (ROOT / "_quarto.yml").resolve()
