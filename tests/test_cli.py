"""The `dil-causal` command as a user runs it."""
import re

from conftest import run, venv_bin


def test_help_lists_commands():
    r = run([venv_bin("dil-causal"), "--help"])
    assert r.returncode == 0 and "demo" in r.stdout


def test_unknown_command_is_named():
    r = run([venv_bin("dil-causal"), "denoise-all-the-things"])
    assert r.returncode == 2 and "unknown command 'denoise-all-the-things'" in r.stderr


def test_demo_help_comes_from_docments():
    r = run([venv_bin("dil-causal"), "demo", "--help"])
    assert r.returncode == 0
    assert "DIL_sf outer steps; ERM gets the same number of forward/backward passes" in r.stdout


def test_demo_end_to_end(tmp_path):
    "A very short demo: the printed table has every sigma, the unseen rows, and the files it names exist."
    r = run([venv_bin("dil-causal"), "demo", "--steps", "3", "--output", str(tmp_path)])
    assert r.returncode == 0, r.stderr[-2000:]
    rows = {int(m.group(1)): m.group(2) for m in re.finditer(r"^\s*(\d+)\s+(seen|unseen)\s", r.stdout, re.M)}
    assert rows == {5: "seen", 10: "seen", 15: "seen", 20: "seen", 30: "unseen", 40: "unseen", 50: "unseen"}
    assert "DIL_sf - ERM" in r.stdout
    png = tmp_path / "psnr_vs_sigma.png"
    assert png.exists() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and str(png) in r.stdout
    assert (tmp_path / "erm" / "model.safetensors").exists() and (tmp_path / "dil_sf" / "model.safetensors").exists()
