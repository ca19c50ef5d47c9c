/* GGUF models in gllm: the HF configuration read from a GGUF file's
 * `{arch}.*` metadata, tensor names between the two conventions, and export
 * of a loaded model's weights to a GGUF writer.
 *
 * gllm_model_load accepts a path ending in ".gguf" wherever it accepts an HF
 * folder: llama (SmolLM2, Llama-2/3, Llama-3.1 rope scaling as a rope_freqs
 * tensor), mistral, qwen2 and gpt2 files. llama.cpp's converter stores llama-family q/k projections with
 * each head's rows interleaved for its RoPE layout ("permuted"); loading
 * undoes it and exporting redoes it, as transformers' GGUF loader does. */
#ifndef GLLM_GGUF_MODEL_H
#define GLLM_GGUF_MODEL_H

#include <stddef.h>

#include "gllm/gguf.h"
#include "gllm/model.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The config.json text transformers' GGUF loader would build for g (malloc'd,
 * caller frees): architectures, model_type and the sizes; a rope_freqs tensor
 * becomes rope_scaling {"rope_type": "llama3", ...} with the parameters fitted
 * to its factors. Unsupported architectures and options (rope.scaling.type
 * other than none, rope_freqs that are not Llama-3.1 scaling) are refused
 * naming the file and key or tensor. */
gllm_status gllm_gguf_hf_config(const gllm_gguf *g, char **json);

/* HF parameter name -> GGUF tensor name ("model.layers.3.mlp.up_proj.weight"
 * -> "blk.3.ffn_up.weight"); false if the name has no GGUF counterpart. */
bool gllm_gguf_tensor_name(const char *hf_name, char *out, size_t n);

/* Add the model's architecture metadata ({arch}.*, general.architecture,
 * general.name) and every parameter to w: matrices as `type` (F32, F16, BF16
 * or Q8_0; Q8_0 falls back to F32 for rows not a multiple of 32), vectors in
 * F32, llama-family q/k permuted the llama.cpp way, lm_head left out when
 * tied, llama3 rope scaling as llama.cpp's rope_freqs tensor. The caller adds tokenizer metadata and finishes the writer. */
gllm_status gllm_model_export_gguf(gllm_model *m, gllm_gguf_writer *w, int type,
                                   const char *name);

#ifdef __cplusplus
}
#endif
#endif
