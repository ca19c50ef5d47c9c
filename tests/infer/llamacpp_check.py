"""llama.cpp side of tests/infer/test_infer_llamacpp.c:

  llamacpp_check.py GCONVERT SOURCE_DIR TMP_DIR SMOLLM2_GGUF|-

Exports models with gllm's own gconvert and runs them in llama.cpp (the
`llama_cpp` module of the PyPI package llama-cpp-python, which compiles
llama.cpp when installed from its source package):

  - SmolLM2-135M-Instruct: the Q4_1 GGUF -> HF folder (f32 safetensors) ->
    GGUF F32 and F16, the way a gtrain checkpoint reaches llama.cpp (Q8_0 is
    not compared: llama.cpp's CPU matmuls round the activations to 8-bit
    blocks too, and its logits differ from gllm's by 10-18% relative in the
    worst row, greedy ids parting after 5-21 tokens, measured 2026-12-02);
  - the tiny HF fixtures (tests/fixtures/<arch>) gpt2, llama2, llama3, qwen2,
    mistral and smollm, given the small tokenizers that
    tests/model/gguf_export_check.py builds, exported to GGUF F32.

For every (file, prompt) llama.cpp tokenizes the prompt text (BOS as the
file's add_bos_token says, special tokens parsed), decodes N_NEW tokens
greedily (argmax of its logits; EOS does not stop it) with every position's
logits kept (logits_all) and an F32 KV cache, and this script writes the
logits (f32, [n_prompt + n_new - 1, V], row i predicts token i + 1) to a raw
file and the prompt text to another. The C test runs gllm on the model the
file was made from (SOURCE): the HF folder for F32, so that an export that
writes the weights wrong (say, q/k not permuted the llama.cpp way, which gllm
reading its own file back would undo consistently) shows; the GGUF file itself
for F16, so that both engines use the same rounded weights.

Mistral: gllm writes it as llama.cpp's converter does (architecture "llama",
the window under llama.attention.sliding_window), but llama.cpp's llama
architecture has no sliding window, so the mistral sequences are kept within
the fixture's window (6 positions), where the window changes nothing: short
prompts (WINDOW_PROMPTS), as many new tokens as fit.

Prints "llamacpp VERSION" and one line per case:
  case NAME GGUF SOURCE TYPE V N_PROMPT N_NEW LOGITS_FILE TEXT_FILE ID...
(the ids: prompt then generated). Exits 77 when llama_cpp (or numpy, or the
packages gguf_export_check.py needs to build the fixture tokenizers) is missing.
"""
import json
import os
import shutil
import subprocess
import sys

try:
    import numpy as np
    import llama_cpp
except ImportError:
    print("llama_cpp is not importable (pip install llama-cpp-python builds llama.cpp)",
          file=sys.stderr)
    sys.exit(77)

SMOLLM2_PROMPTS = [
    "The capital of France is",
    "def fibonacci(n):\n",
    "Once upon a time, in a small village,",
    "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face"
    "<|im_end|>\n"
    "<|im_start|>user\nWhat is the boiling point of water?<|im_end|>\n<|im_start|>assistant\n",
]
FIXTURE_PROMPTS = ["the cat sat on the mat", "Hello, world! 123", "a"]
WINDOW_PROMPTS = ["the cat", "Hello", "a"]
FIXTURE_ARCHS = ["gpt2", "llama2", "llama3", "qwen2", "mistral", "smollm"]
SMOLLM2_NEW = 32
FIXTURE_NEW = 12


