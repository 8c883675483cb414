"""Issue 19, data side: crafted archives, decompression bombs, odd files, killed downloads (regression tests)."""
import io, os, signal, struct, subprocess, sys, tarfile, time, zipfile, zlib
from pathlib import Path

import numpy as np
import pytest
import skimage.data
import tifffile
import torch
from PIL import Image

from dil_causal.data import (DATASETS, DatasetSpec, archive_kind, download_dataset, load_images, read_image, safe_extract,
                             sha256_file)


def add(t, name, kind=tarfile.REGTYPE, link="", data=b""):
    i = tarfile.TarInfo(name); i.type, i.linkname, i.size = kind, link, len(data)
    t.addfile(i, io.BytesIO(data) if kind == tarfile.REGTYPE else None)


def cve_2025_4517_tar(path: Path) -> Path:
    "The published bypass of filter='data': symlinks through directories whose real path exceeds PATH_MAX, then a link out."
    comp, steps = "d" * 247, "abcdefghijklmnop"
    with tarfile.open(path, "w") as t:
        p = ""
        for s in steps:
            add(t, os.path.join(p, comp), tarfile.DIRTYPE)
            add(t, os.path.join(p, s), tarfile.SYMTYPE, comp)
            p = os.path.join(p, comp)
        link = os.path.join(*steps, "l" * 254)
        add(t, link, tarfile.SYMTYPE, "../" * len(steps))
        add(t, "escape", tarfile.SYMTYPE, link + "/../outside")
        add(t, "escape/pwned.txt", data=b"pwned")
    return path


def test_tar_filter_bypass_is_refused_on_the_running_python(tmp_path):
    "CVE-2025-4517: the stdlib's filter='data' is shown to be bypassed where it is; safe_extract refuses the archive."
    tar = cve_2025_4517_tar(tmp_path / "x.tar")
    (tmp_path / "outside").mkdir()
    stdlib_root = tmp_path / "stdlib"; stdlib_root.mkdir()
    try:
        with tarfile.open(tar) as t: t.extractall(stdlib_root, filter="data")
    except Exception: pass
    vulnerable = (tmp_path / "outside" / "pwned.txt").exists()
    print(f"Python {sys.version.split()[0]}: tarfile filter='data' {'IS' if vulnerable else 'is not'} bypassed by this archive")
    (tmp_path / "outside" / "pwned.txt").unlink(missing_ok=True)
    with pytest.raises(ValueError, match="link or a special file; refusing the archive"):
        safe_extract(tar, tmp_path / "ours", "tar")
    assert not (tmp_path / "outside" / "pwned.txt").exists()


@pytest.mark.parametrize("members", [
    [("../evil.txt", tarfile.REGTYPE, "", b"x")],
    [("/tmp/evil-dil-causal.txt", tarfile.REGTYPE, "", b"x")],
    [("a", tarfile.SYMTYPE, ".", b""), ("a/b", tarfile.SYMTYPE, "..", b""), ("a/b/evil.txt", tarfile.REGTYPE, "", b"x")],
    [("h", tarfile.LNKTYPE, "../evil.txt", b"")],
    [("dev", tarfile.CHRTYPE, "", b"")],
], ids=["dotdot", "absolute", "symlink-chain", "hardlink", "device"])
def test_tar_slips_are_refused(tmp_path, members):
    with tarfile.open(tmp_path / "a.tar", "w") as t:
        for m in members: add(t, *m)
    with pytest.raises(ValueError, match="refusing the archive"):
        safe_extract(tmp_path / "a.tar", tmp_path / "root", "tar")
    assert not (tmp_path / "evil.txt").exists() and not Path("/tmp/evil-dil-causal.txt").exists()


def test_zip_symlink_and_slip_are_refused(tmp_path):
    with zipfile.ZipFile(tmp_path / "l.zip", "w") as z:
        info = zipfile.ZipInfo("link"); info.external_attr = (0o120777 << 16); z.writestr(info, "../../etc")
    with pytest.raises(ValueError, match="'link' is a link"):
        safe_extract(tmp_path / "l.zip", tmp_path / "r", "zip")
    with zipfile.ZipFile(tmp_path / "s.zip", "w") as z: z.writestr("a/../../evil.txt", "x")
    with pytest.raises(ValueError, match="outside the extraction folder"):
        safe_extract(tmp_path / "s.zip", tmp_path / "r2", "zip")
    assert not (tmp_path / "evil.txt").exists()


def test_registry_is_https_with_checksums_and_the_type_comes_from_the_name(tmp_path):
    assert all(s.url is None or s.url.startswith("https://") for s in DATASETS.values())
    assert all(s.checksums for s in DATASETS.values() if s.url and "FFDNet" in s.url)
    assert "not recorded" in DATASETS["DIV2K"].source
    # a zip archive named .tar is read as a tar (and fails), not sniffed as a zip
    with zipfile.ZipFile(tmp_path / "set.tar", "w") as z: z.writestr("bundle/Set5/a.png", b"x")
    spec = DatasetSpec("Set5", 1, (tmp_path / "set.tar").as_uri(), member="bundle/Set5")
    assert archive_kind(spec) == "tar"
    with pytest.raises(ValueError, match="is not a tar archive"):
        download_dataset(spec, tmp_path / "root", progress=False)
    with pytest.raises(ValueError, match="only https"):
        download_dataset(DatasetSpec("Set5", 1, "http://example.org/x.zip"), tmp_path / "root", progress=False)


