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
    assert files == ["answer.md", "curves.png", "final_curves.csv", "final_tests.csv", "meta.json", "refine_curves.csv",
                     "selected.json", "sweep_curves.csv"] and len(files) <= 8
    sweep, selected = pd.read_csv(out / "sweep_curves.csv"), json.loads((out / "selected.json").read_text())
    assert set(sweep.arm) == set(selected) == {"ERM", "DIL_sf shared", "DIL_sf independent"}
    assert sweep.groupby("arm").name.nunique().to_dict() == {"ERM": 5, "DIL_sf shared": 10, "DIL_sf independent": 10}
    assert "dataset" not in sweep                                  # the sweep measured validation only, no test image
    last = sweep.sort_values("passes").groupby("name").tail(1)
    refine = pd.read_csv(out / "refine_curves.csv")                 # the sweep's 3 best per arm, at the final budget
    assert refine.groupby("arm").name.nunique().to_dict() == {"ERM": 3, "DIL_sf shared": 3, "DIL_sf independent": 3}
    assert "dataset" not in refine and refine.passes.max() == 24 and sweep.passes.max() == 16
    refine_last = refine.sort_values("passes").groupby("name").tail(1)
    for arm, rates in selected.items():
        top3 = last[last.arm == arm].val_psnr.nlargest(3)            # the candidates are the sweep's best three ...
        assert rates["sweep_pick"]["val_psnr"] == top3.iloc[0] and len(rates["candidates"]) == 3
        assert rates["val_psnr"] == refine_last[refine_last.arm == arm].val_psnr.max()  # ... the pick the best at 24
    tests = pd.read_csv(out / "final_tests.csv")
    assert set(tests.seed) == {1, 2} and sorted(tests.degree.unique()) == [5, 10, 15, 20, 30, 40, 50]
    text = (out / "answer.md").read_text()
    assert "| DIL_sf shared | CBSD68 | unseen σ 30–50 |" in text and "| DIL_sf independent | Kodak24 | seen σ 5–20 |" in text
    meta = json.loads((out / "meta.json").read_text())
    assert meta["scale"] == "smoke" and meta["parts"]["all"]["commit"] and meta["settings"]["engine"] == "ensemble"


def test_flattening_and_wall_time_tables(tmp_path):
    "The flattening table reads a curve's plateau and the gain of the longer final budget over the sweep's; the"
    " wall-time text turns training seconds into time per pass and says which way equal time would tip."
    sys.path.insert(0, str(ROOT / "bench"))
    import study
    passes = [600, 1200, 1800, 2400, 3000, 3600]
    erm = [20.0, 25.0, 27.0, 27.95, 28.0, 28.02]       # within 0.1 dB of 28.02 from 2,400 passes
    dil = [18.0, 20.0, 22.0, 24.0, 26.0, 28.0]         # still rising
    rows = [dict(part="final", arm=arm, seed=s, name=f"{arm}-{s}", passes=p, seconds=p * ms / 1000, val_psnr=v + 0.01 * s)
            for arm, curve, ms in (("ERM", erm, 10.0), ("DIL_sf shared", dil, 20.0)) for s in (1, 2) for p, v in zip(passes, curve)]
    curves = pd.DataFrame(rows)
    (tmp_path / "selected.json").write_text(json.dumps({"ERM": {"lr": 3e-3}, "DIL_sf shared": {"inner_lr": 3e-4, "factor": 4}}))
    seed0 = lambda arm, passes, v, **rates: dict(arm=arm, seed=0, name=f"{arm}-{passes}-{rates}", passes=passes, val_psnr=v, **rates)
    sweep = pd.DataFrame([seed0("ERM", 1200, 26.0, lr=3e-3), seed0("ERM", 1200, 27.0, lr=1e-2),  # another rate: not on the ladder
                          seed0("DIL_sf shared", 1200, 21.0, inner_lr=3e-4, factor=4.0)])
    sweep.to_csv(tmp_path / "sweep_curves.csv", index=False)
    pd.DataFrame([seed0("ERM", 3600, 28.0, lr=3e-3), seed0("DIL_sf shared", 3600, 28.0, inner_lr=3e-4, factor=4.0)]).to_csv(tmp_path / "refine_curves.csv", index=False)
    pd.DataFrame([seed0("ERM", 10800, 28.1, lr=3e-3)]).to_csv(tmp_path / "ladder_curves.csv", index=False)
    f = study.flattening(tmp_path, curves).set_index("arm")
    assert f.loc["ERM", "flat_from"] == 2400 and f.loc["DIL_sf shared", "flat_from"] == 3600
    assert abs(f.loc["ERM", "last_third"] - (28.035 - 27.965)) < 1e-9 and abs(f.loc["DIL_sf shared", "last_third"] - 4.0) < 1e-9
    assert f.loc["ERM", "ladder"] == "1,200: 26.00 → 3,600: 28.00 → 10,800: 28.10" and f.loc["ERM", "flat_by"] == 3600  # +0.1 dB < 0.2
    assert pd.isna(f.loc["DIL_sf shared", "flat_by"]) and f.loc["DIL_sf shared", "longest"] == 3600
    assert "not by 3,600 passes" in study.flattening_text(tmp_path, curves)
    text = study.wall_time_text(curves)
    assert "ERM 10.0 ms" in text and "DIL_sf shared 20.0 ms" in text and "2.00× ERM's time per pass" in text and "upper bound" in text
