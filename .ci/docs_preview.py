"""Build a Quarto-free HTML preview of the docs into _docs/: a site you can browse offline.

Quarto cannot be installed on every machine. This script runs nbdev's own processing of the notebooks (the same
`_proc/` notebooks Quarto would render: hidden cells dropped, `show_doc` tables added, front matter from the title
cell), then renders each with nbconvert from its stored outputs and lays the pages out as a site: a sidebar from
`nbs/sidebar.yml` (the tutorials, then the API), a table of contents per page (to the page's `toc-depth`), equations
typeset by a local copy of MathJax 3 (SVG output; from the pip package `django-static-mathjax`, which holds MathJax's files and nothing else), so
that nothing is fetched from a network when a page is viewed, no `In`/`Out` prompts, markdown links in signatures
turned into links, links between notebooks pointed at their pages, and each interactive explorer replaced by a note
(its static figure is on the page), and the code of each `#| code-fold: true` cell folded under a "Code" summary
that opens on a click, as Quarto folds it. The site settings (title, description) come from the top-level _quarto.yml, the
one source of the docs configuration.

Usage: python .ci/docs_preview.py [--out _docs]
"""
import argparse, html, json, os, re, shutil
from pathlib import Path, PurePosixPath

import mathjax  # the pip package django-static-mathjax: MathJax 3.2.2's files, nothing else (no Django)
import nbformat
import yaml
from nbconvert import HTMLExporter
from nbconvert.preprocessors import TagRemovePreprocessor
from nbdev.config import get_config
from nbdev.quarto import nbdev_sidebar, refresh_quarto_yml
from nbdev.serve import proc_nbs

BANNER = ('<div id="banner"><b>Quarto-free preview.</b> Built by <code>make docs</code> with nbdev\'s processing and '
          'nbconvert because Quarto is not installed here; the published site is rendered by Quarto '
          '(<code>nbdev_docs</code>).</div>')
WIDGET = "application/vnd.jupyter.widget-view+json"
WIDGET_NOTE = ('<div class="explorer-note">Interactive explorer: open this notebook in JupyterLab (<code>make lab</code>) '
               'to use its controls. The figure above is the same explorer, drawn once.</div>')
MATHJAX_CONFIG = ("<script>window.MathJax = {tex: {inlineMath: [['$', '$'], ['\\\\(', '\\\\)']], processEscapes: true, "
                  "tags: 'ams'}, svg: {fontCache: 'global'}, options: {enableMenu: false}};</script>")  # before the loader
MATHJAX_FILES = Path(mathjax.__file__).parent / "static" / "mathjax" / "es5"  # tex-svg.js: SVG output, no fonts to fetch
CSS = """
body.jp-Notebook { margin: 0; padding: 0; }
#banner { background: #fff3cd; border-bottom: 1px solid #e0c36a; padding: .4em 1em; font: 13px sans-serif; }
#topbar { background: #2780e3; color: white; padding: .55em 1em; font: 600 17px sans-serif; }
#topbar a { color: white; text-decoration: none; }
#topbar span { font-weight: 400; font-size: 13px; margin-left: 1em; opacity: .9; }
#layout { display: flex; align-items: flex-start; }
#sidebar { position: sticky; top: 0; flex: 0 0 250px; height: 100vh; overflow-y: auto; padding: 1em .8em;
           box-sizing: border-box; border-right: 1px solid #e5e5e5; font: 14px sans-serif; background: #fafafa; }
#sidebar ul { list-style: none; padding-left: .8em; margin: .2em 0; }
#sidebar > ul { padding-left: 0; }
#sidebar li { margin: .25em 0; }
#sidebar .section { font-weight: 600; color: #333; margin-top: .7em; }
#sidebar a { color: #1a5fb4; text-decoration: none; }
#sidebar a.active { font-weight: 700; color: #000; }
#content { flex: 1 1 auto; min-width: 0; padding: 0 1.5em 3em; }
#content header h1.title { font: 600 2em sans-serif; margin: .6em 0 .2em; }
#content header .description { color: #555; margin-top: 0; }
#toc { position: sticky; top: 0; flex: 0 0 210px; max-height: 100vh; overflow-y: auto; padding: 1em .8em;
       box-sizing: border-box; font: 13px sans-serif; }
#toc ul { list-style: none; padding-left: 0; margin: 0; }
#toc li.h3 { padding-left: 1em; }
#toc a { color: #444; text-decoration: none; }
#toc .toc-title { font-weight: 600; margin-bottom: .4em; }
details.code-fold > summary { cursor: pointer; font: 13px sans-serif; color: #555; margin: .3em 0; }
.explorer-note { border-left: 3px solid #2780e3; background: #eef5fd; padding: .4em .8em; font: 13px sans-serif; }
.jp-Cell { padding-left: 0 !important; }
.jp-InputArea-editor pre, .jp-OutputArea-output pre { white-space: pre-wrap; overflow-wrap: anywhere; }
@media (max-width: 1100px) { #toc { display: none; } }
"""


