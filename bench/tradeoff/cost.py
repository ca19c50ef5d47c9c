"""Analytic cost model of the trade-off suite (issue 12, item 4).

Everything here is *computed* from a model's shape; measured figures (seconds, peak memory)
come from gtrain/ginfer runs and are tagged "measured" by the caller. Every figure this module
hands out is a dict made by `figure()`: value, unit, kind ("computed" | "measured"), device,
date (UTC, ISO) and a note on how it was obtained, so a report can always say which is which.

Conventions (stated once, used everywhere):

* N = parameters that take part in a matmul per token: every linear weight of every layer plus
  the LM head (vocab x d_model, counted even when tied to the embedding, because the head
  matmul runs). The embedding lookup, norms and biases are not matmul FLOPs.
  `shape.n_params` (all stored parameters) is used for memory, `shape.n_matmul` for FLOPs.
* Forward FLOPs of one token at position p (0-based) that attends to p+1 cached keys:
      2*N  +  4 * n_layers * d_attn * (p + 1)
  where d_attn = n_heads * head_dim: 2*d_attn*(p+1) for q.K^T and as much for the weighted
  sum of V (softmax, norms, activations neglected). This is Kaplan et al. 2020's 2N + 2*n_layer*
  n_ctx*d_attn with the causal context of each token made explicit.
* Training FLOPs = 3 x forward (backward = 2 x forward): 6*N per trained token plus
  12 * n_layers * d_attn * (p + 1). Every token of a packed row is a trained token (gtrain
  computes the loss only on completion tokens but runs forward/backward over all of them).
* Inference: prefill/scoring/decoding all cost the forward FLOPs of each token *computed*;
  tokens served from the prefix cache cost nothing (their positions still count as context
  for the tokens after them).
* Memory, training with AdamW in fp32 (gllm's CPU path): 16 B/param (weights 4, gradients 4,
  Adam m 4, v 4) plus activations (`train_activation_bytes`). Inference in bf16: 2 B/param
  plus KV cache 2 (K and V) * n_layers * n_kv_heads * head_dim * 2 B per cached token.
  `weight_bytes` lets callers ask for other precisions (fp32 CPU inference: 4).
* Money: an optional price per device-hour turns seconds into currency.

Analytic break-even (same model, no prefix caching): fine-tuning costs 6*N*D*E once
(D training tokens, E epochs); a k-shot prompt costs 2*N*k*L extra per query (k shots of L
tokens). Fine-tuning is cheaper after 6NDE / (2NkL) = 3*D*E/(k*L) queries.
"""

import datetime
import json
import math
import os

BYTES_ADAMW_FP32 = 16  # weights + grads + m + v, 4 bytes each
BYTES_BF16 = 2


def now_utc():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def figure(value, unit, kind, device, date=None, note=""):
    """One tagged figure. kind is "computed" (from a formula) or "measured" (from a run)."""
    if kind not in ("computed", "measured"):
        raise ValueError("figure kind must be 'computed' or 'measured', not %r" % (kind,))
    return {"value": value, "unit": unit, "kind": kind, "device": device,
            "date": date or now_utc(), "note": note}


class Shape:
    """A decoder-only transformer's shape (llama/qwen2/mistral/gpt2 style)."""

    def __init__(self, n_layers, d_model, n_heads, n_kv_heads, head_dim, d_ff, vocab,
                 gated_mlp=True, tied=True, n_params=None, name=""):
        self.n_layers, self.d_model, self.n_heads = n_layers, d_model, n_heads
        self.n_kv_heads, self.head_dim, self.d_ff, self.vocab = n_kv_heads, head_dim, d_ff, vocab
        self.gated_mlp, self.tied, self.name = gated_mlp, tied, name
        self.n_params = n_params if n_params is not None else self.count_params()

    @property
    def d_attn(self):
        return self.n_heads * self.head_dim

    @property
    def d_kv(self):
        return self.n_kv_heads * self.head_dim

    def layer_matmul_params(self):
        attn = self.d_model * (self.d_attn + 2 * self.d_kv) + self.d_attn * self.d_model
        mlp = (3 if self.gated_mlp else 2) * self.d_model * self.d_ff
        return attn + mlp

    @property
    def n_matmul(self):
        """N of the FLOP formulas: all layer linears + the LM head."""
        return self.n_layers * self.layer_matmul_params() + self.vocab * self.d_model

    def count_params(self):
        """Stored parameters when the file does not say (norm weights included, biases not)."""
        emb = self.vocab * self.d_model
        head = 0 if self.tied else self.vocab * self.d_model
        norms = self.n_layers * 2 * self.d_model + self.d_model
        return self.n_layers * self.layer_matmul_params() + emb + head + norms

    def to_dict(self):
        return {"name": self.name, "n_layers": self.n_layers, "d_model": self.d_model,
                "n_heads": self.n_heads, "n_kv_heads": self.n_kv_heads,
                "head_dim": self.head_dim, "d_ff": self.d_ff, "vocab": self.vocab,
                "gated_mlp": self.gated_mlp, "tied": self.tied, "n_params": self.n_params,
                "n_matmul": self.n_matmul}


