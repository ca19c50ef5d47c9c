/* Tokenizers between GGUF metadata and Hugging Face files. gllm_tok_load and
 * gllm_chat_load also accept a .gguf path directly. */
#ifndef GLLM_TOK_GGUF_H
#define GLLM_TOK_GGUF_H

#include "gllm/gguf.h"
#include "gllm/tok.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The tokenizer.json and tokenizer_config.json texts (malloc'd, caller frees)
 * for the tokenizer of a GGUF file, as gllm_tok_load builds it from the file:
 * transformers and the `tokenizers` package load them. */
gllm_status gllm_tok_gguf_to_hf(const char *gguf_path, char **tokenizer_json,
                                char **tokenizer_config_json);

/* Add tokenizer.ggml.* metadata and tokenizer.chat_template describing tok to
 * w. Byte-level BPE tokenizers whose pre-tokenizer is one llama.cpp names
 * (gpt2, smollm, llama-bpe, qwen2, tekken) are written as model "gpt2"
 * (tokens, token types, merges, pre-tokenizer name, special ids,
 * add_bos/add_eos); SentencePiece-style ones (byte fallback, spaces as U+2581
 * by Metaspace or Prepend/Replace, as Llama 2 and Mistral) as model "llama"
 * (tokens, scores that give back the merge order, token types with bytes and
 * unknown, add_space_prefix, special ids, add_bos/add_eos). Others are
 * refused with GLLM_ERR_UNSUPPORTED naming what is missing. */
gllm_status gllm_tok_export_gguf(const gllm_tokenizer *tok, gllm_gguf_writer *w);

#ifdef __cplusplus
}
#endif
#endif
