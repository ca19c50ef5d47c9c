#!/usr/bin/env python3
"""Check that a folder gllm saved loads back in transformers with exactly the
weights of a reference folder. Usage: check_hf_load.py SAVED_DIR REFERENCE_DIR
Exit 0: identical; 1: mismatch; 77: transformers/torch not installed."""
import sys

try:
    import torch
    from transformers import AutoModelForCausalLM
except ImportError as e:
    print(f"skip: {e}")
    sys.exit(77)


def main():
    saved, ref = sys.argv[1], sys.argv[2]
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
    print(f"ok: {len(sa)} tensors identical")
    return 0


if __name__ == "__main__":
    sys.exit(main())
