"""The docs preview as a reader sees it: every page opened in headless Chromium.

Builds the Quarto-free preview (`.ci/docs_preview.py`), opens each page in Debian's `chromium` driven by Playwright's
Python package (the system browser: Playwright's own browser downloads are never used), and checks that the page
logs no console error and loads no failing request, that every image has loaded (`naturalWidth > 0`), that MathJax
has typeset every equation (no raw `$$` left in the text), that every markdown table was rendered as a table (no line
of raw `| a | b |` syntax left in the text), that the sidebar lists every notebook, and that every page has a table of
contents. A second test does what `make lab` offers: JupyterLab runs tutorial 2 and its explorer
redraws the graph when a checkbox is clicked. Screenshots go to a temporary folder (printed), never into the repository.

`.ci/run` installs Chromium on a Debian-like machine; where no Chromium can be found the test skips and says why.
"""
import json, os, re, shutil, sys, tempfile
from pathlib import Path

import pytest

from conftest import ROOT, run

sys.path.insert(0, str(ROOT / ".ci"))
from docs_preview import page_name  # noqa: E402
from test_docs import all_notebooks  # noqa: E402

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def find_chromium() -> str | None:
    "The system Chromium: $CHROMIUM if set, else the first of the usual names on PATH."
    if os.environ.get("CHROMIUM"): return os.environ["CHROMIUM"]
    return next((p for p in map(shutil.which, CHROMIUM_NAMES) if p), None)


@pytest.fixture(scope="module")
def browser():
    playwright = pytest.importorskip("playwright.sync_api", reason="Playwright's Python package is not installed (make install)")
    exe = find_chromium()
    if exe is None:
        pytest.skip("no Chromium found (install Debian's `chromium`: apt-get install -y chromium, as .ci/run does; "
                    "or set $CHROMIUM to a Chromium binary)")
    with playwright.sync_playwright() as p:
        b = p.chromium.launch(executable_path=exe, args=["--no-sandbox", "--disable-gpu"])
        yield b
        b.close()


SEPARATOR_CELL = re.compile(r"\|\s*:?-+:?\s*\|")  # a cell of a table's `|---|:--:|` row, anywhere in a line


def raw_table_lines(text: str) -> list[str]:
    "The lines of rendered text that are markdown table syntax left unrendered: a line holding a separator cell"
    " (`|---|`, `|:--|`; the rows of a paragraph run together into one line), or one that starts and ends with `|`"
    " and has two or more cells."
    raw = []
    for line in map(str.strip, text.splitlines()):
        row = len(line) > 1 and line.startswith("|") and line.endswith("|") and line.count("|") >= 3
        if row or SEPARATOR_CELL.search(line): raw.append(line[:100])
    return raw


def test_raw_table_lines():
    "What the browser test counts as an unrendered table, on the rows that broke the README's table (a code span"
    " holding `|` gave one row more cells than the header, and the whole table was dropped to text)."
    raw = ("Where things live\n| area | notebooks | modules |\n|---|---|---|\n"
           "| reproduction | `71_study` | `dil-causal study plan|run|status|report` |")
    expected = ["| area | notebooks | modules |", "|---|---|---|", "| reproduction | `71_study` | `dil-causal study plan|run|status|report` |"]
    assert raw_table_lines(raw) == expected
    assert raw_table_lines("|:--|--:|") == ["|:--|--:|"]
    assert raw_table_lines("Where things live | area | notebooks | |---|---| | data |") != []  # rows run together
    for prose in ("P(I_o | do(I_d)) = Σ_i P(I_o | I_d, d_i)", "|x| is the absolute value", "a | b | c in the middle",
                  "area\tnotebooks\tmodules", "| one cell |"):  # maths, prose and a rendered table's text are not raw
        assert raw_table_lines(prose) == [], prose


def test_every_page_in_chromium(site, browser):
    manifest = json.loads((site / "preview.json").read_text())
    pages = [m["page"] for m in manifest]
    assert sorted(pages) == sorted("index.html" if nb == "index.ipynb" else page_name(nb) for nb in all_notebooks())
    shots = Path(tempfile.mkdtemp(prefix="dil_causal-screens-"))
    ctx = browser.new_context(viewport={"width": 1400, "height": 1000})
    opened, problems = [], []
    for page_path in pages:
        page = ctx.new_page()
        errors = []
        page.on("console", lambda m, errors=errors: m.type == "error" and errors.append(m.text))
        page.on("pageerror", lambda e, errors=errors: errors.append(str(e)))
        page.on("requestfailed", lambda r, errors=errors: errors.append(f"failed request {r.url}"))
        page.goto((site / page_path).as_uri(), wait_until="load")
        # wait until MathJax has typeset the page (it queues a typeset on load)
        page.evaluate("() => MathJax.startup.promise")  # resolves once MathJax has typeset the page
        state = page.evaluate("""() => ({
            images: [...document.images].map(i => ({src: i.src.slice(0, 60), ok: i.complete && i.naturalWidth > 0})),
            rawMath: [...document.querySelectorAll('.jp-MarkdownCell, .jp-RenderedMarkdown, header')]
                       .map(e => e.innerText).filter(t => t.includes('$$')).map(t => t.slice(0, 80)),
            markdown: [...document.querySelectorAll('.jp-MarkdownCell, .jp-RenderedMarkdown, header')].map(e => e.innerText),
            sidebar: [...document.querySelectorAll('#sidebar a')].map(a => a.getAttribute('href')),
            toc: document.querySelectorAll('#toc a').length,
            prompts: [...document.querySelectorAll('.jp-InputPrompt, .jp-OutputPrompt')].map(e => e.innerText.trim()).filter(Boolean),
            mathjax: document.querySelectorAll('mjx-container').length,
        })""")
        page.screenshot(path=str(shots / (page_path.replace("/", "__") + ".png")), full_page=False)
        bad_imgs = [i["src"] for i in state["images"] if not i["ok"]]
        here_dir = os.path.dirname(page_path)
        linked = {os.path.normpath(os.path.join(here_dir, h)).replace(os.sep, "/") for h in state["sidebar"]}
        missing = set(pages) - linked
        raw_tables = sorted({line for text in state["markdown"] for line in raw_table_lines(text)})
        for what, bad in (("console errors", errors), ("images not loaded", bad_imgs), ("raw $$", state["rawMath"]),
                          ("raw markdown table", raw_tables),
                          ("sidebar lacks", sorted(missing)), ("prompts", state["prompts"])):
            if bad: problems.append((page_path, what, bad))
        if state["toc"] == 0 and page_path != "index.html": problems.append((page_path, "no table of contents", []))
        opened.append((page_path, len(state["images"]), state["mathjax"]))
        page.close()
    print(f"\nopened {len(opened)} pages in {browser.version and 'Chromium ' + browser.version}; screenshots in {shots}")
    for p, n_img, n_math in opened: print(f"  {p}: {n_img} images loaded, {n_math} equations typeset")
    assert not problems, problems
    assert len(opened) == len(all_notebooks())


