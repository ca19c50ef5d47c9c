"""The llama.cpp run of bench/infer_vs_transformers.py (--runs ...,llamacpp): llama.cpp
through llama-cpp-python's low-level API (llama_batch / llama_decode), since its
high-level Llama class runs one sequence at a time.

What it does, as llama.cpp's own `parallel` example and server do for many prompts:
  - continuous batching: up to SLOTS sequences run at once, each its own sequence id; every
    llama_decode call carries one token of each decoding sequence plus prefill chunks of
    newly admitted ones, up to N_BATCH tokens; a finished sequence leaves and the next
    prompt takes its slot in the same step;
  - prefix sharing: the longest common token prefix of each kind of prompt (the chat
    template's system prompt, the 8-shot prefix) is computed once into a sequence of its
    own and copied into a slot's KV cache (llama_memory_seq_cp) when a prompt of that kind
    is admitted, so only the rest of the prompt is prefilled;
  - per-sequence KV streams (kv_unified off: each sequence attends over its own cache only)
    of CTX_SEQ cells, F32 K and V (the model is fp32: an F32 GGUF), flash attention off;
  - greedy: argmax of each row's logits (numpy; lowest id on ties, as gllm), eos ignored.
Timed (wall and CPU seconds) from the first llama_decode to the last result; loading the model
is not.
"""
import resource
import time
from collections import deque

import numpy as np
import llama_cpp as L
from llama_cpp._logger import set_verbose

SLOTS = 128
N_BATCH = 2048


def _common_prefix(seqs):
    n = min(len(s) for s in seqs)
    first = seqs[0]
    for s in seqs[1:]:
        k = 0
        while k < n and s[k] == first[k]:
            k += 1
        n = k
    return n


class _Seq:
    def __init__(self, i, prompt, n_new, start):
        self.i, self.prompt, self.n_new = i, prompt, n_new
        self.next = start  # next prompt index to prefill
        self.out = []


def run(gguf, prompts, threads, slots=SLOTS, n_batch=N_BATCH, unified=False):
    """prompts: [(ids, n_new, kind)]. Returns (wall_s, outputs [ids per prompt], info: the
    settings, decode calls, prompt tokens computed and cpu_s)."""
    L.llama_backend_init()
    set_verbose(False)  # llama.cpp's log: errors only
    mp = L.llama_model_default_params()
    model = L.llama_model_load_from_file(gguf.encode(), mp)
    if not model:
        raise RuntimeError(f"llama.cpp cannot load {gguf}")
    V = L.llama_vocab_n_tokens(L.llama_model_get_vocab(model))
    kinds = sorted({p[2] for p in prompts})
    longest = max(len(p[0]) + p[1] for p in prompts)
    ctx_seq = (longest + 255) // 256 * 256
    n_seq = slots + len(kinds)
    cp = L.llama_context_default_params()
    cp.n_ctx = n_seq * ctx_seq
    cp.n_batch = n_batch
    cp.n_ubatch = min(n_batch, 512)
    cp.n_seq_max = n_seq
    cp.n_threads = cp.n_threads_batch = threads
    cp.type_k = cp.type_v = 0  # GGML_TYPE_F32
    cp.flash_attn_type = 0     # LLAMA_FLASH_ATTN_TYPE_DISABLED
    cp.kv_unified = unified
    cp.no_perf = True
    ctx = L.llama_init_from_model(model, cp)
    if not ctx:
        raise RuntimeError("llama.cpp: cannot create the context")
    mem = L.llama_get_memory(ctx)
    batch = L.llama_batch_init(n_batch, 0, 1)

    def decode(items):
        """one llama_decode of items: (token, position, sequence, wants logits)"""
        for j, (tok, pos, seq, want) in enumerate(items):
            batch.token[j] = tok
            batch.pos[j] = pos
            batch.n_seq_id[j] = 1
            batch.seq_id[j][0] = seq
            batch.logits[j] = 1 if want else 0
        batch.n_tokens = len(items)
        rc = L.llama_decode(ctx, batch)
        if rc != 0:
            raise RuntimeError(f"llama_decode returned {rc}")

    def argmax(row):
        p = L.llama_get_logits_ith(ctx, row)
        return int(np.argmax(np.ctypeslib.as_array(p, shape=(V,))))

    def cpu_s():
        u = resource.getrusage(resource.RUSAGE_SELF)
        return u.ru_utime + u.ru_stime

    t0, c0 = time.perf_counter(), cpu_s()
    # the shared prefix of each kind, computed once into its own sequence
    template = {}
    for k, kind in enumerate(kinds):
        ids = [p[0] for p in prompts if p[2] == kind]
        n = min(_common_prefix(ids), min(len(x) for x in ids) - 1)
        seq = slots + k
        for c in range(0, n, n_batch):
            decode([(ids[0][j], j, seq, False) for j in range(c, min(n, c + n_batch))])
        template[kind] = (seq, n)
    queue = deque(range(len(prompts)))
    free = list(range(slots - 1, -1, -1))
    running = {}  # seq -> _Seq, in admission order
    outs = [None] * len(prompts)
    steps = computed = 0
    while queue or running:
        while free and queue:
            i = queue.popleft()
            seq = free.pop()
            tseq, n = template[prompts[i][2]]
            L.llama_memory_seq_rm(mem, seq, -1, -1)
            if n > 0:
                L.llama_memory_seq_cp(mem, tseq, seq, -1, -1)
            running[seq] = _Seq(i, prompts[i][0], prompts[i][1], n)
        items, rows = [], []
        for seq, s in running.items():
            if s.next == len(s.prompt):  # decoding: feed the last generated id
                items.append((s.out[-1], len(s.prompt) + len(s.out) - 1, seq, True))
                rows.append(seq)
        for seq, s in running.items():
            if s.next < len(s.prompt) and len(items) < n_batch:
                take = min(n_batch - len(items), len(s.prompt) - s.next)
                for j in range(s.next, s.next + take):
                    items.append((s.prompt[j], j, seq, j == len(s.prompt) - 1))
                s.next += take
                computed += take
                if s.next == len(s.prompt):
                    rows.append(seq)
        decode(items)
        steps += 1
        by_seq = {}
        for j, it in enumerate(items):
            if it[3]:
                by_seq[it[2]] = j
        for seq in rows:
            s = running[seq]
            s.out.append(argmax(by_seq[seq]))
            if len(s.out) == s.n_new:
                outs[s.i] = s.out
                del running[seq]
                free.append(seq)
    wall, cpu = time.perf_counter() - t0, cpu_s() - c0
    L.llama_batch_free(batch)
    L.llama_free(ctx)
    L.llama_model_free(model)
    shared = sum(n for _, n in template.values())
    info = {"steps": steps, "slots": slots, "ctx_per_seq": ctx_seq, "kv_unified": unified,
            "prompt_tokens_computed": computed + shared, "n_batch": n_batch,
            "n_ubatch": min(n_batch, 512), "cpu_s": cpu}
    return wall, outs, info
