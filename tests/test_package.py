"""Packaging: the install the README promises, and the rules every later change must keep."""
import configparser

from conftest import ROOT, run, venv_bin
import sys


def test_fit_imports_in_a_clean_interpreter(tmp_path):
    r = run([sys.executable, "-c", "from dil_causal.train import fit; import dil_causal; print(dil_causal.__version__)"],
            cwd=tmp_path)  # not the repo root: the installed package, not the source folder on sys.path
    cfg = configparser.ConfigParser(); cfg.read(ROOT / "settings.ini")
    assert r.returncode == 0 and r.stdout.strip() == cfg["DEFAULT"]["version"], r.stderr


def test_no_quarto_cli_dependency():
    for f in ("settings.ini", "setup.py", "constraints.txt"):
        assert "quarto-cli" not in (ROOT / f).read_text().lower(), f


def test_torch_is_pinned_in_constraints():
    lines = (ROOT / "constraints.txt").read_text().splitlines()
    assert "torch==2.13.0" in lines and "nbdev==2.4.14" in lines


def test_console_script_installed():
    r = run([venv_bin("dil-causal"), "--help"])
    assert r.returncode == 0