def test_an_explorer_works_in_jupyterlab(browser, tmp_path):
    "What `make lab` gives: JupyterLab runs tutorial 2, draws its explorer's checkboxes, and redraws the graph on a click."
    import socket, subprocess, time, urllib.request
    from playwright.sync_api import TimeoutError as PlaywrightTimeout  # the package is there: `browser` needed it
    shutil.copy(ROOT / "nbs" / "tutorials" / "02_causal_graph.ipynb", tmp_path / "explorer.ipynb")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if k != "MPLBACKEND"}  # as `make lab`: the kernel draws inline
    env["PYTHONPATH"] = str(ROOT)
    lab = subprocess.Popen([sys.executable, "-m", "jupyterlab", "--no-browser", "--allow-root", f"--port={port}",
                            "--ServerApp.token=t", f"--ServerApp.root_dir={tmp_path}", "--ServerApp.ip=127.0.0.1"],
                           env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}"
        for _ in range(120):
            try: urllib.request.urlopen(f"{url}/api/status?token=t", timeout=1); break
            except OSError: time.sleep(0.5)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        errors = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(f"{url}/lab/tree/explorer.ipynb?token=t")
        page.wait_for_selector(".jp-Notebook", timeout=120_000)
        try:  # JupyterLab may ask which kernel to start: the notebook's own (python3)
            page.click(".jp-Dialog button.jp-mod-accept", timeout=10_000)
        except PlaywrightTimeout: pass
        page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=120_000)
        page.click("text=Run", timeout=30_000)
        page.click("text=Run All Cells", timeout=30_000)
        page.wait_for_selector(".widget-checkbox input", timeout=180_000)
        image = ".jp-OutputArea-output .widget-output img, .jp-OutputArea-output .jupyter-widgets-output-area img"
        page.wait_for_selector(image, timeout=60_000)
        before = page.eval_on_selector(image, "i => i.src")
        page.query_selector_all(".widget-checkbox input")[1].click()  # adjust for D: on -> off
        page.wait_for_function(f"(b) => {{ const i = document.querySelector({image!r}); return i && i.src !== b; }}",
                               arg=before, timeout=60_000)
        page.screenshot(path=str(Path(tempfile.mkdtemp(prefix="dil_causal-lab-")) / "explorer.png"))
        assert not errors, errors
        page.close()
    finally:
        lab.terminate(); lab.wait(timeout=30)


REPRODUCE_PAGES = ("reproduce.html", "reproduce.history.html")


def test_reproduce_outlines_fit_the_window(site, browser):
    "Issue #25: the reproduce pages' 'On this page' outline has at most two levels, each nested under the one above,"
    " and fits a 1400x900 window whole (it used to list 49 headings, 1,381 px tall); the page opens on what it is now."
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    for name in REPRODUCE_PAGES:
        page.goto((site / name).as_uri(), wait_until="load")
        toc = page.evaluate("""() => { const t = document.querySelector('#toc');
            return t && {levels: [...t.querySelectorAll('li')].map(l => +l.className.slice(1)), height: t.scrollHeight,
                         top: t.getBoundingClientRect().top}; }""")
        assert toc and toc["levels"], (name, "no outline")
        levels = toc["levels"]
        assert len(set(levels)) <= 2, (name, "outline levels", sorted(set(levels)))
        assert levels[0] == 2 and all(b <= a + 1 for a, b in zip(levels, levels[1:])), (name, "an outline level jumps", levels)
        assert toc["top"] + toc["height"] <= 900, (name, f"the outline ({len(levels)} entries, {toc['height']} px) runs past a 900 px window")
    page.goto((site / "reproduce.html").as_uri(), wait_until="load")
    first = page.evaluate("() => document.querySelector('#content .jp-RenderedMarkdown p').innerText")
    assert "dil_causal.study" in first and "generalization.py" not in first, first
    page.close()
