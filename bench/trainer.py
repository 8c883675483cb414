"""Trainer speed, measured in one run on one machine.

1. Time per forward/backward pass of every method, as a ratio to ERM (goals: dil_sf, dil_pf <= 1.15; dil_ss,
   dil_ps <= 3). Each method trains through `fit` for WARMUP + STEPS outer steps; the rate is taken over the last
   STEPS, from the history's wall-clock column.
2. The outer-step time of `dil_sf` against a loop written in the public code's style (a deep copy of the
   state_dict into the task network every step, one DataLoader per noise level whose dataset adds the noise, the
   meta-gradient from two state_dicts) on the same backbone, patch, batch, device and number of DataLoader workers
   (goal: >= 1.3x faster). Our loop runs with fit's defaults (on the CPU: the channels-last memory format for ERM
   and first-order DIL); the dil_sf outer step is also timed with channels_last=False, to show that gain on its own.

Usage: python bench/trainer.py [--backbone rrdb-tiny] [--patch 32] [--batch 8] [--steps 20] [--threads 2]
                               [--device auto|cpu|cuda] [--workers 0]
"""
import argparse, copy, tempfile, time

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from dil_causal.data import PatchDataset, load_images
from dil_causal.models import build
from dil_causal.train import fit

METHODS = ("erm", "dil_sf", "dil_pf", "dil_ss", "dil_ps")
SIGMAS = (5, 10, 15, 20)


def sync(device):
    if device.type == "cuda": torch.cuda.synchronize()


def per_pass_seconds(name, method, args, tmp, **overrides):
    steps = args.warmup + args.steps
    r = fit(method=method, **overrides, backbone=args.backbone, patch_size=args.patch, batch_size=args.batch, steps=steps,
            log_every=args.warmup, lr=1e-4, output_dir=f"{tmp}/{name.replace(' ', '_')}", progress=False, seed=0,
            workers=args.workers, cpu=args.device.type == "cpu")  # history rows at warm-up and end (each syncs)
    h = r.history.set_index("step")
    t = h.seconds[steps] - h.seconds[args.warmup]
    p = h.passes[steps] - h.passes[args.warmup]
    return t / p, t / args.steps


class NoisyPatches(Dataset):
    "The public code's per-level dataset: (noisy, clean) pairs at one sigma, noise from the global RNG."
    def __init__(self, patches, sigma): self.patches, self.sigma = patches, sigma
    def __len__(self): return len(self.patches)
    def __getitem__(self, i):
        clean = self.patches[i]
        return (clean + torch.randn_like(clean) * self.sigma / 255).clamp(0, 1), clean


def public_style_outer_seconds(args):
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
    return sum(times[args.warmup:]) / args.steps


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
    ap.add_argument("--repeats", type=int, default=2, help="rounds over all methods; the fastest of each is kept")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    args.device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                               "cpu" if args.device == "auto" else args.device)
    hw = torch.cuda.get_device_name() if args.device.type == "cuda" else f"CPU, {args.threads} threads"
    print(f"torch {torch.__version__}, {hw}, {args.backbone}, batch {args.batch}x3x{args.patch}x{args.patch}, "
          f"{args.workers} DataLoader workers, {args.steps} timed outer steps after {args.warmup} warm-up, "
          f"best of {args.repeats} rounds")
    with tempfile.TemporaryDirectory() as tmp:  # rounds interleaved; the faster of each is kept (shared machines)
        # the dil_sf outer step also with channels_last=False, so the gain of the memory format shows on its own
        variants = {**{m: (m, {}) for m in METHODS}, "dil_sf NCHW": ("dil_sf", {"channels_last": False})}
        rounds = [{k: per_pass_seconds(k, m, args, tmp, **kw) for k, (m, kw) in variants.items()} for _ in range(args.repeats)]
        rows = {k: min((r[k] for r in rounds), key=lambda t: t[0]) for k in variants}
        public = min(public_style_outer_seconds(args) for _ in range(args.repeats))
    base = rows["erm"][0]
    print(f"\n{'method':12s} {'ms/pass':>9s} {'ratio to ERM':>13s} {'ms/outer step':>14s}")
    for m, (pp, ps) in rows.items(): print(f"{m:12s} {pp * 1e3:9.1f} {pp / base:13.2f} {ps * 1e3:14.1f}")
    ours, nchw = rows["dil_sf"][1], rows["dil_sf NCHW"][1]
    print(f"\ndil_sf outer step: ours {ours * 1e3:.1f} ms, public-style loop {public * 1e3:.1f} ms "
          f"-> ours is {public / ours:.2f}x as fast (with channels_last=False: {nchw * 1e3:.1f} ms, {public / nchw:.2f}x)")


if __name__ == "__main__":
    main()
