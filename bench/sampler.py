"""Cost of the confounder sampler beside one training step.

Prints, for each preset, the time to distort one 16x3x64x64 clean batch into its n counterfactual versions (serial
DIL variants) and its pooled mixture (ERM, parallel variants), against one forward/backward/Adam step of the default
backbone on the same batch, measured in the same run, as a ratio (goal: under 0.1).

    python bench/sampler.py [--backbone rrdb-tiny] [--batch 16] [--size 64] [--repeats 5] [--threads 1] [--presets ...]

On a machine shared with other jobs, `--threads 1` avoids OpenMP threads waiting on each other, which inflates
small element-wise operations far more than the convolutions of the training step.
"""
import argparse, time

import torch

from dil_causal.models import build
from dil_causal.sampler import ConfounderSampler, PRESETS


def timed(fn, repeats):
    "Median wall time of `fn()` over `repeats` runs, after one warm-up."
    fn()
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter(); fn(); ts.append(time.perf_counter() - t0)
    return sorted(ts)[len(ts) // 2]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backbone", default="rrdb-tiny")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--presets", nargs="*", default=list(PRESETS))
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice); use 1 on a busy machine")
    a = ap.parse_args()
    if a.threads: torch.set_num_threads(a.threads)

    clean = torch.rand(a.batch, 3, a.size, a.size, generator=torch.Generator().manual_seed(0))
    model = build(a.backbone)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    noisy = clean + 0.05 * torch.randn_like(clean)

    def train_step():
        opt.zero_grad()
        torch.nn.functional.l1_loss(model(noisy), clean).backward()
        opt.step()

    t_step = timed(train_step, a.repeats)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; batch {a.batch}x3x{a.size}x{a.size}")
    print(f"one {a.backbone} training step (fwd+bwd+Adam): {t_step * 1e3:.1f} ms")
    print(f"{'preset':<12}{'n':>3}{'counterfactual ms':>19}{'ratio':>8}{'pooled ms':>11}{'ratio':>8}")
    for name in a.presets:
        s = ConfounderSampler(name)
        g = torch.Generator().manual_seed(0)
        t_cf = timed(lambda: s.counterfactual(clean, g), a.repeats)
        t_pool = timed(lambda: s.pooled(clean, g), a.repeats)
        print(f"{name:<12}{len(s):>3}{t_cf * 1e3:>19.1f}{t_cf / t_step:>8.3f}{t_pool * 1e3:>11.1f}{t_pool / t_step:>8.3f}")


if __name__ == "__main__":
    main()
