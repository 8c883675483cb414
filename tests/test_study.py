"""bench/study.py, the decisive study, in smoke mode: the GPU protocol (vectorised ensembles, a data bundle made by
bench/make_bundle.py, a time limit) shrunk to seconds on the CPU; and its selection never reads a test image."""
import json, sys

import pandas as pd

from conftest import ROOT, run

STUDY, BUNDLE = ROOT / "bench" / "study.py", ROOT / "bench" / "make_bundle.py"


def test_gpu_protocol_in_smoke_mode(tmp_path, shared_data):
    r = run([sys.executable, str(BUNDLE), "--data", str(shared_data), "--out", str(tmp_path / "bundle")])
    assert r.returncode == 0 and "MiB" in r.stdout, r.stderr[-2000:]
    out = tmp_path / "out"
    r = run([sys.executable, str(STUDY), "all", "--scale", "smoke", "--data", str(tmp_path / "bundle"), "--out", str(out),
             "--work", str(tmp_path / "work"), "--time-limit", "600"], env={"OMP_NUM_THREADS": "1"}, timeout=900)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    files = sorted(p.name for p in out.iterdir())
    assert files == ["answer.md", "curves.png", "final_curves.csv", "final_tests.csv", "meta.json", "selected.json",
                     "sweep_curves.csv"] and len(files) <= 8
    sweep, selected = pd.read_csv(out / "sweep_curves.csv"), json.loads((out / "selected.json").read_text())
    assert set(sweep.arm) == set(selected) == {"ERM", "DIL_sf shared", "DIL_sf independent"}
    assert sweep.groupby("arm").name.nunique().to_dict() == {"ERM": 5, "DIL_sf shared": 8, "DIL_sf independent": 8}
    assert "dataset" not in sweep                                  # the sweep measured validation only, no test image
    last = sweep.sort_values("passes").groupby("name").tail(1)
    for arm, rates in selected.items():                            # the selected rate is the best final validation
        assert rates["val_psnr"] == last[last.arm == arm].val_psnr.max()
    tests = pd.read_csv(out / "final_tests.csv")
    assert set(tests.seed) == {1, 2} and sorted(tests.degree.unique()) == [5, 10, 15, 20, 30, 40, 50]
    text = (out / "answer.md").read_text()
    assert "| DIL_sf shared | CBSD68 | unseen σ 30–50 |" in text and "| DIL_sf independent | Kodak24 | seen σ 5–20 |" in text
    meta = json.loads((out / "meta.json").read_text())
    assert meta["scale"] == "smoke" and meta["parts"]["all"]["commit"] and meta["settings"]["engine"] == "ensemble"
