"""Shared helpers for the plain pytest suite (CLI, multi-process, fault injection, docs)."""
import os, shutil, subprocess, sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"  # real benchmark images on every developer machine and in CI


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
    if not DATA.is_dir(): pytest.skip(f"benchmark images not found at {DATA}")
    return DATA
