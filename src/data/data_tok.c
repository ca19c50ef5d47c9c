/* The dataset's view of a gllm_tokenizer. Kept apart from the rest of the
 * module so that code using a custom encoder does not link the tokenizer. */
#include "gllm/data.h"

static gllm_status tok_encode(const void *ctx, const char *text, size_t len, bool add_special,
                              int32_t **ids, size_t *n_ids)
{
    return gllm_tok_encode((const gllm_tokenizer *)ctx, text, len, add_special, ids, n_ids);
}

gllm_data_encoder gllm_data_encoder_tok(const gllm_tokenizer *tok)
{
    gllm_data_encoder e;
    e.encode = tok_encode;
    e.ctx = tok;
    e.eos_id = gllm_tok_eos_id(tok);
    e.pad_id = gllm_tok_pad_id(tok);
    if (e.pad_id < 0)
        e.pad_id = e.eos_id >= 0 ? e.eos_id : 0;
    return e;
}