def shape_from_hf_config(cfg, name=""):
    """Shape from a Hugging Face config.json dict (llama, mistral, qwen2, smollm, gpt2)."""
    if cfg.get("model_type") == "gpt2" or "n_embd" in cfg:
        d = cfg["n_embd"]
        h = cfg["n_head"]
        return Shape(cfg["n_layer"], d, h, h, d // h, cfg.get("n_inner") or 4 * d,
                     cfg["vocab_size"], gated_mlp=False, tied=True, name=name)
    d = cfg["hidden_size"]
    h = cfg["num_attention_heads"]
    return Shape(cfg["num_hidden_layers"], d, h, cfg.get("num_key_value_heads", h),
                 cfg.get("head_dim") or d // h, cfg["intermediate_size"], cfg["vocab_size"],
                 gated_mlp=True, tied=bool(cfg.get("tie_word_embeddings", False)), name=name)


def _gguf_shape(path):
    import gguf  # the pip package, in the system python here
    import numpy as np
    r = gguf.GGUFReader(path)

    def val(key):
        f = r.fields[key]
        return f.parts[f.data[0]].tolist()[0]

    arch = bytes(r.fields["general.architecture"].parts[r.fields["general.architecture"].data[0]]).decode()
    names = {t.name for t in r.tensors}
    n_params = sum(int(np.prod(t.shape)) for t in r.tensors)
    h = val(arch + ".attention.head_count")
    d = val(arch + ".embedding_length")
    kv = val(arch + ".attention.head_count_kv") if arch + ".attention.head_count_kv" in r.fields else h
    if arch + ".vocab_size" in r.fields:
        vocab = val(arch + ".vocab_size")
    else:
        vocab = len(r.fields["tokenizer.ggml.tokens"].data)
    return Shape(val(arch + ".block_count"), d, h, kv, d // h, val(arch + ".feed_forward_length"),
                 vocab, gated_mlp=(arch != "gpt2"), tied=("output.weight" not in names),
                 n_params=n_params, name=os.path.basename(path))


def load_shape(path):
    """Shape of a model: an HF folder (config.json) or a .gguf file (its metadata)."""
    if path.endswith(".gguf"):
        return _gguf_shape(path)
    with open(os.path.join(path, "config.json")) as f:
        return shape_from_hf_config(json.load(f), name=os.path.basename(path.rstrip("/")))


# ------------------------------------------------------------------ FLOPs

def attn_context_sum(start, n):
    """Sum over the n tokens at positions start..start+n-1 of (p + 1) keys attended."""
    return n * start + n * (n + 1) // 2


def forward_flops(shape, n_new, start=0):
    """Forward FLOPs of n_new tokens computed after `start` tokens already in context."""
    return 2 * shape.n_matmul * n_new + 4 * shape.n_layers * shape.d_attn * attn_context_sum(start, n_new)


def train_flops_rows(shape, row_lengths):
    """Training FLOPs (3 x forward) of rows of the given token lengths, each from position 0."""
    return sum(3 * forward_flops(shape, L, 0) for L in row_lengths)


def train_flops(shape, tokens, seq_len):
    """Training FLOPs for `tokens` trained tokens in full rows of seq_len (last row partial)."""
    full, rest = divmod(int(tokens), int(seq_len))
    rows = [seq_len] * full + ([rest] if rest else [])
    return train_flops_rows(shape, rows)


