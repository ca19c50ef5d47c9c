"""Cross-check helper for tests/model/test_model_gguf_convert.c: load what
gllm's gconvert wrote with transformers and compare with the reference of
scripts/make_smollm2_reference.py.

  gguf_hf_check.py folder DIR REF   an HF folder (from_pretrained(DIR))
  gguf_hf_check.py gguf FILE REF    a GGUF file (from_pretrained(dir, gguf_file=name))

Prints "rel_err E" (logits of the three reference prompts at the reference
columns, ||out - ref|| / ||ref||) and "ids_equal 0|1" (the tokenizer and chat
template loaded from the output give the reference ids of prompt 0).
Exits 77 when torch/transformers are not installed."""
import os
import sys

try:
    import numpy as np
    import torch
    from safetensors.numpy import load_file
    from transformers import AutoModelForCausalLM, AutoTokenizer
except ImportError:
    sys.exit(77)


def main(kind, path, ref_path):
    if kind == "folder":
        args, kw = (path,), {}
    else:
        d, name = os.path.split(os.path.abspath(path))
        args, kw = (d,), {"gguf_file": name}
    tok = AutoTokenizer.from_pretrained(*args, **kw)
    model = AutoModelForCausalLM.from_pretrained(*args, torch_dtype=torch.float32, **kw).eval()
    ref = load_file(ref_path)
    cols = ref["cols"]
    num = den = 0.0
    with torch.no_grad():
        for k in range(3):
            ids = ref[f"prompt{k}.ids"]
            out = model(torch.tensor([ids.astype(np.int64)])).logits[0].numpy()[:, cols]
            want = ref[f"prompt{k}.logits"]
            num += float(((out - want) ** 2).sum())
            den += float((want ** 2).sum())
    print("rel_err", (num / den) ** 0.5)
    text = tok.apply_chat_template([{"role": "user", "content": "What is the capital of France?"}],
                                   tokenize=False, add_generation_prompt=True)
    ids = tok(text, add_special_tokens=False)["input_ids"]
    print("ids_equal", int(list(ids) == ref["prompt0.ids"].tolist()))


if __name__ == "__main__":
    main(*sys.argv[1:4])
