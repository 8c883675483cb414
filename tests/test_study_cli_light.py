"""Issue 34: `dil-causal study status` and `dil-causal study report` read a store without loading PyTorch or matplotlib
(they start in about a second instead of five), and `plan` names and hashes its data without them
(`dil_causal.datasets`); only the commands that train, evaluate, restore or draw load them."""
import json, sys

import pytest

from conftest import ROOT, SMOKE_DATA as SHARED_DATA, run

STORE = ROOT / "bench" / "results" / "study-cpu-narrow-dncnn-tiny"   # a committed store with an oracle arm: every section
HEAVY = ("torch", "matplotlib")


def command_in_a_fresh_interpreter(argv: list[str]) -> dict:
    "Run `dil-causal ARGV` through `dil_causal.cli.main` in a new interpreter: its exit code, its output, the heavy modules it loaded."
    code = ("import contextlib, io, json, sys\nfrom dil_causal.cli import main\n"
            f"with contextlib.redirect_stdout(io.StringIO()) as out:\n    try: rc = main({argv!r})\n    except SystemExit as e: rc = e.code\n"
            f"print(json.dumps(dict(rc=rc, out=out.getvalue(), loaded=[m for m in {HEAVY!r} if m in sys.modules])))")
    r = run([sys.executable, "-c", code], timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout.splitlines()[-1])


def test_status_loads_neither_torch_nor_matplotlib():
    r = command_in_a_fresh_interpreter(["study", "status", str(STORE)])
    assert r["rc"] == 0 and r["out"].split()[:8] == ["task", "backbone", "arm", "stage", "budget", "seeds_done",
                                                     "seeds_planned", "flattened"], r["out"][:500]
    assert r["loaded"] == [], f"`dil-causal study status` imported {r['loaded']}"


def test_report_renders_the_whole_answer_without_torch_or_matplotlib():
    from dil_causal.study import report
    r = command_in_a_fresh_interpreter(["study", "report", str(STORE)])
    assert r["rc"] == 0 and r["out"] == report(STORE, write=False) + "\n"   # the whole answer, oracle sections included
    assert r["loaded"] == [], f"`dil-causal study report` imported {r['loaded']}"


@pytest.mark.skipif(not SHARED_DATA, reason="the smoke study's data (CBSD432, CBSD68) is in ../shared/data: not here")
def test_plan_hashes_its_data_without_torch(tmp_path):
    r = command_in_a_fresh_interpreter(["study", "plan", str(tmp_path / "store"), "--study", "smoke"])
    assert r["rc"] == 0 and "4 ready to run" in r["out"], r["out"][-500:]
    assert r["loaded"] == [], f"`dil-causal study plan` imported {r['loaded']}"
    from dil_causal.study import STUDIES, data_identity, study_root
    data = json.loads((tmp_path / "store" / "study.json").read_text())["data"]  # what it named and hashed, torch-free
    assert data == data_identity(STUDIES["smoke"], study_root()) and set(data["tests"]) == {"CBSD68", "Kodak24"}, data


@pytest.mark.parametrize("argv", [["--help"], ["study", "--help"], ["study", "status", "--help"], ["study", "report", "--help"]],
                         ids=" ".join)
def test_help_loads_neither(argv):
    r = command_in_a_fresh_interpreter(argv)
    assert r["rc"] == 0 and "usage" in r["out"] and r["loaded"] == [], r


def test_the_check_sees_torch_where_a_command_needs_it():
    "The same check on a command that builds a model (`models` reads the shipped ones) does see torch: it is not blind."
    r = command_in_a_fresh_interpreter(["models"])
    assert r["rc"] == 0 and "torch" in r["loaded"], r
