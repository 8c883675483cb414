"""Trainer speed, measured in one run on one machine.

1. Time per forward/backward pass of every method, as a ratio to ERM (goals: dil_sf, dil_pf <= 1.15; dil_ss,
   dil_ps <= 3). Each method trains through `fit` for WARMUP + STEPS outer steps, logging every step; each step's
   time is the difference of consecutive rows of the history's wall-clock column (so it includes fit's per-step
   logging), the warm-up steps are dropped.
2. The outer-step time of `dil_sf` against a loop written in the public code's style (a deep copy of the
   state_dict into the task network every step, one DataLoader per noise level whose dataset adds the noise, the
   meta-gradient from two state_dicts) on the same backbone, patch, batch, device and number of DataLoader workers
   (goal: >= 1.3x faster). Our loop runs with fit's defaults (on the CPU: the channels-last memory format for ERM
   and first-order DIL); the dil_sf outer step is also timed with channels_last=False, to show that gain on its own.

Timing on shared machines: every method and the public-style loop run once per round, rounds interleaved, and each
figure is the median of all timed steps of all rounds (a neighbour's burst moves single steps, not the median). The
outer-step ratio is also given per round, as its spread.

Usage: python bench/trainer.py [--backbone rrdb-tiny] [--patch 32] [--batch 8] [--steps 20] [--threads 2]
                               [--device auto|cpu|cuda] [--workers 0]
"""
import argparse, copy, statistics, tempfile, time

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from dil_causal.data import PatchDataset, load_images
from dil_causal.models import build
from dil_causal.train import METHODS as RECORDS, fit, paired_patches

METHODS = tuple(m for m, r in RECORDS.items() if r.data is paired_patches)  # the methods trained on paired patches
SIGMAS = (5, 10, 15, 20)


def sync(device):
    if device.type == "cuda": torch.cuda.synchronize()


def fit_step_seconds(name, method, args, tmp, **overrides) -> tuple[list[float], int]:
    "Seconds of each timed outer step of `fit` (history logged every step) and the passes per outer step."
    r = fit(method=method, **overrides, backbone=args.backbone, patch_size=args.patch, batch_size=args.batch,
            steps=args.warmup + args.steps, log_every=1, lr=1e-4, output_dir=f"{tmp}/{name.replace(' ', '_')}",
            progress=False, seed=0, workers=args.workers, cpu=args.device.type == "cpu", overwrite=True)  # each row syncs (.item())
    h = r.history
    seconds = h.seconds.diff().iloc[args.warmup:].tolist()  # row k - row k-1: step k alone
    return seconds, int(h.passes.iloc[-1] - h.passes.iloc[-2])


class NoisyPatches(Dataset):
    "The public code's per-level dataset: (noisy, clean) pairs at one sigma, noise from the global RNG."
    def __init__(self, patches, sigma): self.patches, self.sigma = patches, sigma
    def __len__(self): return len(self.patches)
    def __getitem__(self, i):
        clean = self.patches[i]
        return (clean + torch.randn_like(clean) * self.sigma / 255).clamp(0, 1), clean


def public_style_step_seconds(args) -> list[float]:
    "dil_sf in the public code's style: state_dict deep copy per step, one DataLoader per level."
    torch.manual_seed(0)
    dev = args.device
    images = load_images("skimage")
    meta, task = build(args.backbone).to(dev), build(args.backbone).to(dev)
    meta_opt = torch.optim.Adam(meta.parameters(), lr=1e-4)
    task_opt = torch.optim.Adam(task.parameters(), lr=1e-4, betas=(0.0, 0.999))
    n = (args.warmup + args.steps) * args.batch
    loaders = [iter(DataLoader(NoisyPatches(PatchDataset(images, args.patch, n, seed=level), sigma),
                               batch_size=args.batch, num_workers=args.workers, pin_memory=dev.type == "cuda"))
               for level, sigma in enumerate(SIGMAS)]
    times = []
    for step in range(args.warmup + args.steps):
        sync(dev)
        t0 = time.perf_counter()
        task.load_state_dict(copy.deepcopy(meta.state_dict()))
        for level in torch.randperm(len(SIGMAS)).tolist():
            noisy, clean = (t.to(dev) for t in next(loaders[level]))
            loss = F.l1_loss(task(noisy), clean)
            task_opt.zero_grad(); loss.backward(); task_opt.step()
        meta_sd, task_sd = meta.state_dict(), task.state_dict()
        for name, p in meta.named_parameters(): p.grad = meta_sd[name] - task_sd[name]
        meta_opt.step(); meta_opt.zero_grad()
        loss.item()  # the public loop logs its loss every step
        sync(dev)
        times.append(time.perf_counter() - t0)
    return times[args.warmup:]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backbone", default="rrdb-tiny")
    ap.add_argument("--patch", type=int, default=32)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--workers", type=int, default=0, help="DataLoader worker processes (both loops)")
    ap.add_argument("--device", default="auto", help="auto (the GPU if there is one), cpu or cuda")
    ap.add_argument("--repeats", type=int, default=3, help="interleaved rounds over all methods and the public-style loop")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    args.device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                               "cpu" if args.device == "auto" else args.device)
    hw = torch.cuda.get_device_name() if args.device.type == "cuda" else f"CPU, {args.threads} threads"
    print(f"torch {torch.__version__}, {hw}, {args.backbone}, batch {args.batch}x3x{args.patch}x{args.patch}, "
          f"{args.workers} DataLoader workers, {args.steps} timed outer steps after {args.warmup} warm-up, "
          f"median over {args.repeats} interleaved rounds")
    # the dil_sf outer step also with channels_last=False, so the gain of the memory format shows on its own
    variants = {**{m: (m, {}) for m in METHODS}, "dil_sf NCHW": ("dil_sf", {"channels_last": False})}
    steps, passes, public = {k: [] for k in variants}, {}, []
    per_round = []  # (public, ours, NCHW) median outer step of each round
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.repeats):
            for k, (m, kw) in variants.items():
                secs, passes[k] = fit_step_seconds(k, m, args, tmp, **kw)
                steps[k].append(secs)
            public.append(public_style_step_seconds(args))
            per_round.append([statistics.median(t[-1]) for t in (public, steps["dil_sf"], steps["dil_sf NCHW"])])
    outer = {k: statistics.median(sum(v, [])) for k, v in steps.items()}
    per_pass = {k: outer[k] / passes[k] for k in variants}
    print(f"\n{'method':12s} {'ms/pass':>9s} {'ratio to ERM':>13s} {'ms/outer step':>14s}")
    for k in variants: print(f"{k:12s} {per_pass[k] * 1e3:9.1f} {per_pass[k] / per_pass['erm']:13.2f} {outer[k] * 1e3:14.1f}")
    pub, ours, nchw = statistics.median(sum(public, [])), outer["dil_sf"], outer["dil_sf NCHW"]
    spread = lambda i: f"{min(r[0] / r[i] for r in per_round):.2f}-{max(r[0] / r[i] for r in per_round):.2f}"
    print(f"\ndil_sf outer step: ours {ours * 1e3:.1f} ms, public-style loop {pub * 1e3:.1f} ms "
          f"-> ours is {pub / ours:.2f}x as fast (rounds: {spread(1)}); "
          f"with channels_last=False {nchw * 1e3:.1f} ms, {pub / nchw:.2f}x (rounds: {spread(2)})")


if __name__ == "__main__":
    main()
