"""The public code's LIR preset (`lir-official`, full-size networks) on one GPU, in one command of under 9 minutes.

    python bench/lir_official_gpu.py --out bench/results/lir_official_gpu      # one H200: about 2 x 3.5 min of training

Trains `LIR_PRESETS["lir-official"]` (64x64 patches, batch 16, every option of the public code) on CBSD432 once at
Gaussian sigma 25 and once at sigma 50 (one model per noise setting), `--steps` steps each with the preset's step
schedule (rate halved at 1/3 and 2/3 of them), then measures both on all of CBSD68 with `evaluate(..., protocol="dil")`
beside the noisy input. Writes `OUT/summary.json` with the numbers, the steps, the training seconds and the hardware.
`--tiny` runs the same path with `lir-tiny`, 2 steps and 2 test images (the CPU smoke test in tests/test_lir_options.py).
"""
from __future__ import annotations

import argparse, json, platform, time, warnings
from pathlib import Path

import torch

from dil_causal.data import image_folder
from dil_causal.evaluate import evaluate
from dil_causal.lir import LIR_PRESETS
from dil_causal.sampler import Confounder
from dil_causal.train import fit

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"  # the benchmark images beside the checkout

def hardware() -> str:
    if torch.cuda.is_available(): return f"{torch.cuda.get_device_name(0)}, torch {torch.__version__}"
    return f"CPU ({platform.processor() or platform.machine()}), {torch.get_num_threads()} threads, torch {torch.__version__}"

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=2500, help="training steps per noise setting")
    ap.add_argument("--sigmas", default="25,50")
    ap.add_argument("--train", default=str(DATA / "CBSD432_jpg"))
    ap.add_argument("--test", default=str(DATA / "CBSD68"))
    ap.add_argument("--out", default="bench/results/lir_official_gpu")
    ap.add_argument("--work", default="runs/lir_official_gpu")
    ap.add_argument("--tiny", action="store_true", help="lir-tiny, 2 steps, batch 2, 2 test images: the CPU smoke test")
    args = ap.parse_args(argv)
    preset = dict(LIR_PRESETS["lir-official-cpu" if args.tiny else "lir-official"], steps=2 if args.tiny else args.steps)
    if args.tiny: preset.update(batch_size=2)
    test = image_folder(args.test)
    if args.tiny: test = dict(list(sorted(test.items()))[:2])
    sigmas = [int(s) for s in args.sigmas.split(",")]
    confs = {s: [Confounder("gaussian_noise", s, True)] for s in sigmas}
    summary = {"preset": "lir-official-cpu (tiny smoke)" if args.tiny else "lir-official", "steps": preset["steps"],
               "hardware": hardware(), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "n_test_images": len(test),
               "psnr": {}, "noisy_input": {}, "train_seconds": {}}
    for s in sigmas:
        t = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")   # no VGG-19 weights here: the semantic term is off (recorded below)
            r = fit(**{**preset, "confounders": [["gaussian_noise", s, True]]}, data=args.train, seed=0, progress=False,
                    output_dir=f"{args.work}/sigma{s}", log_every=50, cpu=args.tiny)
        summary["train_seconds"][s] = round(time.perf_counter() - t, 1)
        summary["semantic_term"] = "g_semantic" in r.history
        for name, model in (("psnr", r.model), ("noisy_input", None)):
            df = evaluate(model, test, confs[s], protocol="dil", dataset="CBSD68", progress=False, metrics=("psnr",))
            summary[name][s] = round(float(df.psnr.mean()), 2)
        print(f"sigma {s}: LIR {summary['psnr'][s]} dB, noisy {summary['noisy_input'][s]} dB, "
              f"{summary['train_seconds'][s]} s of training", flush=True)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    Path(args.out, "summary.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary, indent=2))

if __name__ == "__main__":
    main()
