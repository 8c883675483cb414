"""LIR against ERM at the same CPU budget: train both on CBSD432, evaluate on CBSD68 at Gaussian σ 25 and 50.

    OMP_NUM_THREADS=1 python bench/lir_cpu.py --steps 3000 --out runs/lir_cpu   # about 26 min on 2 shared cores

LIR learns from unpaired data (noisy and clean patches from disjoint halves of CBSD432); ERM from pairs of all of
CBSD432. Both see the `lir_denoise` training noise (Gaussian σ 25, 50, Poisson peak 20; pooled into one noisy domain
for LIR, `lir={"noise": "pooled"}`, the package's earlier formulation), the same number of steps,
batch and patch size and learning rate (1e-4, the paper's). The evaluation uses `evaluate(..., protocol="dil")` (test noise seeded per
image, clipped to [0, 1]). The latent discriminator's accuracy is reported twice: over the last training steps, and on
held-out codes (E_X of noisy CBSD68 crops against E_Y of clean crops of other CBSD68 images); ½ is chance.
"""
from __future__ import annotations

import argparse, json, time
from pathlib import Path

import torch

from dil_causal.data import image_folder
from dil_causal.evaluate import evaluate
from dil_causal.lir import latent_accuracy, split_domains
from dil_causal.sampler import Confounder
from dil_causal.train import fit

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"  # the benchmark images beside the checkout

def held_out_latent_accuracy(m, images: dict, sigmas, crop: int = 64, seed: int = 0) -> float:
    "D_R's accuracy on test codes: noisy crops of one half of `images` against clean crops of the other half."
    noisy_names, clean_names = split_domains(images, seed)
    g = torch.Generator().manual_seed(seed)
    def crops(names):
        out = []
        for n in names:
            im = images[n]
            t = int(torch.randint(im.shape[1] - crop + 1, (), generator=g)); l = int(torch.randint(im.shape[2] - crop + 1, (), generator=g))
            out.append(im[:, t:t + crop, l:l + crop])
        return torch.stack(out)
    a, b = crops(noisy_names), crops(clean_names)
    accs = []
    with torch.no_grad():
        for s in sigmas:
            x = Confounder("gaussian_noise", s).distortion()(a, torch.Generator().manual_seed(seed))
            accs.append(latent_accuracy(m.D_R(m.E_X(x)), m.D_R(m.E_Y(b))).item())
    return sum(accs) / len(accs)

def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--patch-size", type=int, default=32)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--lir-backbone", default="lir-tiny")
    ap.add_argument("--erm-backbone", default="rrdb-tiny")
    ap.add_argument("--train", default=str(DATA / "CBSD432_jpg"))
    ap.add_argument("--test", default=str(DATA / "CBSD68"))
    ap.add_argument("--n-test", type=int, default=0, help="first N test images (0: all)")
    ap.add_argument("--out", default="runs/lir_cpu")
    args = ap.parse_args()
    torch.set_num_threads(1)
    common = dict(data=args.train, confounders="lir_denoise", steps=args.steps, batch_size=args.batch_size,
                  patch_size=args.patch_size, lr=args.lr, seed=0, log_every=50, ckpt_every=500, progress=False, cpu=True)
    test = image_folder(args.test)
    if args.n_test: test = dict(list(test.items())[:args.n_test])
    confs = [Confounder("gaussian_noise", 25, True), Confounder("gaussian_noise", 50, True)]
    summary = {"args": vars(args), "n_test_images": len(test), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    runs = {}
    for method, backbone in [("lir", args.lir_backbone), ("erm", args.erm_backbone)]:
        t = time.perf_counter()
        extra = {"lir": {"noise": "pooled"}} if method == "lir" else {}   # bench/lir_ablation.py: one noise setting per model
        r = fit(method=method, backbone=backbone, output_dir=f"{args.out}/{method}", resume=True, **common, **extra)
        summary[f"{method}_train_seconds"] = time.perf_counter() - t
        runs[method] = r
        print(f"{method}: trained {args.steps} steps in {summary[f'{method}_train_seconds']:.0f} s", flush=True)
    psnr = {}
    for name, model in [("noisy input", None), ("LIR", runs["lir"].model), ("ERM", runs["erm"].model)]:
        t = time.perf_counter()
        df = evaluate(model, test, confs, protocol="dil", dataset="CBSD68", progress=False, metrics=("psnr",))
        psnr[name] = {int(k): round(v, 2) for k, v in df.groupby("degree").psnr.mean().items()}
        print(f"{name}: PSNR {psnr[name]} ({time.perf_counter() - t:.0f} s)", flush=True)
    summary["psnr"] = psnr
    h = runs["lir"].history
    summary["latent_acc_train_last"] = round(float(h.latent_acc.tail(5).mean()), 3)
    summary["latent_acc_held_out"] = round(held_out_latent_accuracy(runs["lir"].model, test, (25, 50)), 3)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    Path(args.out, "summary.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary, indent=2))

if __name__ == "__main__":
    main()
