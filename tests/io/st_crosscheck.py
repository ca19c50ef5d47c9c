"""Cross-check helper for tests/io/test_safetensors.c, using the reference
`safetensors` package.

  st_crosscheck.py read  FILE MANIFEST RAW        parse FILE with the package
  st_crosscheck.py write FILE MANIFEST RAW SEED   write FILE with safetensors.numpy

Both then describe every tensor the package sees in FILE, one line each in
MANIFEST ("tensor NAME DTYPE NDIM DIMS... NBYTES", then "meta KEY VALUE"
lines), and append its raw bytes to RAW in the same order, so the C test can
compare with gllm bit for bit.
"""
import sys

import numpy as np
from safetensors import deserialize, safe_open
from safetensors.numpy import save_file


def describe(path, manifest, raw):
    with open(path, "rb") as f:
        items = deserialize(f.read())
    with safe_open(path, framework="numpy") as f:
        metadata = f.metadata() or {}
    with open(manifest, "w") as m, open(raw, "wb") as r:
        for name, t in items:
            shape = t["shape"]
            dims = "".join(f" {d}" for d in shape)
            m.write(f"tensor {name} {t['dtype']} {len(shape)}{dims} {len(t['data'])}\n")
            r.write(bytes(t["data"]))
        for key, value in metadata.items():
            m.write(f"meta {key} {value}\n")
    return dict(items)


def write(path, manifest, raw, seed):
    rng = np.random.default_rng(seed)
    arrays = {
        "embed.weight": rng.standard_normal((6, 5)).astype(np.float32),
        "norm.weight": rng.standard_normal(7).astype(np.float16),
        "ids": rng.integers(-(2**31), 2**31, size=(3, 4), dtype=np.int32),
        "positions": rng.integers(-(2**62), 2**62, size=9, dtype=np.int64),
        "mask": rng.integers(0, 256, size=(2, 2, 3), dtype=np.uint8),
        "scale": np.array(rng.standard_normal(), dtype=np.float32),
    }
    save_file(arrays, path, metadata={"format": "np", "seed": str(seed)})
    seen = describe(path, manifest, raw)
    for name, a in arrays.items():
        if bytes(seen[name]["data"]) != a.tobytes():
            sys.exit(f"safetensors read back {name} differently from what it wrote")


if __name__ == "__main__":
    if sys.argv[1] == "read":
        describe(*sys.argv[2:5])
    else:
        write(*sys.argv[2:5], int(sys.argv[5]))