def test_a_recorded_hash_is_enforced(tmp_path):
    with zipfile.ZipFile(tmp_path / "s.zip", "w") as z: z.writestr("b/Set5/a.png", b"x")
    bad = DatasetSpec("Set5", 1, (tmp_path / "s.zip").as_uri(), "1" * 64, member="b/Set5")
    with pytest.raises(ValueError, match="expected 1111"):
        download_dataset(bad, tmp_path / "root", progress=False)
    assert list((tmp_path / "root").iterdir()) == []


def test_killed_download_leaves_no_partial_folder(tmp_path):
    "kill -9 during the fetch (the source is a FIFO that never delivers): the next download removes the work folder."
    os.mkfifo(tmp_path / "slow.zip")
    root = tmp_path / "root"
    code = (f"from dil_causal.data import DatasetSpec, download_dataset\n"
            f"download_dataset(DatasetSpec('Set5', 1, {(tmp_path / 'slow.zip').as_uri()!r}, member='b'), {str(root)!r}, progress=False)")
    p = subprocess.Popen([sys.executable, "-c", code])
    for _ in range(200):
        if root.is_dir() and any(root.iterdir()): break
        time.sleep(0.1)
    p.send_signal(signal.SIGKILL); p.wait()
    assert [q.name.split("-")[0] for q in root.iterdir()] == [".Set5"]      # what the killed run left
    with zipfile.ZipFile(tmp_path / "s.zip", "w") as z: z.writestr("b/Set5/a.png", b"x")
    good = DatasetSpec("Set5", 1, (tmp_path / "s.zip").as_uri(), sha256_file(tmp_path / "s.zip"), member="b/Set5")
    download_dataset(good, root, progress=False)
    assert [q.name for q in root.iterdir()] == ["Set5"]


def png_bomb(path, w, h):
    z = zlib.compressobj(9)
    data = b"".join(z.compress(b"\0" * (w + 1)) for _ in range(h)) + z.flush()
    chunk = lambda kind, body: struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0))
                     + chunk(b"IDAT", data) + chunk(b"IEND", b""))


def test_decompression_bombs_are_refused_before_decoding(tmp_path):
    "A 420 KB TIFF of 20480 x 20480 pixels and a small PNG of 100 megapixels: refused from the header, fast."
    zeros = np.zeros((1024, 1024), np.uint8)
    tifffile.imwrite(tmp_path / "bomb.tif", (zeros for _ in range(400)), shape=(20480, 20480), dtype="uint8",
                     compression="zlib", tile=(1024, 1024))
    png_bomb(tmp_path / "bomb.png", 10_000, 10_000)
    for name in ("bomb.tif", "bomb.png"):
        assert (tmp_path / name).stat().st_size < 500_000
        t0 = time.time()
        with pytest.raises(ValueError, match=f"{name} claims .* pixels, more than max_pixels"):
            read_image(tmp_path / name)
        assert time.time() - t0 < 1.0
    small = tmp_path / "small.png"; png_bomb(small, 64, 48)
    assert read_image(small).shape == (3, 48, 64)
    with pytest.raises(ValueError, match="more than max_pixels=1,000"):
        read_image(small, max_pixels=1000)


def test_fifo_named_png_does_not_hang(tmp_path):
    os.mkfifo(tmp_path / "x.png")
    t0 = time.time()
    with pytest.raises(ValueError, match="x.png: not a regular file"):
        read_image(tmp_path / "x.png")
    assert time.time() - t0 < 2


def test_cmyk_jpeg_is_converted_and_transparency_is_explicit(tmp_path):
    rgb = skimage.data.coffee()[:40, :60]
    Image.fromarray(rgb).convert("CMYK").save(tmp_path / "cmyk.jpg", quality=95)
    x = read_image(tmp_path / "cmyk.jpg")
    assert x.shape == (3, 40, 60) and (x - torch.from_numpy(rgb).permute(2, 0, 1) / 255).abs().mean() < 0.03
    pal = Image.fromarray(rgb).convert("P")
    pal.save(tmp_path / "pal.png", transparency=0)
    with pytest.raises(ValueError, match="pal.png has a transparent colour"):
        read_image(tmp_path / "pal.png")
    Image.fromarray(rgb).save(tmp_path / "trns.png", transparency=(0, 0, 0))
    with pytest.raises(ValueError, match="trns.png has a transparent colour"):
        read_image(tmp_path / "trns.png")


def test_empty_data_source_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Image.fromarray(skimage.data.coffee()).save(tmp_path / "here.png")   # the working directory holds an image
    with pytest.raises(ValueError, match="no image source given"):
        load_images("")
