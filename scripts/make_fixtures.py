#!/usr/bin/env python3
"""Regenerate the Hugging Face reference fixtures under tests/fixtures/.

For every small architecture fixture this writes the model (config.json +
model.safetensors from save_pretrained) and reference.safetensors holding
inputs, logits, loss and the gradient of every parameter for two batches, and
the parameters after three AdamW steps. It also writes
stories260K_reference.safetensors with logits of the real stories260K model.
See tests/fixtures/README.md for the exact layout.

The output is deterministic: one CPU thread, fixed seeds, deterministic
algorithms, so re-running produces the same bytes on the same versions.

Usage: python3 scripts/make_fixtures.py [--out tests/fixtures] [--shared DIR]
"""
import argparse
import json
import math
import os
import struct
import sys

import torch
import transformers
from transformers import (GPT2Config, GPT2LMHeadModel, LlamaConfig,
                          LlamaForCausalLM, MistralConfig, MistralForCausalLM,
                          Qwen2Config, Qwen2ForCausalLM)

B, T = 2, 16
LR, BETA1, BETA2, EPS, WEIGHT_DECAY = 1e-3, 0.9, 0.95, 1e-8, 0.1
ADAMW_STEPS = 3
# Packed batch: document lengths per row; each row sums to T.
PACKED_DOCS = [[5, 7, 4], [9, 7]]
# Batch 0 loss-mask holes (row, col).
BATCH0_MASK_ZEROS = [(0, 3), (0, 11), (1, 0), (1, 15)]


SAFETENSORS_DTYPES = {torch.float32: "F32", torch.int32: "I32"}


def write_safetensors(path, tensors, metadata):
    """safetensors.torch.save_file orders __metadata__ by a hash map, so its
    bytes change from run to run; this writer sorts every key instead."""
    header, offset, blobs = {"__metadata__": dict(sorted(metadata.items()))}, 0, []
    for name in sorted(tensors):
        t = tensors[name].detach().contiguous()
        blob = t.numpy().tobytes()
        header[name] = {"dtype": SAFETENSORS_DTYPES[t.dtype],
                        "shape": list(t.shape),
                        "data_offsets": [offset, offset + len(blob)]}
        blobs.append(blob)
        offset += len(blob)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for blob in blobs:
            f.write(blob)


