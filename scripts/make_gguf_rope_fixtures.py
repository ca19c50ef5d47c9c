#!/usr/bin/env python3
"""Llama-3.1 RoPE scaling fixtures for tests/model/test_model_gguf.c.

A tiny random LlamaForCausalLM (1 layer, hidden 32, one head of 64) with Llama 3.1's rope settings (rope_theta 5e5,
rope_type llama3, factor 8, low_freq_factor 1, high_freq_factor 4,
original_max_position_embeddings 8192) and head_dim 64, so that its 32
frequency pairs fall in all three regions of the scaling (kept, ramped,
divided by 8), several of them on the ramp, as in the real model:

tests/fixtures/gguf/llama31/config.json, model.safetensors  (save_pretrained)
tests/fixtures/gguf/llama31.gguf  the same weights as llama.cpp's converter
  writes them: tensor names, q/k rows permuted for its RoPE, and the scaling
  as a rope_freqs tensor (the converter's formula: 1 for short wavelengths,
  factor for long ones, 1 / ((1 - s) / factor + s) between), with no scaling
  metadata; F32.
tests/fixtures/gguf/llama31_badfreqs.gguf  its metadata and embedding with
  rope_freqs reversed (no Llama-3.1 ramp), which gllm must refuse.
tests/fixtures/gguf/llama31_reference.safetensors  transformers' fp32 logits
  of one sequence of 2048 random `ids`, at the positions `rows` (every 128th
  and the last 8): `logits` [24, V]. Over 2048 tokens the scaled low
  frequencies turn far enough to matter (RoPE sees only distances): the
  logits move by about 10% without the scaling. `inv_freq` [32] is transformers' rotary inv_freq.

Re-runnable: fixed seed, one thread, deterministic; the same versions write
the same bytes. Usage: python3 scripts/make_gguf_rope_fixtures.py
"""
import math
import os

