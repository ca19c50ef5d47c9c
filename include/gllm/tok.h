/* Tokenizers from Hugging Face tokenizer.json (+ tokenizer_config.json):
 * byte-level BPE (GPT-2, Llama-3, Qwen2, SmolLM) and SentencePiece-style BPE
 * (Llama-2, TinyLlama, Mistral), producing exactly the ids that the
 * `tokenizers` package produces. */
#ifndef GLLM_TOK_H
#define GLLM_TOK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gllm/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct gllm_tokenizer gllm_tokenizer;

/* `path` is a model folder (tokenizer.json, optional tokenizer_config.json)
 * or a tokenizer.json file (its folder is searched for tokenizer_config.json).
 * Unsupported components are refused with a message naming them.
 * Caller frees with gllm_tok_free. */
gllm_status gllm_tok_load(const char *path, gllm_tokenizer **out);
void gllm_tok_free(gllm_tokenizer *tok);

/* Encode len bytes of text. add_special: add BOS/EOS as the tokenizer's
 * config/post-processor says (HF add_special_tokens). Added/special tokens in
 * the text are always split out (HF behaviour). Invalid UTF-8 is first
 * repaired as Python's bytes.decode("utf-8", errors="replace") does (one
 * U+FFFD per maximal invalid subpart), so the ids equal HF's for the repaired
 * string. *ids is malloc'd, caller frees.
 *
 * Thread safety: a loaded tokenizer is read-only, so any number of threads may
 * encode and decode with the same const tokenizer at once (e.g. an OpenMP loop
 * over JSONL lines). Each thread keeps its own word cache and regex scratch
 * (a few MB), created on first use; gllm_tok_thread_cleanup frees the calling
 * thread's, and gllm_tok_free frees the calling thread's as well. */
gllm_status gllm_tok_encode(const gllm_tokenizer *tok, const char *text, size_t len,
                            bool add_special, int32_t **ids, size_t *n_ids);
/* Decode ids to a malloc'd NUL-terminated UTF-8 string (caller frees).
 * skip_special drops special tokens, as HF skip_special_tokens. */
gllm_status gllm_tok_decode(const gllm_tokenizer *tok, const int32_t *ids, size_t n_ids,
                            bool skip_special, char **text, size_t *len);

/* Free the calling thread's encode scratch (cache, regex match data). */
void gllm_tok_thread_cleanup(void);

int gllm_tok_vocab_size(const gllm_tokenizer *tok); /* including added tokens */
int gllm_tok_bos_id(const gllm_tokenizer *tok);     /* -1 if none */
int gllm_tok_eos_id(const gllm_tokenizer *tok);     /* -1 if none */
int gllm_tok_pad_id(const gllm_tokenizer *tok);     /* -1 if none */
/* id of a token's exact vocabulary string (e.g. "<|eot_id|>"), or -1 */
int gllm_tok_token_id(const gllm_tokenizer *tok, const char *token);
/* The token's vocabulary string, or NULL if out of range. */
const char *gllm_tok_token_str(const gllm_tokenizer *tok, int id);
/* true if id is an added token marked special (what skip_special drops) */
bool gllm_tok_is_special(const gllm_tokenizer *tok, int id);
/* The folder the tokenizer was loaded from. */
const char *gllm_tok_dir(const gllm_tokenizer *tok);
/* The raw tokenizer_config.json chat_template string (NULL if none; for a
 * list of named templates, the one named "default") for the chat module. */
const char *gllm_tok_chat_template(const gllm_tokenizer *tok);
/* bos/eos token strings as tokenizer_config.json names them, or NULL.
 * (bos/eos ids: from those strings; a config that names neither, as GPT-2's,
 * gets <|endoftext|> for both, transformers' default.) */
const char *gllm_tok_bos_str(const gllm_tokenizer *tok);
const char *gllm_tok_eos_str(const gllm_tokenizer *tok);

#ifdef __cplusplus
}
#endif
#endif
