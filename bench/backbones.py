"""Restoration throughput and peak memory of every backbone preset on CPU, tiled and untiled.

    python bench/backbones.py                 # the default sizes below (about ten minutes on 2 busy cores)
    python bench/backbones.py --size 2048     # every preset at 2048x2048 (full-size presets take hours on a CPU)

Each measurement runs in a fresh subprocess, so that its peak resident set size (`ru_maxrss`) is its own; the
figure includes Python, PyTorch and the model (printed separately as `base`: the peak before `restore` starts).
Untiled runs get an address-space cap (`--cap-gb`) so that one that does not fit fails instead of swapping the
machine; it is then reported as not fitting. The test image is scikit-image's astronaut photo, mirrored out to the
requested size. `max|t-w|` is the largest difference between the tiled and the untiled output (before clipping).
"""
from __future__ import annotations

import argparse, json, os, resource, subprocess, sys, tempfile, time
from pathlib import Path

# size (pixels per side) per preset: 2048 where a CPU run takes well under a minute, smaller for the full-size nets
SIZES = {"rrdb-tiny": 2048, "rrdb-small": 512, "rrdb": 128, "swinir-tiny": 2048, "swinir": 128,
         "dncnn-tiny": 2048, "dncnn": 512}

def child(name: str, size: int, tile: int, overlap: int, out: str):
    import numpy as np, skimage.data, torch
    from dil_causal.models import build
    from dil_causal.restore import restore
    torch.manual_seed(0)
    model = build(name).eval()
    photo = torch.from_numpy(skimage.data.astronaut()).permute(2, 0, 1).float() / 255
    reps = -(-size // 512)
    image = torch.cat([torch.cat([photo.flip(-1) if j % 2 else photo for j in range(reps)], -1).flip(-2) if i % 2
                       else torch.cat([photo.flip(-1) if j % 2 else photo for j in range(reps)], -1)
                       for i in range(reps)], -2)[:, :size, :size].contiguous()
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    t0 = time.perf_counter()
    y = restore(model, image, tile=tile or None, overlap=overlap, progress=False, clamp=False)
    seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    np.save(out, y.numpy())
    print(json.dumps({"seconds": seconds, "base_mb": base, "peak_mb": peak}))

def measure(name, size, tile, overlap, cap_gb, out):
    def limit():
        if cap_gb: resource.setrlimit(resource.RLIMIT_AS, (int(cap_gb * 2**30),) * 2)
    cmd = [sys.executable, __file__, "--child", name, str(size), str(tile), str(overlap), out]
    r = subprocess.run(cmd, capture_output=True, text=True, preexec_fn=limit if not tile else None)
    if r.returncode != 0:
        tail = (r.stderr.strip().splitlines() or ["?"])[-1]
        return {"error": "does not fit" if "memory" in r.stderr.lower() or r.returncode < 0 else tail}
    return json.loads(r.stdout.strip().splitlines()[-1])

def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=None, help="image side for every preset (default: per preset)")
    ap.add_argument("--tile", type=int, default=256, help="tile core size (halved for images under 2x the tile)")
    ap.add_argument("--overlap", type=int, default=32)
    ap.add_argument("--cap-gb", type=float, default=6.0, help="address-space cap for untiled runs")
    ap.add_argument("--presets", nargs="*", default=list(SIZES))
    ap.add_argument("--child", nargs=5, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        n, s, t, o, out = a.child
        return child(n, int(s), int(t), int(o), out)
    import torch
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}")
    print(f"{'preset':12} {'image':>10} {'tile':>9} {'MP/s':>8} {'s':>7} {'peak MB':>8} {'base MB':>8}   {'untiled MP/s':>12} {'s':>7} {'peak MB':>8}   {'max|t-w|':>9}")
    with tempfile.TemporaryDirectory() as d:
        for name in a.presets:
            size = a.size or SIZES[name]
            tile = a.tile if size >= 2 * a.tile else size // 2
            mp = size * size / 1e6
            t = measure(name, size, tile, a.overlap, None, f"{d}/t.npy")
            w = measure(name, size, 0, a.overlap, a.cap_gb, f"{d}/w.npy")
            if "error" in t:
                print(f"{name:12} {size:>5}x{size:<4} tiled run failed: {t['error']}"); continue
            tiled = f"{mp / t['seconds']:8.4f} {t['seconds']:7.1f} {t['peak_mb']:8.0f} {t['base_mb']:8.0f}"
            if "error" in w:
                whole, err = f"{'(' + w['error'] + f' in {a.cap_gb:g} GB)':>29}", "-"
            else:
                import numpy as np
                whole = f"{mp / w['seconds']:12.4f} {w['seconds']:7.1f} {w['peak_mb']:8.0f}"
                err = f"{np.abs(np.load(f'{d}/t.npy') - np.load(f'{d}/w.npy')).max():.1e}"
            print(f"{name:12} {size:>5}x{size:<4} {tile:>4}+{a.overlap:<4} {tiled}   {whole}   {err:>9}", flush=True)

if __name__ == "__main__":
    main()