import gguf
import numpy as np
import torch
from safetensors.numpy import save_file
from transformers import LlamaConfig, LlamaForCausalLM

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
OUT = os.path.join(ROOT, "tests", "fixtures", "gguf")
ROPE = {"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0, "low_freq_factor": 1.0,
        "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}


def llamacpp_rope_freqs(theta, dim, rope):
    """llama.cpp convert_hf_to_gguf.py's LlamaModel rope_freqs, written anew."""
    freqs = 1.0 / (theta ** (torch.arange(0, dim, 2, dtype=torch.float32) / dim))
    factor, low, high = rope["factor"], rope["low_freq_factor"], rope["high_freq_factor"]
    old = rope["original_max_position_embeddings"]
    out = []
    for f in freqs.tolist():
        wavelen = 2 * math.pi / f
        if wavelen < old / high:
            out.append(1.0)
        elif wavelen > old / low:
            out.append(factor)
        else:
            smooth = (old / wavelen - low) / (high - low)
            out.append(1.0 / ((1 - smooth) / factor + smooth))
    return np.array(out, dtype=np.float32)


def permute(w, n_head):
    """llama.cpp's q/k row order: within each head, rows (i, i + D/2) interleaved."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def write_gguf(path, cfg, sd, rope_freqs, config_only=False):
    w = gguf.GGUFWriter(path, "llama")
    w.add_name("llama31 rope fixture")
    w.add_context_length(cfg.max_position_embeddings)
    w.add_embedding_length(cfg.hidden_size)
    w.add_block_count(cfg.num_hidden_layers)
    w.add_feed_forward_length(cfg.intermediate_size)
    w.add_rope_dimension_count(cfg.head_dim)
    w.add_head_count(cfg.num_attention_heads)
    w.add_head_count_kv(cfg.num_key_value_heads)
    w.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    w.add_rope_freq_base(ROPE["rope_theta"])
    w.add_vocab_size(cfg.vocab_size)
    w.add_file_type(0)
    w.add_tensor("rope_freqs.weight", rope_freqs)
    w.add_tensor("token_embd.weight", sd["model.embed_tokens.weight"])
    for i in range(0 if config_only else cfg.num_hidden_layers):
        p = f"model.layers.{i}."
        w.add_tensor(f"blk.{i}.attn_norm.weight", sd[p + "input_layernorm.weight"])
        w.add_tensor(f"blk.{i}.attn_q.weight", permute(sd[p + "self_attn.q_proj.weight"], cfg.num_attention_heads))
        w.add_tensor(f"blk.{i}.attn_k.weight", permute(sd[p + "self_attn.k_proj.weight"], cfg.num_key_value_heads))
        w.add_tensor(f"blk.{i}.attn_v.weight", sd[p + "self_attn.v_proj.weight"])
        w.add_tensor(f"blk.{i}.attn_output.weight", sd[p + "self_attn.o_proj.weight"])
        w.add_tensor(f"blk.{i}.ffn_norm.weight", sd[p + "post_attention_layernorm.weight"])
        w.add_tensor(f"blk.{i}.ffn_gate.weight", sd[p + "mlp.gate_proj.weight"])
        w.add_tensor(f"blk.{i}.ffn_up.weight", sd[p + "mlp.up_proj.weight"])
        w.add_tensor(f"blk.{i}.ffn_down.weight", sd[p + "mlp.down_proj.weight"])
    if not config_only:
        w.add_tensor("output_norm.weight", sd["model.norm.weight"])
        w.add_tensor("output.weight", sd["lm_head.weight"])
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def make_config(rope):
    return LlamaConfig(vocab_size=61, hidden_size=32, intermediate_size=40, num_hidden_layers=1,
                       num_attention_heads=1, num_key_value_heads=1, head_dim=64,
                       max_position_embeddings=131072, rms_norm_eps=1e-5, rope_parameters=rope,
                       tie_word_embeddings=False, bos_token_id=1, eos_token_id=2, use_cache=False,
                       attn_implementation="eager")


def main():
    torch.manual_seed(31)
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    cfg = make_config(dict(ROPE))
    model = LlamaForCausalLM(cfg).eval()
    with torch.no_grad():  # weights large enough that mistakes show (as scripts/make_fixtures.py)
        for name, p in model.named_parameters():
            if p.ndim == 2:
                std = 2.0 / math.sqrt(p.shape[1]) if "lm_head" in name else (
                    0.5 if "embed" in name else 1.0 / math.sqrt(p.shape[1]))
                p.copy_(torch.randn_like(p) * std)
            else:
                p.copy_(1 + 0.2 * torch.randn_like(p))
    folder = os.path.join(OUT, "llama31")
    model.save_pretrained(folder)
    for extra in ("generation_config.json",):
        if os.path.exists(os.path.join(folder, extra)):
            os.remove(os.path.join(folder, extra))
    sd = {k: v.detach().numpy().astype(np.float32) for k, v in model.state_dict().items()}
    save_file({k: sd[k] for k in sorted(sd)}, os.path.join(folder, "model.safetensors"),
              metadata={"format": "pt"})
    freqs = llamacpp_rope_freqs(ROPE["rope_theta"], cfg.head_dim, ROPE)
    n_ramp = int(((freqs > 1) & (freqs < ROPE["factor"])).sum())
    assert (freqs == 1).sum() > 0 and (freqs == ROPE["factor"]).sum() > 0 and n_ramp >= 2, freqs
    write_gguf(os.path.join(OUT, "llama31.gguf"), cfg, sd, freqs)
    write_gguf(os.path.join(OUT, "llama31_badfreqs.gguf"), cfg, sd, freqs[::-1].copy(), config_only=True)

    gen = torch.Generator().manual_seed(7)
    T = 2048
    ids = torch.randint(0, cfg.vocab_size, (1, T), generator=gen)
    rows = torch.cat([torch.arange(0, T, 128), torch.arange(T - 8, T)])
    with torch.no_grad():
        logits = model(input_ids=ids).logits.float()[0, rows].numpy()
        plain = LlamaForCausalLM(make_config({"rope_type": "default", "rope_theta": ROPE["rope_theta"]})).eval()
        plain.load_state_dict(model.state_dict())
        unscaled = plain(input_ids=ids).logits.float()[0, rows].numpy()
    # the scaling must matter, or the test could not fail
    diff = np.linalg.norm(logits - unscaled) / np.linalg.norm(logits)
    assert diff > 1e-2, diff
    inv = model.model.rotary_emb.inv_freq.float().numpy()
    save_file({"ids": ids[0].numpy().astype(np.int32), "rows": rows.numpy().astype(np.int32),
               "logits": logits, "inv_freq": inv},
              os.path.join(OUT, "llama31_reference.safetensors"),
              metadata={"ramp_pairs": str(n_ramp), "scaled_vs_unscaled_rel_diff": "%.3g" % diff,
                        "torch": torch.__version__})
    print("rope_freqs", freqs.tolist())
    print("ramp pairs", n_ramp, "scaled vs unscaled logits:", diff)


if __name__ == "__main__":
    main()
