#!/usr/bin/env python3
"""Make a Hugging Face folder (config, safetensors fp32, tokenizer) of
SmolLM2-135M-Instruct from the GGUF in ../shared (Q4_1, dequantised by
transformers), for the inference bench: models/SmolLM2-135M-Instruct."""
import os
import sys

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SRC = os.path.join(ROOT, "..", "shared", "assets", "models", "SmolLM2-135M-Instruct-GGUF")
GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
DST = os.path.join(ROOT, "models", "SmolLM2-135M-Instruct")

if os.path.exists(os.path.join(DST, "model.safetensors")):
    print(f"{DST} exists")
    sys.exit(0)
tok = AutoTokenizer.from_pretrained(SRC, gguf_file=GGUF)
model = AutoModelForCausalLM.from_pretrained(SRC, gguf_file=GGUF, dtype=torch.float32)
# the loaded model is marked as gguf-quantised and refuses to save: copy its
# (already dequantised) weights into a plain model built from the same config
cfg = model.config
if hasattr(cfg, "quantization_config"):
    del cfg.quantization_config
plain = AutoModelForCausalLM.from_config(cfg, dtype=torch.float32)
plain.load_state_dict(model.state_dict())
if hasattr(plain, "hf_quantizer"):
    plain.hf_quantizer = None
os.makedirs(DST, exist_ok=True)
plain.save_pretrained(DST, safe_serialization=True)
tok.save_pretrained(DST)
print(f"wrote {DST}")
