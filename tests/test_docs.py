"""The Quarto-free docs preview: a page per notebook (tutorials included), laid out as a site that works offline."""
import json, re, sys
from configparser import ConfigParser

import nbformat
import pytest
import yaml

from conftest import ROOT, run

sys.path.insert(0, str(ROOT / ".ci"))
from docs_preview import fold_code, page_name, sidebar_notebooks  # noqa: E402


def notebook_title(nb) -> str:
    first = next(c for c in nb.cells if c.cell_type == "markdown")
    return re.match(r"#\s+(.+)", first.source).group(1).strip()


def all_notebooks() -> list[str]:
    "Every notebook under nbs/, as a path relative to nbs/ (folders starting with . or _ skipped, as nbdev does)."
    nbs = ROOT / "nbs"
    return sorted(p.relative_to(nbs).as_posix() for p in nbs.rglob("*.ipynb")
                  if not any(part.startswith((".", "_")) for part in p.relative_to(nbs).parts))


def test_preview_has_a_page_per_notebook(site):
    manifest = {m["notebook"]: m for m in json.loads((site / "preview.json").read_text())}
    assert set(manifest) == set(all_notebooks())
    for name in all_notebooks():
        nb = nbformat.read(ROOT / "nbs" / name, as_version=4)
        html = (site / manifest[name]["page"]).read_text()
        title = notebook_title(nb)
        assert f'<h1 class="title">{title}</h1>' in html, (name, title)
        assert "Quarto-free preview" in html
        figures = sum(1 for c in nb.cells if c.cell_type == "code"
                      for o in c.get("outputs", []) if {"image/png", "image/jpeg"} & set(o.get("data", {})))
        embedded = html.count("data:image/png;base64,") + html.count("data:image/jpeg;base64,")
        assert embedded >= figures, (name, figures, embedded)
    assert (site / "index.html").exists()
    # the pages that teach with pictures do carry them, and every tutorial draws its explorer
    assert manifest["20_distortions.ipynb"]["figures"] >= 1 and manifest["52_diagnostics.ipynb"]["figures"] >= 1
    for name in all_notebooks():
        if name.startswith("tutorials/"): assert manifest[name]["figures"] >= 1, name


def test_pages_read_as_a_site(site):
    "No prompts, no remote scripts, a local MathJax, signatures without raw markdown, source links to the repository."
    cfg = ConfigParser(); cfg.read(ROOT / "settings.ini")
    git_url = cfg["DEFAULT"]["git_url"]
    assert (site / "mathjax" / "tex-svg.js").exists()
    n_source = 0
    for page in json.loads((site / "preview.json").read_text()):
        html = (site / page["page"]).read_text()
        name = page["notebook"]
        assert not re.search(r"(In|Out)\s*\[\s*\d*\s*\]:", re.sub(r"<(script|style)\b.*?</\1>", "", html, flags=re.S)), name
        assert not re.search(r'<script[^>]+src="https?://', html), (name, "a script from the network")
        assert re.search(r'<script[^>]+src="[./]*mathjax/tex-svg\.js"', html), (name, "no local MathJax")
        assert not re.search(r"\]\((https?://|#)", html), (name, "a markdown link left raw")
        assert 'id="sidebar"' in html and ('id="toc"' in html or name == "index.ipynb"), name
        assert "application/vnd.jupyter.widget-view+json" not in html, name
        sources = re.findall(r'<a href="([^"]+)"[^>]*>source</a>', html)
        assert all(s.startswith(git_url + "/blob/") for s in sources), (name, sources[:3])
        n_source += len(sources)
    assert n_source > 50  # the API pages link their definitions to the repository


def test_links_between_pages_resolve(site):
    "Every relative link (sidebar, tutorials' links to other notebooks, signature links) points at a page that exists."
    for page in json.loads((site / "preview.json").read_text()):
        html = (site / page["page"]).read_text()
        for href in re.findall(r'href="([^"#:]+\.html)(?:#[^"]*)?"', html):
            assert (site / page["page"]).parent.joinpath(href).resolve().exists(), (page["page"], href)


def test_sidebar_lists_every_notebook_once_tutorials_first(site):  # after the preview build, which rewrites nbs/sidebar.yml
    contents = yaml.safe_load((ROOT / "nbs" / "sidebar.yml").read_text())["website"]["sidebar"]["contents"]
    listed = sidebar_notebooks(contents)
    assert sorted(listed) == all_notebooks(), set(listed) ^ set(all_notebooks())
    assert len(listed) == len(set(listed))
    assert listed[0] == "index.ipynb" and contents[1]["section"] == "Tutorials"
    assert all(nb.startswith("tutorials/") for nb in sidebar_notebooks(contents[1]["contents"]))


