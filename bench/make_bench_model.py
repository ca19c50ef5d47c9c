#!/usr/bin/env python3
"""Write a randomly initialised HF model folder for throughput benches.
usage: make_bench_model.py OUT_DIR {llama-6m,gpt2-14m,gpt2-124m,smollm-135m,smollm-360m}
(the last three at the real models' shapes, for GPU runs)"""
import sys

import torch
from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

SHAPES = {
    # a SmolLM-like shape, scaled down to run on two CPU cores
    "llama-6m": lambda: LlamaForCausalLM(LlamaConfig(
        vocab_size=8192, hidden_size=256, intermediate_size=688, num_hidden_layers=6,
        num_attention_heads=8, num_key_value_heads=4, max_position_embeddings=1024,
        tie_word_embeddings=True)),
    "gpt2-14m": lambda: GPT2LMHeadModel(GPT2Config(
        vocab_size=8192, n_embd=384, n_layer=6, n_head=6, n_positions=1024)),
    "gpt2-124m": lambda: GPT2LMHeadModel(GPT2Config(
        vocab_size=50257, n_embd=768, n_layer=12, n_head=12, n_positions=1024)),
    # SmolLM2-135M's shape (the CPU inference bench's model)
    "smollm-135m": lambda: LlamaForCausalLM(LlamaConfig(
        vocab_size=49152, hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
        num_attention_heads=9, num_key_value_heads=3, max_position_embeddings=8192,
        rope_theta=100000.0, rms_norm_eps=1e-5, tie_word_embeddings=True)),
    # SmolLM2-360M's shape
    "smollm-360m": lambda: LlamaForCausalLM(LlamaConfig(
        vocab_size=49152, hidden_size=960, intermediate_size=2560, num_hidden_layers=32,
        num_attention_heads=15, num_key_value_heads=5, max_position_embeddings=2048,
        rope_theta=100000.0, tie_word_embeddings=True)),
}


def main():
    out, shape = sys.argv[1], sys.argv[2]
    torch.manual_seed(0)
    model = SHAPES[shape]()
    model.save_pretrained(out, safe_serialization=True)
    print(f"{shape}: {sum(p.numel() for p in model.parameters())} parameters -> {out}")


if __name__ == "__main__":
    main()
