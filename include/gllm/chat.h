/* Chat templates: turn a list of role/content messages into the prompt string
 * that Hugging Face transformers' apply_chat_template(tokenize=False) renders
 * from a tokenizer_config.json "chat_template".
 *
 * The template source is interpreted by a small Jinja subset (if/elif/else,
 * for with loop.*, set with namespace(), the expression and filter set that
 * public chat templates use) under the environment transformers uses:
 * trim_blocks and lstrip_blocks on, raise_exception() as a global, bos_token,
 * eos_token, messages and add_generation_prompt as variables. A construct
 * outside that subset is refused when the template is opened, with a message
 * naming it and the built-in names that can replace it in the config.
 *
 * Built-in templates, selectable by name wherever a template source is taken:
 *   "chatml"  <|im_start|>role\ncontent<|im_end|>\n      (Qwen2, SmolLM2 style)
 *   "llama2"  <s>[INST] <<SYS>>..<</SYS>> user [/INST] answer </s>
 *   "llama3"  <|start_header_id|>role<|end_header_id|>\n\ncontent<|eot_id|>
 *   "mistral" <s>[INST] user [/INST]answer</s>
 *   "plain"   contents joined by blank lines, for base models
 * Training data and inference prompts both go through gllm_chat_render, so a
 * fine-tuned model is prompted exactly as it was trained. */
#ifndef GLLM_CHAT_H
#define GLLM_CHAT_H

#include <stdbool.h>
#include <stddef.h>

#include "gllm/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct gllm_chat_template gllm_chat_template;

typedef struct gllm_chat_message {
    const char *role;    /* "system", "user", "assistant", "tool", ... */
    const char *content; /* UTF-8, NUL-terminated */
} gllm_chat_message;

/* `spec` is a built-in name (see above) or Jinja template source. bos/eos are
 * the token strings the template sees as bos_token/eos_token (NULL: the
 * variable is undefined, as when tokenizer_config.json has none).
 * Caller frees with gllm_chat_free. */
gllm_status gllm_chat_open(const char *spec, const char *bos_token, const char *eos_token,
                           gllm_chat_template **out);

/* The chat template of a model folder (or of the folder of a tokenizer.json
 * path): tokenizer_config.json's chat_template, bos_token and eos_token.
 * `override` (may be NULL) is a built-in name or template source from gllm's
 * own config that replaces the folder's template; the folder's bos/eos strings
 * are still used. A folder without a chat_template and no override is
 * GLLM_ERR_NOT_FOUND naming the file. Caller frees with gllm_chat_free. */
gllm_status gllm_chat_load(const char *path, const char *override, gllm_chat_template **out);

void gllm_chat_free(gllm_chat_template *t);

/* Render n messages. *out is malloc'd and NUL-terminated (caller frees);
 * *len (may be NULL) gets its length. A raise_exception() in the template is
 * GLLM_ERR_INVALID carrying the template's message. */
gllm_status gllm_chat_render(const gllm_chat_template *t, const gllm_chat_message *msgs,
                             size_t n, bool add_generation_prompt, char **out, size_t *len);

/* The built-in template source for `name`, or NULL if there is none. */
const char *gllm_chat_builtin(const char *name);

#ifdef __cplusplus
}
#endif
#endif