def query_flops(shape, prompt_tokens, candidate_tokens=(), cached_tokens=0):
    """Inference FLOPs of one scoring query: the prompt's uncached tokens, then each candidate's
    tokens as a continuation of the whole prompt (the prompt computed once, as ginfer does)."""
    f = forward_flops(shape, prompt_tokens - cached_tokens, cached_tokens)
    for c in candidate_tokens:
        f += forward_flops(shape, c, prompt_tokens)
    return f


def decode_flops(shape, prompt_tokens, new_tokens):
    """Forward FLOPs of generating new_tokens after a prompt of prompt_tokens (no cache hits)."""
    return forward_flops(shape, prompt_tokens + new_tokens, 0)


# ------------------------------------------------------------------ memory

def train_activation_bytes(shape, batch_tokens, bytes_per_act=4):
    """Activations kept for backward, per micro-batch of batch_tokens tokens (an estimate):
    per token and layer the residual input, two norm outputs, q/k/v, attention output, its
    projection, gate/up/activated MLP (d_ff each) and the MLP output; plus the final norm and
    the logits (vocab per token: the largest single term for small models). Attention is
    computed blockwise, so there is no tokens x tokens term."""
    per_layer = 7 * shape.d_model + shape.d_attn + 2 * shape.d_kv + (3 if shape.gated_mlp else 2) * shape.d_ff
    per_token = shape.n_layers * per_layer + shape.d_model + 2 * shape.vocab  # logits + their grad
    return batch_tokens * per_token * bytes_per_act


def train_memory_bytes(shape, batch_tokens, bytes_per_param=BYTES_ADAMW_FP32, bytes_per_act=4):
    """≈ 16 B/param (AdamW, fp32) + activations of one micro-batch."""
    return shape.n_params * bytes_per_param + train_activation_bytes(shape, batch_tokens, bytes_per_act)


def train_memory_bytes_zero1(shape, batch_tokens, ranks, replicated_bytes_per_param=8,
                             sharded_bytes_per_param=8, bytes_per_act=4):
    """Per-rank training memory under ZeRO-1 over `ranks` ranks: what every rank keeps
    (weights + gradients: 4 + 4 B/param in fp32) plus its 1/ranks share of the optimizer state
    (AdamW m + v: 4 + 4; the fp32 master copy too under mixed precision) plus one micro-batch's
    activations. ranks=1 with 8 + 8 is train_memory_bytes (16 B/param). (Used by sizes.py.)"""
    per_param = replicated_bytes_per_param + sharded_bytes_per_param / ranks
    return shape.n_params * per_param + train_activation_bytes(shape, batch_tokens, bytes_per_act)


def kv_bytes_per_token(shape, bytes_per_value=BYTES_BF16):
    return 2 * shape.n_layers * shape.d_kv * bytes_per_value


def infer_memory_bytes(shape, cached_tokens, weight_bytes=BYTES_BF16, kv_value_bytes=BYTES_BF16):
    """≈ 2 B/param (bf16) + KV cache for cached_tokens tokens."""
    return shape.n_params * weight_bytes + cached_tokens * kv_bytes_per_token(shape, kv_value_bytes)


# ------------------------------------------------------------------ money, break-even

def dollars(seconds, price_per_device_hour):
    """Cost of seconds of one device at price_per_device_hour; None when no price is given."""
    if price_per_device_hour is None:
        return None
    return seconds / 3600.0 * price_per_device_hour


def total_cost(fixed, per_query, queries):
    """Cost of an arm after `queries` queries: a one-off cost plus a per-query cost."""
    return fixed + per_query * queries


def break_even(fixed_a, per_query_a, fixed_b, per_query_b):
    """Queries from which arm a (usually dearer up front, cheaper per query) costs no more than
    arm b: the crossing of the lines fixed + per_query * q. 0.0 when a is never dearer; None when
    a never catches up (it does not save anything per query)."""
    df = fixed_a - fixed_b
    dq = per_query_b - per_query_a
    if df <= 0 and dq >= 0:
        return 0.0
    if dq <= 0:
        return None
    return df / dq


def analytic_break_even(train_tokens, epochs, shots, shot_tokens):
    """≈ 3·D·E/(k·L): training 6·N·D·E vs 2·N·k·L extra prompt FLOPs per query."""
    if shots * shot_tokens <= 0:
        return math.inf
    return 3.0 * train_tokens * epochs / (shots * shot_tokens)
