"""LIR ablation on the CPU: the public code's preset against the package's earlier settings, options one at a time.

    OMP_NUM_THREADS=1 python bench/lir_ablation.py --steps 700 --batch-size 8 --jobs 2 --out bench/results/history/lir_ablation

Every setting trains at Gaussian sigma 25 and at sigma 50 (one model per noise setting; "earlier, pooled" trains one
model on sigma 25, 50 and Poisson, measured at both), 3 seeds, on CBSD432 with the same steps, batch, patch size and
learning rate; ERM (`rrdb-tiny`, paired) is the reference. Each run is measured on 12 CBSD68 images (every fifth,
full size) with `evaluate(..., protocol="dil")`. One JSON file per finished run under `OUT/per_run/`, so that partial
results survive; the table (`OUT/table.md`, `OUT/summary.json`) is rewritten after every run and by `--table`.
Runs whose result file exists are skipped, so the same command continues an interrupted ablation.
"""
from __future__ import annotations

import argparse, json, multiprocessing as mp, time, warnings
from pathlib import Path

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"  # the benchmark images beside the checkout
SEEDS, SIGMAS = (0, 1, 2), (25, 50)

def settings() -> dict[str, dict]:
    "Setting name -> `fit` arguments (beside data, budget and seed)."
    from dil_causal.lir import LIR_PRESETS
    official = {k: v for k, v in LIR_PRESETS["lir-official-cpu"].items() if k not in ("steps", "patch_size", "batch_size", "confounders", "lr")}
    return {
        "earlier, pooled": dict(method="lir", backbone="lir-tiny", confounders="lir_denoise", lir={"noise": "pooled"}),
        "earlier": dict(method="lir", backbone="lir-tiny"),
        "lir-official-cpu": official,
        "official, no code noise": {**official, "lir": {"preset": "official", "code_noise": 0.0}},
        "official, earlier networks": {**official, "backbone_kwargs": {}},
        "ERM (paired)": dict(method="erm", backbone="rrdb-tiny"),
    }

def jobs() -> list[tuple[str, int|None, int]]:
    "(setting, training sigma or None for the pooled setting, seed), seed-major so that partial results cover every setting."
    return [(name, None if "pooled" in name else s, seed) for seed in SEEDS for name in settings()
            for s in ((None,) if "pooled" in name else SIGMAS)]

def slug(name: str, sigma, seed: int) -> str:
    return "".join(c if c.isalnum() else "-" for c in name.lower()) + f"_s{sigma or 'pooled'}_seed{seed}"

def test_images(n: int = 12) -> dict:
    from dil_causal.data import image_folder
    test = image_folder(DATA / "CBSD68")
    return dict(list(sorted(test.items()))[::5][:n])

def run_one(job, args) -> dict:
    "Train one setting at one noise setting and seed, measure it on the test images, write its result file."
    import torch
    from dil_causal.evaluate import evaluate
    from dil_causal.sampler import Confounder
    from dil_causal.train import fit
    torch.set_num_threads(1)
    name, sigma, seed = job
    kw = dict(settings()[name])
    if sigma is not None: kw["confounders"] = [["gaussian_noise", sigma, True]]
    t = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")   # the VGG-19 weights are absent on this machine: no semantic term (said in the README)
        r = fit(**kw, data=str(DATA / "CBSD432_jpg"), steps=args.steps, batch_size=args.batch_size, patch_size=args.patch_size,
                lr=1e-4, seed=seed, output_dir=f"{args.work}/{slug(*job)}", resume=True, progress=False, cpu=True,
                log_every=50, ckpt_every=0)
    train_s = time.perf_counter() - t
    confs = [Confounder("gaussian_noise", s, True) for s in (SIGMAS if sigma is None else (sigma,))]
    df = evaluate(r.model, test_images(), confs, protocol="dil", dataset="CBSD68", progress=False, metrics=("psnr",))
    res = dict(setting=name, train_sigma=sigma, seed=seed, steps=args.steps, batch_size=args.batch_size,
               patch_size=args.patch_size, train_seconds=round(train_s, 1),
               psnr={int(k): round(v, 3) for k, v in df.groupby("degree").psnr.mean().items()})
    if "latent_acc" in r.history: res["latent_acc_last"] = round(float(r.history.latent_acc.tail(3).mean()), 3)
    out = Path(args.out, "per_run", slug(*job) + ".json"); out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=1))
    print(f"{slug(*job)}: {res['psnr']} ({train_s:.0f} s)", flush=True)
    return res

