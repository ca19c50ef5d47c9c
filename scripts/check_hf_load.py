#!/usr/bin/env python3
"""Check that folders gllm saved load back in transformers with exactly the
weights of reference folders.
Usage: check_hf_load.py SAVED_DIR REFERENCE_DIR [SAVED_DIR REFERENCE_DIR ...]
Exit 0: all identical; 1: a mismatch; 77: transformers/torch not installed."""
import sys

try:
    import torch
    from transformers import AutoModelForCausalLM
except ImportError as e:
    print(f"skip: {e}")
    sys.exit(77)


def check(saved, ref):
    a = AutoModelForCausalLM.from_pretrained(saved, torch_dtype=torch.float32)
    b = AutoModelForCausalLM.from_pretrained(ref, torch_dtype=torch.float32)
    sa, sb = a.state_dict(), b.state_dict()
    if sa.keys() != sb.keys():
        print("different tensor names:", sorted(set(sa) ^ set(sb)))
        return 1
    bad = [k for k in sa if not torch.equal(sa[k], sb[k])]
    if bad:
        print("different values:", bad[:10])
        return 1
    ids = torch.arange(1, 9).unsqueeze(0) % a.config.vocab_size
    if not torch.equal(a(ids).logits, b(ids).logits):
        print("logits differ")
        return 1
    print(f"ok: {saved}: {len(sa)} tensors identical")
    return 0


def main():
    args = sys.argv[1:]
    if not args or len(args) % 2:
        print(__doc__)
        return 2
    return max(check(args[i], args[i + 1]) for i in range(0, len(args), 2))


if __name__ == "__main__":
    sys.exit(main())
