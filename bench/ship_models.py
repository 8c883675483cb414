"""Ship the decisive study's trained denoisers inside the package, each with a model card.

From a finished CPU study (bench/study.py), per shipped name it takes one final run — the seed with the best final
SEEN-degree validation PSNR (never a test image) — copies its model file (the EMA weights) into dil_causal/pretrained/
and writes NAME.json beside it: how it was trained (the study command, the fit() configuration, data, commit,
hardware) and what it measures on CBSD68 (all 68 images, full size, DIL protocol: PSNR per sigma, and the noisy
input's), measured with the same code as `dil-causal eval -n NAME --data CBSD68`.

  erm-denoise-tiny      the study's tuned ERM
  dil_sf-denoise-tiny   the study's tuned DIL_sf (the content setting whose final validation was better)

Usage: python bench/ship_models.py --study bench/results/study-cpu-denoise --work /work/study/work-cpu [--data ../shared/data]
"""
import argparse, json, os, shutil
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--study", required=True); ap.add_argument("--work", required=True)
    ap.add_argument("--data", default=os.environ.get("DIL_DATA") or str(ROOT.parent / "shared" / "data"))
    args = ap.parse_args(argv)
    from dil_causal.cli import eval_checkpoint
    from dil_causal.models import load_model, n_parameters, read_record
    study, work, dest = Path(args.study), Path(args.work), ROOT / "dil_causal" / "pretrained"
    curves, meta = pd.read_csv(study / "final_curves.csv"), json.loads((study / "meta.json").read_text())
    final_val = curves.sort_values("passes").groupby("name").tail(1)
    dil_arm = final_val[final_val.arm.str.startswith("DIL")].groupby("arm").val_psnr.mean().idxmax()
    dest.mkdir(exist_ok=True)
    for name, arm in (("erm-denoise-tiny", "ERM"), ("dil_sf-denoise-tiny", dil_arm)):
        best = final_val[final_val.arm == arm].sort_values("val_psnr", ascending=False).iloc[0]
        run = work / best["name"]
        cfg = json.loads((run / "config.json").read_text())
        shutil.copyfile(run / "model.safetensors", dest / f"{name}.safetensors")
        table = eval_checkpoint(str(dest / f"{name}.safetensors"), data=str(Path(args.data) / "CBSD68"), metrics="psnr")
        rec = read_record(dest / f"{name}.safetensors")
        card = dict(name=name, method=cfg["method"], content=cfg.get("content"), backbone=cfg["backbone"],
                    parameters=n_parameters(load_model(dest / f"{name}.safetensors")), weights=rec.get("weights"),
                    arm=arm, seed=int(best["seed"]), selection="of the study's final seeds, the best final seen-degree "
                    "validation PSNR (5 % of CBSD432 held out); the rate was selected the same way in the sweep",
                    command=meta["parts"]["all"]["command"], fit_config={k: v for k, v in cfg.items() if k not in ("output_dir", "progress")},
                    data="CBSD432 (432 BSDS500 JPEGs, CBSD68 excluded), 5 % held out for validation",
                    commit=meta["parts"]["all"]["commit"], hardware=meta["parts"]["all"]["hardware"],
                    torch=meta["parts"]["all"]["torch"], protocol="dil (test noise seeded 0 per image, clipped to [0, 1])",
                    psnr_cbsd68={str(float(r.degree)): float(r.psnr) for r in table.itertuples()},
                    psnr_input_cbsd68={str(float(r.degree)): float(r.input_psnr) for r in table.itertuples()},
                    seen_sigmas=[5, 10, 15, 20], eval_command=f"dil-causal eval -n {name} --data CBSD68")
        (dest / f"{name}.json").write_text(json.dumps(card, indent=1) + "\n")
        print(f"shipped {name}: {arm} seed {card['seed']}, PSNR on CBSD68 {card['psnr_cbsd68']}")


if __name__ == "__main__":
    main()
