"""Unit test of bench/tradeoff/cost.py (ctest: bench/tradeoff_cost). Checks the parameter
counts against real files, the FLOP formulas against a per-token loop, the break-even against
the cost lines it comes from, and the memory rules of thumb."""

import json
import os
import random
import struct
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cost  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
SHARED = os.environ.get("GLLM_SHARED_DIR", os.path.join(HERE, "..", "..", "..", "shared"))
SMOL = os.path.join(SHARED, "assets/models/SmolLM2-135M-Instruct-GGUF/SmolLM2-135M-Instruct.Q4_1.gguf")
STORIES = os.path.join(SHARED, "assets/models/stories260K-hf")

SMOL_CFG = {"model_type": "llama", "hidden_size": 576, "intermediate_size": 1536,
            "num_hidden_layers": 30, "num_attention_heads": 9, "num_key_value_heads": 3,
            "vocab_size": 49152, "tie_word_embeddings": True}


def safetensors_params(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        hdr = json.loads(f.read(n))
    total = 0
    for k, v in hdr.items():
        if k == "__metadata__":
            continue
        c = 1
        for d in v["shape"]:
            c *= d
        total += c
    return total


def random_shape(rng):
    h = rng.randint(1, 8)
    kv = rng.choice([d for d in range(1, h + 1) if h % d == 0])
    hd = rng.choice([4, 8, 16])
    return cost.Shape(rng.randint(1, 6), h * hd, h, kv, hd, rng.randint(8, 200), rng.randint(10, 900),
                      gated_mlp=rng.random() < 0.5, tied=rng.random() < 0.5)


class TestCost(unittest.TestCase):
    def test_smollm2_params_from_config(self):
        s = cost.shape_from_hf_config(SMOL_CFG)
        # 30 x (576*(576+2*192) + 576*576 + 3*576*1536) + 49152*576 + 30*2*576 + 576
        self.assertEqual(s.n_params, 134515008)
        self.assertEqual(s.n_matmul, 30 * 3538944 + 49152 * 576)

    def test_real_files(self):
        if not os.path.isdir(STORIES):
            self.skipTest("no ../shared assets (%s)" % STORIES)
        s = cost.load_shape(STORIES)
        self.assertEqual(s.n_params, safetensors_params(os.path.join(STORIES, "model.safetensors")))
        if os.path.exists(SMOL):
            g = cost.load_shape(SMOL)
            self.assertEqual(g.n_params, cost.shape_from_hf_config(SMOL_CFG).n_params)
            self.assertEqual((g.n_layers, g.d_model, g.n_kv_heads, g.d_ff, g.vocab, g.tied),
                             (30, 576, 3, 1536, 49152, True))

    def test_flops_against_token_loop(self):
        rng = random.Random(int.from_bytes(os.urandom(4), "little"))
        for _ in range(50):
            s = random_shape(rng)
            start, n = rng.randint(0, 300), rng.randint(1, 300)
            loop = sum(2 * s.n_matmul + 4 * s.n_layers * s.d_attn * (p + 1) for p in range(start, start + n))
            self.assertEqual(cost.forward_flops(s, n, start), loop)
            # training is three forwards; rows restart at position 0
            L = rng.randint(1, 64)
            toks = rng.randint(1, 500)
            rows = [L] * (toks // L) + ([toks % L] if toks % L else [])
            self.assertEqual(cost.train_flops(s, toks, L),
                             sum(3 * sum(2 * s.n_matmul + 4 * s.n_layers * s.d_attn * (p + 1) for p in range(r)) for r in rows))
            # a scoring query: cached prompt tokens cost nothing, candidates attend to the whole prompt
            P, c = rng.randint(1, 100), rng.randint(0, 100)
            c = min(c, P)
            cands = [rng.randint(1, 4) for _ in range(rng.randint(1, 6))]
            full = cost.query_flops(s, P, cands, 0)
            part = cost.query_flops(s, P, cands, c)
            self.assertEqual(full - part, cost.forward_flops(s, c, 0))
            self.assertEqual(full, cost.forward_flops(s, P, 0) + sum(cost.forward_flops(s, x, P) for x in cands))

    def test_six_n_and_two_n(self):
        # without attention (one position) training is exactly 6N and inference 2N per token
        s = cost.shape_from_hf_config(SMOL_CFG)
        self.assertEqual(cost.train_flops(s, 1000, 1) / 1000, 6 * s.n_matmul + 12 * s.n_layers * s.d_attn)
        self.assertEqual(cost.forward_flops(s, 1, 0), 2 * s.n_matmul + 4 * s.n_layers * s.d_attn)

    def test_break_even(self):
        rng = random.Random(int.from_bytes(os.urandom(4), "little"))
        for _ in range(200):
            fa, pa = rng.uniform(1, 1e6), rng.uniform(0, 10)
            fb, pb = rng.uniform(0, 1e3), rng.uniform(0, 10)
            q = cost.break_even(fa, pa, fb, pb)
            if q is None:
                # a saves nothing per query, and is not cheaper from the start for good
                self.assertGreaterEqual(pa, pb)
                self.assertFalse(fa <= fb and pa == pb)
                self.assertGreater(cost.total_cost(fa, pa, 1e9), cost.total_cost(fb, pb, 1e9) - 1e-6)
            elif q == 0.0:
                self.assertLessEqual(fa, fb)
            else:
                ca, cb = cost.total_cost(fa, pa, q), cost.total_cost(fb, pb, q)
                self.assertLess(abs(ca - cb) / max(ca, cb), 1e-9)
                self.assertGreater(cost.total_cost(fa, pa, q * 0.9), cost.total_cost(fb, pb, q * 0.9))
                self.assertLess(cost.total_cost(fa, pa, q * 1.1 + 1), cost.total_cost(fb, pb, q * 1.1 + 1))
        self.assertEqual(cost.break_even(5, 1, 1, 1), None)

    def test_analytic_break_even_matches_flops(self):
        # 3DE/(kL) is exactly the crossing of 6N*D*E against 2N*k*L per query (attention dropped)
        rng = random.Random(int.from_bytes(os.urandom(4), "little"))
        for _ in range(20):
            N = rng.randint(10 ** 6, 10 ** 9)
            D, E, k, L = rng.randint(100, 10 ** 6), rng.randint(1, 5), rng.randint(1, 32), rng.randint(5, 80)
            q = cost.break_even(6 * N * D * E, 0, 0, 2 * N * k * L)
            a = cost.analytic_break_even(D, E, k, L)
            self.assertLess(abs(q - a) / a, 1e-12)

    def test_memory_rules(self):
        s = cost.shape_from_hf_config(SMOL_CFG)
        self.assertEqual(cost.train_memory_bytes(s, 0), 16 * s.n_params)
        self.assertEqual(cost.infer_memory_bytes(s, 0), 2 * s.n_params)
        # KV per token: 2 (K,V) x 30 layers x 3 heads x 64 dims x 2 B = 23,040 B
        self.assertEqual(cost.kv_bytes_per_token(s), 23040)
        self.assertEqual(cost.infer_memory_bytes(s, 1000) - cost.infer_memory_bytes(s, 0), 23040000)
        a1, a2 = cost.train_activation_bytes(s, 1000), cost.train_activation_bytes(s, 3000)
        self.assertEqual(a2, 3 * a1)

    def test_figures_and_money(self):
        f = cost.figure(1.5, "s", "measured", "cpu")
        self.assertEqual((f["kind"], f["device"]), ("measured", "cpu"))
        self.assertRegex(f["date"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
        with self.assertRaises(ValueError):
            cost.figure(1, "s", "guessed", "cpu")
        self.assertEqual(cost.dollars(7200, 3.0), 6.0)
        self.assertIsNone(cost.dollars(7200, None))


if __name__ == "__main__":
    unittest.main()
