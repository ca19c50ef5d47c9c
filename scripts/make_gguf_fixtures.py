#!/usr/bin/env python3
"""GGUF reader fixtures, written with the `gguf` Python package (the reference):

tests/fixtures/gguf/quant.gguf  for every ggml type gllm dequantizes, a tensor
  "<TYPE>" of 3 x 512 elements (quantized by gguf's own quantizer where it has
  one, random blocks with finite scales for the K-quants, which it only
  dequantizes) and "<TYPE>.expected", gguf.quants.dequantize of it in F32;
  plus one metadata key of every value type (test.*), arrays of numbers, of
  strings and of arrays, and a custom alignment of 64.
tests/fixtures/gguf/smollm2_dequant.json  for every tensor of the real
  SmolLM2-135M-Instruct.Q4_1.gguf (when present): two 64-bit checksums of the
  bits of gguf's dequantize (sum of bits[i] * (2i + 1) mod 2^64, and the XOR).

Usage: python3 scripts/make_gguf_fixtures.py [path/to/SmolLM2-135M-Instruct.Q4_1.gguf]
"""
import json
import os
import sys

import numpy as np
import gguf
from gguf import GGMLQuantizationType as Q

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
OUT = os.path.join(ROOT, "tests", "fixtures", "gguf")

QUANTIZED = [Q.F32, Q.F16, Q.BF16, Q.Q4_0, Q.Q4_1, Q.Q5_0, Q.Q5_1, Q.Q8_0]
K_QUANTS = [Q.Q2_K, Q.Q3_K, Q.Q4_K, Q.Q5_K, Q.Q6_K]
# byte offsets of the f16 scales in each K-quant block (kept finite)
K_HALVES = {Q.Q2_K: [80, 82], Q.Q3_K: [108], Q.Q4_K: [0, 2], Q.Q5_K: [0, 2], Q.Q6_K: [208]}


def checksum(x: np.ndarray):
    bits = x.reshape(-1).view(np.uint32).astype(np.uint64)
    w = np.arange(bits.size, dtype=np.uint64) * np.uint64(2) + np.uint64(1)
    with np.errstate(over="ignore"):
        s = int(np.sum(bits * w, dtype=np.uint64))
    return s, int(np.bitwise_xor.reduce(bits)) if bits.size else 0


def make_quant(rng):
    w = gguf.GGUFWriter(os.path.join(OUT, "quant.gguf"), "llama")
    w.data_alignment = 64
    w.add_uint32("general.alignment", 64)
    w.add_uint8("test.u8", 200)
    w.add_int8("test.i8", -100)
    w.add_uint16("test.u16", 60000)
    w.add_int16("test.i16", -30000)
    w.add_uint32("test.u32", 4000000000)
    w.add_int32("test.i32", -2000000000)
    w.add_float32("test.f32", 0.15625)
    w.add_bool("test.bool", True)
    w.add_string("test.str", "héllo, GGUF")
    w.add_uint64("test.u64", 1 << 40)
    w.add_int64("test.i64", -(1 << 40))
    w.add_float64("test.f64", 2.718281828459045)
    w.add_array("test.arr_i32", [1, -2, 3])
    w.add_array("test.arr_f32", [0.5, -1.25])
    w.add_array("test.arr_str", ["a", "", "ccc"])
    w.add_array("test.arr_arr", [[1, 2], [3]])
    for qt in QUANTIZED + K_QUANTS:
        bs, ts = gguf.GGML_QUANT_SIZES[qt]
        rows, cols = 3, 512
        if qt in QUANTIZED:
            x = (rng.standard_normal((rows, cols)) * 0.5).astype(np.float32)
            raw = gguf.quants.quantize(x, qt)
        else:
            raw = rng.integers(0, 256, size=(rows, cols // bs * ts), dtype=np.uint8)
            blocks = raw.reshape(-1, ts)
            for off in K_HALVES[qt]:
                h = (rng.standard_normal(blocks.shape[0]) * 0.01).astype(np.float16)
                blocks[:, off:off + 2] = h.view(np.uint8).reshape(-1, 2)
            raw = blocks.reshape(rows, -1)
        deq = gguf.quants.dequantize(raw, qt).astype(np.float32, copy=False)
        assert deq.shape == (rows, cols), (qt, deq.shape)
        w.add_tensor(qt.name, raw, raw_dtype=qt)
        w.add_tensor(qt.name + ".expected", np.ascontiguousarray(deq))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def make_real(path):
    r = gguf.GGUFReader(path)
    sums = {}
    for t in r.tensors:
        deq = gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float32, copy=False)
        s, x = checksum(np.ascontiguousarray(deq))
        sums[t.name] = {"type": t.tensor_type.name, "n": int(deq.size), "sum": str(s), "xor": str(x)}
    with open(os.path.join(OUT, "smollm2_dequant.json"), "w") as f:
        json.dump(sums, f, indent=0, sort_keys=True)
        f.write("\n")


def main():
    os.makedirs(OUT, exist_ok=True)
    make_quant(np.random.default_rng(8))
    if len(sys.argv) > 1:
        make_real(sys.argv[1])


if __name__ == "__main__":
    main()