def test_fold_code():
    "A `code-fold` cell's input goes into a closed <details>; its output and the other cells stay as they were."
    from nbconvert import HTMLExporter
    nb = nbformat.v4.new_notebook()
    folded = nbformat.v4.new_code_cell("plt.plot([1, 2])", metadata={"tags": ["code-fold"]})
    folded.outputs = [nbformat.v4.new_output("execute_result", data={"text/plain": "a figure"}, execution_count=1)]
    nb.cells = [folded, nbformat.v4.new_code_cell("logic = 1")]
    body = fold_code(HTMLExporter(template_name="lab").from_notebook_node(nb)[0])
    inside = re.findall(r'<details class="code-fold"><summary>Code</summary>(.*?)</details>', body, flags=re.S)
    assert len(inside) == 1 and "plt" in inside[0] and "a figure" not in inside[0] and "logic" not in inside[0]
    assert body.count("<div") == body.count("</div>")


def test_folded_cells_are_folded_on_their_pages(site):
    "Every `#| code-fold: true` cell of a notebook is one folded block on its page (the tutorials' plotting code)."
    manifest = {m["notebook"]: m["page"] for m in json.loads((site / "preview.json").read_text())}
    n_folded = 0
    for name in all_notebooks():
        nb = nbformat.read(ROOT / "nbs" / name, as_version=4)
        want = sum(1 for c in nb.cells if c.cell_type == "code" and re.search(r"^#\|\s*code-fold:\s*true", c.source, re.M))
        html = (site / manifest[name]).read_text()
        assert html.count('<details class="code-fold">') == want, (name, want)
        n_folded += want
    assert n_folded >= 6  # the tutorials fold their explorers' plotting and widget code


def test_page_names():
    assert page_name("20_distortions.ipynb") == "distortions.html"
    assert page_name("tutorials/01_why_networks_fail.ipynb") == "tutorials/why_networks_fail.html"


def test_quarto_config_has_one_source():
    link = ROOT / "nbs" / "_quarto.yml"
    assert link.is_symlink() and link.resolve() == (ROOT / "_quarto.yml").resolve()


def test_reproduce_pages_outline_two_levels_nested():
    "Issue #25: each reproduce page's outline stops at h2 (`toc-depth: 2` in its front matter) and its headings nest:"
    " no level skipped, neither in its text nor in the headings its cells print (a result set's under its section)."
    for name in ("70_reproduce.ipynb", "72_reproduce.history.ipynb"):
        nb = nbformat.read(ROOT / "nbs" / name, as_version=4)
        fm = next((yaml.safe_load(c.source.strip().strip("-")) for c in nb.cells if c.cell_type == "raw" and c.source.startswith("---")), {})
        assert fm.get("toc-depth") == 2, (name, fm)
        texts = []
        for c in nb.cells:
            if c.cell_type == "markdown": texts.append(c.source)
            texts += ["".join(o.get("data", {}).get("text/markdown", "")) for o in c.get("outputs", [])]
        levels = [len(h) for t in texts for h in re.findall(r"^(#+) ", re.sub(r"```.*?```", "", t, flags=re.S), flags=re.M)]
        assert levels[0] == 1 and levels.count(1) == 1, (name, "one title, first")
        assert all(b <= a + 1 for a, b in zip(levels, levels[1:])), (name, "a heading skips a level", levels)
        assert sum(1 for lvl in levels if lvl == 2) <= 12, (name, "too many sections for one outline")


def test_docs_build_runs_no_work_cells():
    """nbdev's docs processing (`proc_nbs`, which the preview and Quarto builds run) executes, in every notebook that
    exports, each cell holding an `import` anywhere in it. A cell that imports and then trains is trained again by every
    docs build: 41_lir's did, 123 of the preview's 153 s on a fresh clone. Imports belong in the notebook's first hidden
    cell (its setup); any other cell with an import holds imports only."""
    import ast
    offenders = []
    for name in all_notebooks():
        nb = nbformat.read(ROOT / "nbs" / name, as_version=4)
        code = [c for c in nb.cells if c.cell_type == "code" and c.source.strip()]
        exports = lambda c: re.search(r"^#\|\s*(export|exports|exporti|exec_doc)\b", c.source, re.M)
        if not any(exports(c) for c in code): continue  # nbdev runs nothing in a notebook without exports
        setup = next((c for c in code if c.source.startswith("#| hide") and re.search(r"^(import|from) ", c.source, re.M)), None)
        for i, c in enumerate(code):
            if exports(c) or c is setup or "nbdev_export()" in c.source: continue
            tree = ast.parse("\n".join(l for l in c.source.splitlines() if not l.lstrip().startswith(("%", "!"))))
            if not any(isinstance(n, (ast.Import, ast.ImportFrom)) for n in ast.walk(tree)): continue
            only_imports = lambda n: isinstance(n, (ast.Import, ast.ImportFrom)) or (
                isinstance(n, ast.Try) and all(only_imports(m) or isinstance(m, ast.Assign) for m in n.body + sum((h.body for h in n.handlers), [])))
            if not all(only_imports(n) for n in tree.body): offenders.append((name, c.source.splitlines()[0][:80]))
    assert not offenders, offenders