def page_name(nb: str) -> str:
    "The page of a notebook (path relative to nbs/): numeric prefix dropped, as Quarto's nbdev pages are."
    p = PurePosixPath(nb)
    return str(p.with_name(re.sub(r"^\d+[a-z]?_", "", p.stem) + ".html"))


def front_matter(nb) -> dict:
    "The YAML front matter nbdev's processing put into the first raw cell (title, description)."
    for cell in nb.cells:
        if cell.cell_type == "raw" and cell.source.startswith("---"):
            return yaml.safe_load(cell.source.strip().strip("-")) or {}
    return {}


def sidebar_notebooks(contents) -> list[str]:
    "Every notebook listed in a sidebar's `contents`, in order (sections flattened)."
    out = []
    for item in contents:
        if isinstance(item, str): out.append(item)
        elif isinstance(item, dict) and "section" in item: out += sidebar_notebooks(item.get("contents", []))
        elif isinstance(item, dict) and "href" in item: out.append(item["href"])
    return out


def rel(target: str, here: str) -> str:
    "Link from page `here` to page `target` (both relative to the site root)."
    return os.path.relpath(target, os.path.dirname(here) or ".").replace(os.sep, "/")


def render_sidebar(contents, titles: dict, here: str) -> str:
    "The sidebar's nested list, with the current page marked."
    items = []
    for item in contents:
        if isinstance(item, dict) and "section" in item:
            items.append(f'<li><div class="section">{html.escape(item["section"])}</div>'
                         f'{render_sidebar(item.get("contents", []), titles, here)}</li>')
        else:
            nb = item if isinstance(item, str) else item["href"]
            page = page_name(nb)
            cls = ' class="active"' if page == here else ""
            items.append(f'<li><a href="{rel(page, here)}"{cls}>{html.escape(titles.get(nb, nb))}</a></li>')
    return "<ul>" + "".join(items) + "</ul>"


def render_toc(body: str, depth: int = 3) -> str:
    "A table of contents from the page's headings (nbconvert gives them ids) from h2 down to h`depth`: the page's"
    " `toc-depth` (front matter), Quarto's default 3."
    heads = [h for h in re.findall(r'<h([2-6]) id="([^"]+)"[^>]*>(.*?)</h\1>', body, flags=re.S) if int(h[0]) <= depth]
    if not heads: return ""
    items = "".join(f'<li class="h{lvl}"><a href="#{hid}">{re.sub(r"<[^>]+>|¶", "", text).strip()}</a></li>'
                    for lvl, hid, text in heads)
    return f'<nav id="toc"><div class="toc-title">On this page</div><ul>{items}</ul></nav>'