def fixture_folder(src, tmp, arch):
    """tests/fixtures/ARCH plus the tokenizer gguf_export_check.py gives it
    (SentencePiece-style for llama2 and mistral, byte-level BPE otherwise)."""
    sys.path.insert(0, os.path.join(src, "tests", "model"))
    import gguf_export_check as gx  # exits 77 without torch, transformers, tokenizers, gguf

    d = os.path.join(tmp, arch)
    os.makedirs(d, exist_ok=True)
    for name in ("config.json", "model.safetensors"):
        shutil.copy(os.path.join(src, "tests", "fixtures", arch, name), d)
    with open(os.path.join(d, "config.json")) as f:
        cfg = json.load(f)
    V = cfg["vocab_size"]
    if arch in ("llama2", "mistral"):
        tj, tc = gx.spm_tokenizer(V)
    else:
        tj, tc = gx.byte_level_tokenizer(V, gx.QWEN2_SPLIT if arch == "qwen2" else None)
    with open(os.path.join(d, "tokenizer.json"), "w", encoding="utf-8") as f:
        json.dump(tj, f, ensure_ascii=False)
    with open(os.path.join(d, "tokenizer_config.json"), "w", encoding="utf-8") as f:
        json.dump(tc, f, ensure_ascii=False)
    return d, cfg


def greedy(llm, prompt_ids, n_new):
    """prompt + n_new argmax ids, and the logits of every position but the last"""
    llm.reset()
    llm.eval(prompt_ids)
    ids = list(prompt_ids)
    for k in range(n_new):
        ids.append(int(np.argmax(llm.scores[llm.n_tokens - 1])))
        if k + 1 < n_new:
            llm.eval([ids[-1]])
    return ids, np.ascontiguousarray(llm.scores[: len(ids) - 1], dtype=np.float32)


def run_file(name, path, source, gtype, prompts, n_new, window, tmp):
    llm = llama_cpp.Llama(model_path=path, n_ctx=256, n_batch=256, n_threads=2, n_threads_batch=2,
                          logits_all=True, type_k=0, type_v=0, flash_attn=False, seed=0,
                          verbose=False)
    for i, text in enumerate(prompts):
        prompt = llm.tokenize(text.encode("utf-8"), add_bos=True, special=True)
        new = n_new if not window else min(n_new, window - len(prompt))
        assert new >= 1, (name, text, len(prompt), window)
        ids, logits = greedy(llm, prompt, new)
        case = f"{name}-p{i}"
        lpath = os.path.join(tmp, case + ".logits")
        tpath = os.path.join(tmp, case + ".txt")
        logits.tofile(lpath)
        with open(tpath, "wb") as f:
            f.write(text.encode("utf-8"))
        print(f"case {case} {path} {source} {gtype} {logits.shape[1]} {len(prompt)} {new} "
              f"{lpath} {tpath} "
              + " ".join(map(str, ids)), flush=True)
    llm.close()


def gconvert(exe, src, dst, *args):
    subprocess.run([exe, src, dst, *args], check=True, stdout=subprocess.DEVNULL)


def main(exe, src, tmp, smollm2):
    print("llamacpp", llama_cpp.__version__, flush=True)
    for arch in FIXTURE_ARCHS:
        d, cfg = fixture_folder(src, tmp, arch)
        out = os.path.join(tmp, arch + "-f32.gguf")
        gconvert(exe, d, out, "--type", "f32", "--name", arch + " fixture")
        window = cfg.get("sliding_window")
        run_file(arch + "-f32", out, d, "f32", WINDOW_PROMPTS if window else FIXTURE_PROMPTS,
                 FIXTURE_NEW, window, tmp)
    if smollm2 != "-":
        hf = os.path.join(tmp, "smollm2-hf")
        gconvert(exe, smollm2, hf, "--type", "f32")
        for gtype in ("f32", "f16"):
            out = os.path.join(tmp, f"smollm2-{gtype}.gguf")
            gconvert(exe, hf, out, "--type", gtype, "--name", "SmolLM2-135M-Instruct")
            run_file("smollm2-" + gtype, out, hf if gtype == "f32" else out, gtype,
                     SMOLLM2_PROMPTS, SMOLLM2_NEW, None, tmp)


if __name__ == "__main__":
    main(*sys.argv[1:5])
