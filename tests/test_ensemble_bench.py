"""bench/ensemble.py runs every engine it compares (smoke sizes on the CPU): the GPU check is the same command
with --device cuda. One ensemble size, 2 (M = 1 runs the same code: 13 s more for nothing new)."""
import json, sys

from conftest import ROOT, run


def test_every_engine_and_lever_runs(tmp_path):
    out = tmp_path / "fig.json"
    r = run([sys.executable, str(ROOT / "bench" / "ensemble.py"), "--members", "2", "--seconds", "0.2", "--threads", "1",
             "--patch", "16", "--batch", "2", "--method", "dil_sf", "--processes", "--levers", "--lever-names", "fp32,bf16,channels-last,cudnn.benchmark", "--end-to-end",
             "--e2e-steps", "2", "--json", str(out)], env={"OMP_NUM_THREADS": "1"}, timeout=600)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    rows = json.loads(out.read_text())["rows"]
    grid = [x for x in rows if "ensemble" in x and "lever" not in x]
    assert [x["M"] for x in grid] == [2] and all(x[k] > 0 for x in grid for k in ("ensemble", "sequential", "dense", "processes"))
    levers = {x["lever"] for x in rows if "lever" in x}
    assert levers == {"fp32", "bf16", "channels-last", "cudnn.benchmark"}   # (compile: minutes on a CPU; on the GPU check)
    assert rows[-1]["end_to_end"]["fit_many_s"] > 0 and "ens/seq" in r.stdout