def noisy_reference(args) -> dict:
    "PSNR of the noisy input itself on the test images, per sigma (written once)."
    path = Path(args.out, "noisy_input.json")
    if path.exists(): return {int(k): v for k, v in json.loads(path.read_text()).items()}
    from dil_causal.evaluate import evaluate
    from dil_causal.sampler import Confounder
    df = evaluate(None, test_images(), [Confounder("gaussian_noise", s, True) for s in SIGMAS], protocol="dil", progress=False, metrics=("psnr",))
    ref = {int(k): round(v, 3) for k, v in df.groupby("degree").psnr.mean().items()}
    path.parent.mkdir(parents=True, exist_ok=True); path.write_text(json.dumps(ref))
    return ref

def table(args) -> str:
    "The markdown table of every finished run: mean ± sd over seeds and the per-seed values, per sigma."
    import statistics as st
    noisy = noisy_reference(args)
    rows = [json.loads(p.read_text()) for p in sorted(Path(args.out, "per_run").glob("*.json"))]
    lines = ["| setting | " + " | ".join(f"σ {s}: mean ± sd (per seed)" for s in SIGMAS) + " |", "|---|" + "---|" * len(SIGMAS),
             "| noisy input | " + " | ".join(f"{noisy[s]:.2f}" for s in SIGMAS) + " |"]
    summary = {"noisy_input": noisy, "settings": {}}
    for name in settings():
        cells = []
        for s in SIGMAS:
            vals = {r["seed"]: r["psnr"].get(str(s)) for r in rows
                    if r["setting"] == name and r["train_sigma"] in (s, None)}
            vals = {k: v for k, v in sorted(vals.items()) if v is not None}
            summary["settings"].setdefault(name, {})[s] = vals
            if not vals: cells.append("—"); continue
            m = st.mean(vals.values()); sd = st.stdev(vals.values()) if len(vals) > 1 else 0.0
            cells.append(f"{m:.2f} ± {sd:.2f} ({', '.join(f'{v:.2f}' for v in vals.values())})")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    text = "\n".join(lines) + "\n"
    Path(args.out, "table.md").write_text(text)
    path = Path(args.out, "summary.json")
    run_args = json.loads(path.read_text())["args"] if args.table and path.exists() else vars(args)   # --table keeps the run's
    path.write_text(json.dumps({"args": run_args, **summary}, indent=1))
    return text

def _worker(job_args):
    job, args = job_args
    try: return run_one(job, args)
    except Exception as e:  # one failed run must not stop the others; it is reported and can be rerun
        print(f"{slug(*job)} failed: {e!r}", flush=True); return None

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=700)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--patch-size", type=int, default=32)
    ap.add_argument("--jobs", type=int, default=2, help="runs at once (each on one thread)")
    ap.add_argument("--only", default="", help="semicolon-separated settings to run (default: all)")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--sigmas", default="25,50", help="training and test sigmas (the pooled setting always trains on lir_denoise)")
    ap.add_argument("--out", default="bench/results/history/lir_ablation")
    ap.add_argument("--work", default="runs/lir_ablation", help="checkpoints (not committed)")
    ap.add_argument("--table", action="store_true", help="only rewrite the table from the finished runs")
    args = ap.parse_args(argv)
    global SIGMAS
    SIGMAS = tuple(int(x) for x in args.sigmas.split(","))
    if not args.table:
        noisy_reference(args)
        seeds = {int(s) for s in args.seeds.split(",")}
        only = set(filter(None, args.only.split(";")))
        todo = [j for j in jobs() if j[2] in seeds and (not only or j[0] in only)
                and not Path(args.out, "per_run", slug(*j) + ".json").exists()]
        print(f"{len(todo)} runs to do", flush=True)
        with mp.get_context("spawn").Pool(args.jobs, maxtasksperchild=1) as pool:
            for _ in pool.imap_unordered(_worker, [(j, args) for j in todo]): table(args)
    print(table(args))

if __name__ == "__main__":
    main()
