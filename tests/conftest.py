"""Shared helpers for the plain pytest suite (CLI, multi-process, fault injection, docs)."""
import contextlib, json, os, shutil, subprocess, sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Real benchmark images: ../shared/data beside the project on developer machines and in CI; DIL_TEST_DATA points
# elsewhere (e.g. at a folder that does not exist, to see what a fresh clone without them runs).
DATA = Path(os.environ.get("DIL_TEST_DATA") or ROOT.parent / "shared" / "data")
WHERE = ("the benchmark images (CBSD68, Kodak24, Set5, Set12, Set14, CBSD432_jpg with MANIFEST.sha256) are not at {}: "
         "put them there (or set DIL_TEST_DATA) to run this test. Where each set comes from: `dil-causal data list` "
         "(CBSD68, Kodak24, McMaster and Set12 download through `dil_causal.data.get_dataset`; Set5, Set14 and "
         "CBSD432 come from the SR benchmark bundles and the BSDS500 archive)")


def venv_bin(name: str) -> str:
    "Path of a console script installed beside the running Python (the project's .venv under make)."
    p = Path(sys.executable).parent / name
    return str(p) if p.exists() else (shutil.which(name) or name)


def run(args, cwd=ROOT, timeout=600, env=None):
    "Run a command, returning the CompletedProcess with text output."
    e = {**os.environ, "MPLBACKEND": "Agg", "HF_HUB_OFFLINE": "1", **(env or {})}
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=e)


@pytest.fixture
def shared_data():
    if not DATA.is_dir(): pytest.skip(WHERE.format(DATA))
    return DATA


@contextlib.contextmanager
def once_per_session(tmp_path_factory, name: str):
    """Yield `(folder, build)` under a file lock in the folder the session's pytest-xdist workers share: `build` is True
    for the first worker to get there (it builds into `folder`), False for the others, which wait and reuse it."""
    import fcntl
    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"): base = base.parent  # popen-gwN's parent: one per session
    folder = base / name
    with open(base / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        done = folder / ".built"
        build = not done.exists()
        if build: shutil.rmtree(folder, ignore_errors=True); folder.mkdir()
        yield folder, build
        if build: done.touch()


@pytest.fixture(scope="session")
def site(tmp_path_factory):
    """The docs preview (.ci/docs_preview.py), built once per test session for the docs and browser tests. The build
    writes into the working tree (nbs/sidebar.yml, _proc/), so under pytest-xdist the first worker to need it builds it
    and the others wait for it and reuse it (`once_per_session`)."""
    with once_per_session(tmp_path_factory, "site") as (folder, build):
        if build:
            r = run([sys.executable, ".ci/docs_preview.py", "--out", str(folder / "_docs")], timeout=900)
            assert r.returncode == 0, r.stderr[-3000:]
    return folder / "_docs"


SMOKE_DATA = bool(os.environ.get("DIL_DATA")) or (ROOT.parent / "shared" / "data" / "CBSD432_jpg").is_dir()


@pytest.fixture(scope="session")
def smoke_store(tmp_path_factory):
    """The smoke study run once per test session, start to end, through the command line (`plan`, then `run` with two
    local processes of one thread each); the study tests compare their own stores with it. Built once for all of the
    session's workers (`once_per_session`), so under pytest-xdist no worker trains it twice."""
    if not SMOKE_DATA: pytest.skip("the smoke study trains on CBSD432 from ../shared/data (or $DIL_DATA): not here")
    one = {"OMP_NUM_THREADS": "1"}
    with once_per_session(tmp_path_factory, "smoke") as (d, build):
        if build:
            r = run([venv_bin("dil-causal"), "study", "plan", str(d / "store"), "--study", "smoke"], env=one)
            assert r.returncode == 0 and "4 ready to run" in r.stdout, r.stdout + r.stderr
            r = run([venv_bin("dil-causal"), "study", "run", str(d / "store"), "--jobs", "2", "--threads", "1",
                     "--work", str(d / "work"), "--no-reuse"], env=one, timeout=900)
            assert r.returncode == 0 and "14 units finished" in r.stdout, r.stdout[-2000:] + r.stderr[-3000:]
    return d / "store"


def scores(store) -> dict:
    "Every unit's results without its timings: key -> (curve, tests, track, best_passes)."
    out = {}
    for f in (store / "units").glob("*.json"):
        r = json.loads(f.read_text())
        out[r["key"]] = (r["curve"], r.get("tests"), r.get("track"), r.get("best_passes"))
    return out