def fixture_specs():
    """(name, model class, config) of every architecture fixture."""
    common = dict(max_position_embeddings=64, attention_dropout=0.0,
                  use_cache=False, bos_token_id=1, eos_token_id=2)
    return [
        ("gpt2", GPT2LMHeadModel, GPT2Config(
            vocab_size=101, n_positions=64, n_embd=40, n_layer=2, n_head=5,
            n_inner=104, activation_function="gelu_new",
            layer_norm_epsilon=1e-5, resid_pdrop=0.0, embd_pdrop=0.0,
            attn_pdrop=0.0, tie_word_embeddings=True, use_cache=False,
            bos_token_id=1, eos_token_id=2)),
        ("llama2", LlamaForCausalLM, LlamaConfig(
            vocab_size=103, hidden_size=32, intermediate_size=88,
            num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=4,
            rms_norm_eps=1e-6, rope_theta=10000.0, tie_word_embeddings=False,
            **common)),
        # head_dim 16 so that the three llama3 regimes (kept, smoothed,
        # divided by factor) all occur with original_max_position_embeddings 48.
        ("llama3", LlamaForCausalLM, LlamaConfig(
            vocab_size=107, hidden_size=32, intermediate_size=88,
            num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1,
            head_dim=16, rms_norm_eps=1e-5, tie_word_embeddings=True,
            rope_theta=500000.0,
            rope_scaling={"rope_type": "llama3", "factor": 8.0,
                          "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                          "original_max_position_embeddings": 48},
            **common)),
        ("qwen2", Qwen2ForCausalLM, Qwen2Config(
            vocab_size=109, hidden_size=32, intermediate_size=88,
            num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
            rms_norm_eps=1e-6, rope_theta=1e6, tie_word_embeddings=False,
            use_sliding_window=False, **common)),
        ("mistral", MistralForCausalLM, MistralConfig(
            vocab_size=113, hidden_size=32, intermediate_size=88,
            num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
            head_dim=8, rms_norm_eps=1e-5, rope_theta=10000.0,
            sliding_window=6, tie_word_embeddings=False, **common)),
        # hidden 48 but 4 heads x head_dim 8 = 32: q_proj is [32,48].
        ("smollm", LlamaForCausalLM, LlamaConfig(
            vocab_size=97, hidden_size=48, intermediate_size=104,
            num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
            head_dim=8, rms_norm_eps=1e-5, rope_theta=10000.0,
            tie_word_embeddings=True, **common)),
    ]


def is_embedding(name):
    return name.endswith(("embed_tokens.weight", "wte.weight", "wpe.weight"))


def randomize_parameters(model, gen):
    """Overwrite every parameter with values large enough that a wrong
    transpose, a missing bias or a norm weight taken as 1 changes the output
    well beyond the test tolerance, while logits stay around std 1-3."""
    hidden = model.config.hidden_size
    tied = model.config.tie_word_embeddings
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias"):
                std, mean = 0.2, 0.0
            elif p.ndim == 1:
                std, mean = 0.2, 1.0
            elif is_embedding(name):
                # A tied table is also the classifier: size it like lm_head.
                std, mean = (2.0 / math.sqrt(hidden) if tied else 0.5), 0.0
            else:
                # nn.Linear stores [out, in]; GPT-2's Conv1D stores [in, out].
                fan_in = p.shape[0] if isinstance(model, GPT2LMHeadModel) \
                    else p.shape[1]
                scale = 2.0 if name == "lm_head.weight" else 1.0
                std, mean = scale / math.sqrt(fan_in), 0.0
            p.copy_(mean + std * torch.randn(p.shape, generator=gen))


def make_batches(vocab, gen):
    """Batch 0: one document per row. Batch 1: packed documents."""
    def rand_ids():
        return torch.randint(0, vocab, (B, T), generator=gen, dtype=torch.int64)

    b0 = {"ids": rand_ids(), "targets": rand_ids(),
          "loss_mask": torch.ones(B, T),
          "pos": torch.arange(T).repeat(B, 1), "docs": [[T]] * B}
    for r, c in BATCH0_MASK_ZEROS:
        b0["loss_mask"][r, c] = 0.0

    b1 = {"ids": rand_ids(), "targets": rand_ids(),
          "loss_mask": torch.ones(B, T),
          "pos": torch.zeros(B, T, dtype=torch.int64), "docs": PACKED_DOCS}
    for r, lengths in enumerate(PACKED_DOCS):
        assert sum(lengths) == T
        start = 0
        for n in lengths:
            b1["pos"][r, start:start + n] = torch.arange(n)
            # The "prompt" half of each document carries no loss.
            b1["loss_mask"][r, start:start + n // 2] = 0.0
            start += n
    return [b0, b1]


def forward_logits(model, batch):
    """Logits [B,T,V]; every document runs as its own sequence, which is
    exactly the semantics of packing (documents cannot see each other)."""
    rows = []
    for r, lengths in enumerate(batch["docs"]):
        pieces, start = [], 0
        for n in lengths:
            ids = batch["ids"][r:r + 1, start:start + n]
            pos = batch["pos"][r:r + 1, start:start + n]
            out = model(input_ids=ids, position_ids=pos, use_cache=False)
            pieces.append(out.logits[0])
            start += n
        rows.append(torch.cat(pieces, dim=0))
    return torch.stack(rows)


def masked_loss(logits, batch):
    v = logits.shape[-1]
    ce = torch.nn.functional.cross_entropy(
        logits.reshape(-1, v).float(), batch["targets"].reshape(-1),
        reduction="none")
    mask = batch["loss_mask"].reshape(-1)
    return (ce * mask).sum() / mask.sum()


def param_groups(model):
    decay = [p for _, p in model.named_parameters() if p.ndim >= 2]
    no_decay = [p for _, p in model.named_parameters() if p.ndim < 2]
    return [{"params": decay, "weight_decay": WEIGHT_DECAY},
            {"params": no_decay, "weight_decay": 0.0}]


def run_adamw(model, batch, max_grad_norm):
    """ADAMW_STEPS steps on one batch; returns pre-clip norms and losses."""
    opt = torch.optim.AdamW(param_groups(model), lr=LR, betas=(BETA1, BETA2),
                            eps=EPS)
    params = [p for _, p in model.named_parameters()]
    norms, losses = [], []
    for _ in range(ADAMW_STEPS):
        opt.zero_grad(set_to_none=True)
        loss = masked_loss(forward_logits(model, batch), batch)
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(params, max_grad_norm)
        opt.step()
        norms.append(norm.item())
        losses.append(loss.item())
    return norms, losses


def initial_params(model, initial):
    """The initial values of model.parameters(), in the same order."""
    by_id = {id(p): n for n, p in model.named_parameters()}
    return [initial[by_id[id(p)]] for p in model.parameters()]


def check_llama3_scaling(model, cfg):
    """The llama3 rule must change some but not all frequencies."""
    hd = cfg.head_dim
    theta = cfg.rope_parameters["rope_theta"]
    plain = 1.0 / theta ** (torch.arange(0, hd, 2, dtype=torch.float32) / hd)
    scaled = model.model.rotary_emb.inv_freq.float()
    ratio = (plain / scaled).tolist()
    factor = cfg.rope_parameters["factor"]
    kept = sum(abs(r - 1.0) < 1e-6 for r in ratio)
    divided = sum(abs(r - factor) < 1e-4 for r in ratio)
    smoothed = len(ratio) - kept - divided
    print(f"  llama3 rope: plain/scaled ratios {['%.3f' % r for r in ratio]}")
    assert kept > 0 and divided > 0 and smoothed > 0, \
        "llama3 scaling does not exercise all three regimes"


def check_sliding_window(name, cls, cfg, model, batch):
    """Eager attention must really apply the window (logits differ)."""
    cfg_full = cls.config_class.from_dict(cfg.to_dict())
    cfg_full.sliding_window = None
    full = cls(cfg_full).eval()
    full.load_state_dict(model.state_dict())
    full.config._attn_implementation = "eager"
    with torch.no_grad():
        a = forward_logits(model, batch)
        b = forward_logits(full, batch)
    diff = float((a - b).norm() / b.norm())
    print(f"  {name}: sliding window {cfg.sliding_window} vs none: rel diff {diff:.3e}")
    assert diff > 1e-3, "transformers ignored sliding_window with eager attention"


def make_arch_fixture(out_dir, name, cls, cfg, seed):
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    cfg._attn_implementation = "eager"
    model = cls(cfg).to(torch.float32).eval()
    model.config._attn_implementation = "eager"
    randomize_parameters(model, gen)
    if name == "llama3":
        check_llama3_scaling(model, cfg)
    initial = {k: v.detach().clone() for k, v in model.state_dict().items()}

    batches = make_batches(cfg.vocab_size, gen)
    if getattr(cfg, "sliding_window", None):
        check_sliding_window(name, cls, cfg, model, batches[0])

    tensors = {}
    for k, batch in enumerate(batches):
        model.zero_grad(set_to_none=True)
        logits = forward_logits(model, batch)
        loss = masked_loss(logits, batch)
        loss.backward()
        p = f"b{k}."
        tensors[p + "ids"] = batch["ids"].to(torch.int32)
        tensors[p + "targets"] = batch["targets"].to(torch.int32)
        tensors[p + "loss_mask"] = batch["loss_mask"].float()
        tensors[p + "pos"] = batch["pos"].to(torch.int32)
        tensors[p + "logits"] = logits.detach().float()
        tensors[p + "loss"] = loss.detach().float().reshape(1)
        for pname, param in model.named_parameters():
            tensors[p + "grad." + pname] = param.grad.detach().clone()
        print(f"  b{k}: loss {loss.item():.4f} logits std {logits.std().item():.3f}")

    # save_pretrained before the optimizer touches the weights.
    model.save_pretrained(os.path.join(out_dir, name), safe_serialization=True)

    # A run without clipping must end elsewhere, or the fixture could not
    # tell a trainer that forgets to clip from one that clips.
    model.load_state_dict(initial)
    run_adamw(model, batches[0], math.inf)
    unclipped = [p.detach().clone() for p in model.parameters()]
    max_grad_norm = 1.0
    for _ in range(3):
        model.load_state_dict(initial)
        norms, losses = run_adamw(model, batches[0], max_grad_norm)
        if max(norms) > max_grad_norm:
            break
        max_grad_norm /= 2
    assert max(norms) > max_grad_norm, "gradient clipping never active"
    moved = sum((p.detach() - initial_p).norm() ** 2 for p, initial_p in
                zip(model.parameters(), initial_params(model, initial))) ** 0.5
    apart = sum((p.detach() - u).norm() ** 2 for p, u in
                zip(model.parameters(), unclipped)) ** 0.5
    print(f"  adamw: clipped vs unclipped final params differ by "
          f"{(apart / moved).item():.3e} of the update")
    assert apart / moved > 1e-3, "clipping does not change the AdamW result"
    print(f"  adamw: pre-clip norms {['%.3f' % n for n in norms]} "
          f"(max_grad_norm {max_grad_norm}), losses {['%.4f' % x for x in losses]}")
    for pname, param in model.named_parameters():
        tensors["adamw." + pname] = param.detach().clone()
    tensors["adamw.grad_norm"] = torch.tensor(norms, dtype=torch.float32)
    tensors["adamw.loss"] = torch.tensor(losses, dtype=torch.float32)

    meta = {"arch": name, "model_type": cfg.model_type,
            "architecture": cls.__name__, "B": str(B), "T": str(T),
            "lr": repr(LR), "beta1": repr(BETA1), "beta2": repr(BETA2),
            "eps": repr(EPS), "weight_decay": repr(WEIGHT_DECAY),
            "max_grad_norm": repr(max_grad_norm),
            "adamw_steps": str(ADAMW_STEPS), "adamw_batch": "b0",
            "decay_rule": "ndim>=2",
            "packed_docs_b1": ";".join(",".join(map(str, r)) for r in PACKED_DOCS),
            "torch": torch.__version__,
            "transformers": transformers.__version__}
    write_safetensors(os.path.join(out_dir, name, "reference.safetensors"),
                      tensors, meta)


def read_greedy_ids(path):
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.startswith("IDS "):
                return [int(x) for x in line.split()[1:]]
    raise ValueError(f"{path}: no line starting with 'IDS '")


def make_stories_fixture(out_dir, shared):
    model_dir = os.path.join(shared, "assets", "models", "stories260K-hf")
    ref = read_greedy_ids(os.path.join(
        shared, "assets", "models", "stories260K",
        "reference_greedy_t0_generated_here.txt"))
    model = LlamaForCausalLM.from_pretrained(
        model_dir, dtype=torch.float32, attn_implementation="eager").eval()

    with torch.no_grad():
        gen = model.generate(torch.tensor([[1]]), max_new_tokens=63,
                             do_sample=False, use_cache=True,
                             pad_token_id=model.config.eos_token_id)
    got = gen[0].tolist()
    match = got == ref[:64]
    print(f"stories260K greedy from [1], first 64 ids match reference: {match}")
    assert match, f"greedy mismatch: {got} vs {ref[:64]}"

    # BOS followed by stretches from different spots of the greedy story.
    prompts = [ref[0:24], [1] + ref[40:60], [1] + ref[100:130]]
    tensors = {}
    with torch.no_grad():
        for k, ids in enumerate(prompts):
            x = torch.tensor([ids])
            logits = model(input_ids=x, use_cache=False).logits[0].float()
            tensors[f"prompt{k}.ids"] = torch.tensor(ids, dtype=torch.int32)
            tensors[f"prompt{k}.logits"] = logits.contiguous()
            print(f"  prompt{k}: {len(ids)} ids, logits std {float(logits.std()):.3f}")
    meta = {"model": "stories260K-hf", "torch": torch.__version__,
            "transformers": transformers.__version__}
    write_safetensors(os.path.join(out_dir, "stories260K_reference.safetensors"),
                      tensors, meta)


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=os.path.join(here, "..", "tests", "fixtures"))
    ap.add_argument("--shared", default=os.path.join(here, "..", "..", "shared"))
    args = ap.parse_args()

    torch.set_num_threads(1)
    transformers.utils.logging.disable_progress_bar()
    torch.use_deterministic_algorithms(True)
    os.makedirs(args.out, exist_ok=True)
    print(f"torch {torch.__version__}, transformers {transformers.__version__}")
    for i, (name, cls, cfg) in enumerate(fixture_specs()):
        print(f"{name}:")
        make_arch_fixture(args.out, name, cls, cfg, seed=1234 + i)
    make_stories_fixture(args.out, args.shared)
    return 0


if __name__ == "__main__":
    sys.exit(main())
