"""Cross-check helper for tests/io/test_gguf.c: read a GGUF file with the
reference `gguf` package and print every metadata value ("meta KEY VALUE") and
every tensor ("tensor NAME TYPE SUM XOR", two 64-bit checksums of the bits of
gguf.quants.dequantize: sum of bits[i] * (2i + 1) mod 2^64, and the XOR).
Exits 77 when the package is not installed."""
import sys

try:
    import numpy as np
    import gguf
except ImportError:
    sys.exit(77)


def main(path):
    r = gguf.GGUFReader(path)
    for name, field in r.fields.items():
        if name.startswith("GGUF."):
            continue
        print("meta", name, field.contents())
    for t in r.tensors:
        deq = np.ascontiguousarray(gguf.quants.dequantize(t.data, t.tensor_type), dtype=np.float32)
        bits = deq.reshape(-1).view(np.uint32).astype(np.uint64)
        w = np.arange(bits.size, dtype=np.uint64) * np.uint64(2) + np.uint64(1)
        with np.errstate(over="ignore"):
            s = int(np.sum(bits * w, dtype=np.uint64))
        print("tensor", t.name, t.tensor_type.name, s, int(np.bitwise_xor.reduce(bits)))


if __name__ == "__main__":
    main(sys.argv[1])
