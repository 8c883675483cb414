"""Build a Quarto-free HTML preview of the docs into _docs/.

Quarto cannot be installed on every machine. This script runs nbdev's own processing of the notebooks (the same
`_proc/` notebooks Quarto would render: hidden cells dropped, `show_doc` tables added, front matter from the title
cell), then renders each with nbconvert from its stored outputs, adds the title, a navigation bar and a banner that
says this is a preview, and writes one page per notebook plus index.html. The site settings (title, description)
come from the top-level _quarto.yml, the one source of the docs configuration.

Usage: python .ci/docs_preview.py [--out _docs]
"""
import argparse, html, json, re, shutil
from pathlib import Path

import nbformat
import yaml
from nbconvert import HTMLExporter
from nbconvert.preprocessors import TagRemovePreprocessor
from nbdev.config import get_config
from nbdev.quarto import nbdev_sidebar, refresh_quarto_yml
from nbdev.serve import proc_nbs

BANNER = ('<div style="background:#fff3cd;border-bottom:1px solid #e0c36a;padding:.5em 1em;font-family:sans-serif">'
          '<b>Quarto-free preview.</b> Built by <code>make docs</code> with nbdev\'s processing and nbconvert because '
          'Quarto is not installed here; the published site is rendered by Quarto (<code>nbdev_docs</code>). Equations show as LaTeX source here (MathJax needs a network).</div>')


def page_name(nb: Path) -> str:
    "Quarto's page name for a notebook: the numeric prefix dropped (`20_distortions.ipynb` -> `distortions.html`)."
    return re.sub(r"^\d+[a-z]?_", "", nb.stem) + ".html"


def front_matter(nb) -> dict:
    "The YAML front matter nbdev's processing put into the first raw cell (title, description)."
    for cell in nb.cells:
        if cell.cell_type == "raw" and cell.source.startswith("---"):
            return yaml.safe_load(cell.source.strip().strip("-")) or {}
    return {}


def main(out: str = "_docs"):
    cfg = get_config()
    site = yaml.safe_load((cfg.config_path / "_quarto.yml").read_text()).get("website", {})
    refresh_quarto_yml()
    getattr(nbdev_sidebar, '__wrapped__', nbdev_sidebar)()  # a call_parse CLI: call the function, not the parser
    proc = proc_nbs(n_workers=1)
    out = Path(out)
    if out.exists(): shutil.rmtree(out)
    out.mkdir(parents=True)
    nbs = sorted(proc.glob("*.ipynb"), key=lambda p: (p.stem != "index", p.stem))
    pages = []
    for p in nbs:
        nb = nbformat.read(p, as_version=4)
        fm = front_matter(nb)
        nb.cells = [c for c in nb.cells if not (c.cell_type == "raw" and c.source.startswith("---"))]
        for c in nb.cells:  # what Quarto does with cell directives: hide `echo: false` inputs, drop the `#|` lines
            if c.cell_type != "code": continue
            if re.search(r"^#\|\s*echo:\s*false", c.source, re.M): c.metadata.setdefault("tags", []).append("hide-input")
            c.source = "\n".join(l for l in c.source.splitlines() if not l.startswith("#|"))
        nb.cells = [c for c in nb.cells if c.cell_type != "code" or c.source.strip() or c.get("outputs")]
        pages.append((p, nb, fm.get("title", p.stem), fm.get("description", "")))
    nav = " · ".join(f'<a href="{page_name(p)}">{html.escape(t)}</a>' for p, _, t, _ in pages)
    exporter = HTMLExporter(template_name="lab")
    exporter.register_preprocessor(TagRemovePreprocessor(remove_input_tags={"hide-input"}, enabled=True), enabled=True)
    manifest = []
    for p, nb, title, desc in pages:
        body, _ = exporter.from_notebook_node(nb)
        body = body.replace('{target="_blank" style="float:right; font-size:smaller"}', "")  # Quarto-only attribute
        header = (f'{BANNER}<nav style="padding:.5em 1em;font-family:sans-serif;border-bottom:1px solid #ddd">'
                  f'<b>{html.escape(site.get("title", cfg.lib_name))}</b> — {nav}</nav>'
                  f'<header style="padding:0 1em"><h1 class="title">{html.escape(title)}</h1>'
                  f'<p class="description"><i>{html.escape(desc)}</i></p></header>')
        body = re.sub(r"<title>.*?</title>", f"<title>{html.escape(title)}</title>", body, count=1, flags=re.S)
        body = re.sub(r"(<body[^>]*>)", lambda m: m.group(1) + header, body, count=1)
        name = "index.html" if p.stem == "index" else page_name(p)
        (out / name).write_text(body)
        n_figs = sum(1 for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
                     if {"image/png", "image/jpeg"} & set(o.get("data", {})))
        manifest.append({"notebook": p.name, "page": name, "title": title, "figures": n_figs})
    (out / "preview.json").write_text(json.dumps(manifest, indent=1))
    print(f"Quarto-free preview: {len(manifest)} pages in {out}/ (open {out}/index.html)")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="_docs", help="output folder")
    main(ap.parse_args().out)