def fix_links(body: str, nb: str, here: str, site_url: str) -> str:
    "Markdown links left in signatures become links; links to notebooks and to the published site become local."
    body = re.sub(r"\[`([^`\]]+)`\]\(([^)\s]+)\)", r'<a href="\2"><code>\1</code></a>', body)
    body = re.sub(r"\[([^\[\]<>]+)\]\((https?://[^)\s]+)\)", r'<a href="\2">\1</a>', body)
    if site_url: body = body.replace(f'href="{site_url}/', 'href="' + "../" * here.count("/"))
    def local(m):
        target = os.path.normpath(os.path.join(os.path.dirname(nb), m.group(1))).replace(os.sep, "/")
        return f'href="{rel(page_name(target), here)}{m.group(2) or ""}"'
    return re.sub(r'href="(?!https?:)([^"#]+\.ipynb)(#[^"]*)?"', local, body)


FOLD_TAG = "code-fold"  # the cell tag that marks a `#| code-fold: true` cell; nbconvert's lab template makes it a class


def _div_end(html_text: str, start: int) -> int:
    "The index just after the `</div>` that closes the `<div` opened at `start`."
    depth = 0
    for m in re.compile(r"<div\b|</div>").finditer(html_text, start):
        depth += 1 if m.group() == "<div" else -1
        if depth == 0: return m.end()
    raise ValueError(f"unclosed <div> at {start}")


def fold_code(body: str) -> str:
    "Wrap the input of each cell tagged `code-fold` in a closed `<details>`, as Quarto's `code-fold: true` does."
    out, pos = [], 0
    for m in re.finditer(rf'<div class="[^"]*\bcelltag_{FOLD_TAG}\b[^"]*"[^>]*>\s*(<div class="jp-Cell-inputWrapper")', body):
        start = m.start(1)
        end = _div_end(body, start)
        out += [body[pos:start], '<details class="code-fold"><summary>Code</summary>', body[start:end], "</details>"]
        pos = end
    return "".join(out) + body[pos:]


def drop_widgets(nb) -> None:
    "Replace each ipywidgets output (a live explorer, nothing to show in a static page) with a note."
    nb.metadata.pop("widgets", None)
    for c in nb.cells:
        if c.cell_type != "code": continue
        outs = []
        for o in c.get("outputs", []):
            if WIDGET in o.get("data", {}):
                outs.append(nbformat.v4.new_output("display_data", data={"text/html": WIDGET_NOTE}))
            else: outs.append(o)
        c.outputs = outs


