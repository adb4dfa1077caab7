"""Big uploads: a 12000 x 8000 JPEG through `Segmenter.run`, decoded at reduced size (ours: JPEG DCT scaling,
chosen so the described region keeps its 4 MP) vs decoded in full (the obvious alternative), each in a
fresh process: wall time and extra peak memory (VmHWM after a warm-up image). Also a 12-MP phone photo,
which always decodes in full.

Run: python benchmarks/bench_decode.py   (writes the test JPEGs to a temporary folder; CAST-S, 2 threads)
"""
from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np
from skimage import data

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _timing import table  # noqa: E402

CHILD = """
import re, sys, time, torch
torch.set_num_threads(2)

def peak_kib():  # VmHWM: this process's own peak (ru_maxrss would carry the parent's over fork + exec)
    return int(re.search(r"VmHWM:\\s+(\\d+)", open("/proc/self/status").read()).group(1))

import cast
segmenter = cast.Segmenter(cast.create_model("cast_small"))
if sys.argv[2] == "full":
    segmenter.reduction_for = lambda width, height: 1
segmenter.run({warm!r})
base = peak_kib()
start = time.perf_counter()
result = segmenter.run_detailed(sys.argv[1])
elapsed = (time.perf_counter() - start) * 1000
peak = peak_kib()
h = result.hierarchy
print(f"{{elapsed:.0f}} {{(peak - base) / 1024:.0f}} {{result.timings_ms['decode']:.0f}} {{h.provenance['decoded_scale']}} {{h.shape[1]}}x{{h.shape[0]}}")
"""


def photo(width: int, height: int, path: Path) -> Path:
    """A photo-like JPEG of the given size (the astronaut upscaled, with sensor-like noise)."""
    img = cv2.resize(data.astronaut(), (width, height), interpolation=cv2.INTER_CUBIC)
    noise = np.random.default_rng(0).integers(-8, 9, img.shape)
    img = np.clip(img.astype(np.int16) + noise, 0, 255).astype(np.uint8)
    cv2.imwrite(str(path), cv2.cvtColor(img, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 90])
    return path


def run(path: Path, mode: str) -> list[str]:
    code = CHILD.format(warm=str(ROOT / "assets" / "chelsea_cat.jpg"))
    out = subprocess.run([sys.executable, "-c", code, str(path), mode], cwd=ROOT, capture_output=True, text=True,
                         check=True, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1"})
    return out.stdout.split()


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        big = photo(12000, 8000, Path(tmp) / "big.jpg")
        phone = photo(4000, 3000, Path(tmp) / "phone.jpg")
        rows = []
        for label, path in (("12000×8000 JPEG (96 MP)", big), ("4000×3000 JPEG (12 MP)", phone)):
            for mode in ("reduced", "full"):
                ms, mib, decode, scale, canvas = run(path, mode)
                rows.append([label, "reduced decode (ours)" if mode == "reduced" else "full decode", ms, mib, decode,
                             f"1/{scale}", canvas])
    print("Segmenter.run on a big upload, CAST-S, 2 threads, fresh process per row\n")
    print(table(["image", "decoding", "Segmenter.run ms", "extra peak MiB", "decode ms", "scale", "label maps"], rows))


if __name__ == "__main__":
    main()
