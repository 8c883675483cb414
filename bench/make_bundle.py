"""Make the data bundle of the GPU study (`dil-causal study ... --study gpu-denoise`): at most 40 MB, copied into a
git-ignored folder of the repository (`bundle/`) so that it travels with the working tree to a GPU machine, where it is
the study's data root: `dil-causal study plan|run STORE --data bundle`.

It holds CBSD432_jpg (the training JPEGs, as they are: the units' data digest equals the one on the full folder) and
the study's test images: the 12 seeded images of CBSD68 and of Kodak24 (random.Random(0) over the sorted names, as
`dil_causal.study.load_test_set` picks them), centre-cropped to 192 px and saved as PNG (lossless). The study reads
all 12 of a 12-image folder and crops them again to 192 px, which changes nothing, so the bundle's measurements equal
those on the full folders. A MANIFEST.sha256 lists every file.

Usage: python bench/make_bundle.py [--data ../shared/data] [--out bundle]
"""
import argparse, hashlib, os, random, shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=os.environ.get("DIL_DATA") or str(ROOT.parent / "shared" / "data"))
    ap.add_argument("--out", default=str(ROOT / "bundle"))
    ap.add_argument("--images", type=int, default=12); ap.add_argument("--crop", type=int, default=192)
    args = ap.parse_args(argv)
    from PIL import Image
    from dil_causal.data import image_files
    src, out = Path(args.data), Path(args.out)
    if out.exists(): shutil.rmtree(out)
    shutil.copytree(src / "CBSD432_jpg", out / "CBSD432_jpg", ignore=shutil.ignore_patterns("SOURCE.txt"))
    for name in ("CBSD68", "Kodak24"):
        files = image_files(src / name)
        files = sorted(random.Random(0).sample(files, args.images)) if args.images < len(files) else files
        (out / name).mkdir(parents=True)
        for f in files:
            with Image.open(f) as im:
                w, h = im.size; c = args.crop
                t, l = max(0, (h - c) // 2), max(0, (w - c) // 2)
                im.convert("RGB").crop((l, t, l + min(c, w), t + min(c, h))).save(out / name / f"{f.stem}.png")
    files = sorted(p for p in out.rglob("*") if p.is_file())
    (out / "MANIFEST.sha256").write_text("".join(f"{hashlib.sha256(p.read_bytes()).hexdigest()}  {p.relative_to(out)}\n" for p in files))
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    print(f"wrote {out}: {len(files)} files, {size / 2**20:.1f} MiB")
    if size > 40 * 2**20: raise SystemExit(f"the bundle is {size / 2**20:.1f} MiB, over the 40 MiB it may take")


if __name__ == "__main__":
    main()