def main(out: str = "_docs"):
    cfg = get_config()
    site = yaml.safe_load((cfg.config_path / "_quarto.yml").read_text()).get("website", {})
    refresh_quarto_yml()
    getattr(nbdev_sidebar, '__wrapped__', nbdev_sidebar)()  # a call_parse CLI: call the function, not the parser
    sidebar = yaml.safe_load((cfg.nbs_path / "sidebar.yml").read_text())["website"]["sidebar"]["contents"]
    proc = proc_nbs(n_workers=1)
    out = Path(out)
    if out.exists(): shutil.rmtree(out)
    out.mkdir(parents=True)
    shutil.copytree(MATHJAX_FILES, out / "mathjax", ignore=shutil.ignore_patterns("sre", "chtml", "*chtml*.js", "*-full*.js"))
    if (cfg.nbs_path / "images").is_dir(): shutil.copytree(cfg.nbs_path / "images", out / "images")  # figures the markdown links, as Quarto copies them
    pages = []
    for p in sorted(proc.rglob("*.ipynb"), key=lambda p: (p.stem != "index", str(p))):
        if any(part.startswith((".", "_")) for part in p.relative_to(proc).parts[:-1]): continue
        rel_nb = str(p.relative_to(proc).as_posix())
        nb = nbformat.read(p, as_version=4)
        fm = front_matter(nb)
        nb.cells = [c for c in nb.cells if not (c.cell_type == "raw" and c.source.startswith("---"))]
        for c in nb.cells:  # what Quarto does with cell directives: hide `echo: false` inputs, fold `code-fold: true`, drop the `#|` lines
            if c.cell_type != "code": continue
            if re.search(r"^#\|\s*echo:\s*false", c.source, re.M): c.metadata.setdefault("tags", []).append("hide-input")
            if re.search(r"^#\|\s*code-fold:\s*true", c.source, re.M): c.metadata.setdefault("tags", []).append(FOLD_TAG)
            c.source = "\n".join(l for l in c.source.splitlines() if not l.startswith("#|"))
        nb.cells = [c for c in nb.cells if c.cell_type != "code" or c.source.strip() or c.get("outputs")]
        drop_widgets(nb)
        pages.append((rel_nb, nb, fm.get("title", p.stem), fm.get("description", ""), int(fm.get("toc-depth", 3))))
    titles = {nb: title for nb, _, title, _, _ in pages}
    site_url = (cfg.doc_host.rstrip("/") + "/" + cfg.doc_baseurl.strip("/")).rstrip("/")
    manifest, exporters = [], {}
    for rel_nb, nb, title, desc, toc_depth in pages:
        here = "index.html" if rel_nb == "index.ipynb" else page_name(rel_nb)
        mathjax = rel("mathjax/tex-svg.js", here)
        if mathjax not in exporters:  # one per folder depth: an exporter compiles its templates once (~0.25 s a page)
            exporters[mathjax] = HTMLExporter(template_name="lab", exclude_input_prompt=True, exclude_output_prompt=True,
                                              mathjax_url=mathjax)
            exporters[mathjax].register_preprocessor(TagRemovePreprocessor(remove_input_tags={"hide-input"}, enabled=True),
                                                     enabled=True)
        body, _ = exporters[mathjax].from_notebook_node(nb)
        body = fold_code(body)
        body = body.replace('{target="_blank" style="float:right; font-size:smaller"}', "")  # Quarto-only attribute
        body = re.sub(r'<script src="https?://[^"]*"[^>]*>\s*</script>', "", body)  # require.js etc.: nothing remote
        body = fix_links(body, rel_nb, here, site_url)
        main_html = re.search(r"<body[^>]*>(.*)</body>", body, flags=re.S).group(1)
        header = (f'<header><h1 class="title">{html.escape(title)}</h1>'
                  f'<p class="description"><i>{html.escape(desc)}</i></p></header>')
        layout = (f'{BANNER}<div id="topbar"><a href="{rel("index.html", here)}">{html.escape(site.get("title", cfg.lib_name))}</a>'
                  f'<span>{html.escape(site.get("description", ""))}</span></div>'
                  f'<div id="layout"><nav id="sidebar">{render_sidebar(sidebar, titles, here)}</nav>'
                  f'<div id="content">{header}{main_html}</div>{render_toc(main_html, toc_depth)}</div>')
        body = body.replace(main_html, layout, 1)
        body = re.sub(r"<title>.*?</title>", f"<title>{html.escape(title)}</title>", body, count=1, flags=re.S)
        body = re.sub(r'<script type="text/x-mathjax-config">.*?</script>', "", body, flags=re.S)  # MathJax 2's; unused
        body = re.sub(r"(<head[^>]*>)", lambda m: m.group(1) + MATHJAX_CONFIG, body, count=1)
        body = body.replace("</head>", f"<style>{CSS}</style></head>", 1)
        (out / here).parent.mkdir(parents=True, exist_ok=True)
        (out / here).write_text(body)
        n_figs = sum(1 for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
                     if {"image/png", "image/jpeg"} & set(o.get("data", {})))
        manifest.append({"notebook": rel_nb, "page": here, "title": title, "figures": n_figs})
    (out / "preview.json").write_text(json.dumps(manifest, indent=1))
    print(f"Quarto-free preview: {len(manifest)} pages in {out}/ (open {out}/index.html)")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="_docs", help="output folder")
    main(ap.parse_args().out)
