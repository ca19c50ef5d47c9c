/* Any bytes as a JSONL dataset, through the loader with a byte-level encoder
 * and the chatml template: a file:line error or documents, never a crash. */
#include <string.h>

#include "fuzz_common.h"
#include "gllm/data.h"

static gllm_status bytes_encode(const void *ctx, const char *text, size_t len, bool add_special,
                                int32_t **ids, size_t *n_ids)
{
    (void)ctx;
    *ids = malloc((len + 1) * sizeof(int32_t));
    size_t k = 0;
    if (add_special)
        (*ids)[k++] = 256;
    for (size_t i = 0; i < len; i++)
        (*ids)[k++] = (unsigned char)text[i];
    *n_ids = k;
    return GLLM_OK;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static gllm_chat_template *chat;
    if (!chat && gllm_chat_open("chatml", NULL, NULL, &chat) != GLLM_OK)
        abort();
    const char *path = fuzz_write(".jsonl", data, size);
    const gllm_data_encoder enc = {.encode = bytes_encode, .eos_id = 257, .pad_id = 0};
    gllm_data_options o = gllm_data_default_options();
    o.max_len = 64;
    o.skip_bad = size % 2;
    o.overlong = GLLM_DATA_OVERLONG_TRUNCATE;
    o.chat = chat;
    o.val_fraction = 0.25;
    gllm_dataset *ds = NULL;
    if (gllm_data_load(path, &enc, &o, &ds) == GLLM_OK) {
        gllm_data_loader *l = NULL;
        if (gllm_data_loader_new(ds, 0, 2, 64, true, 1, 0, 1, &l) == GLLM_OK) {
            int32_t ids[128], tg[128], pos[128];
            float mask[128];
            gllm_batch b = {.B = 2, .T = 64, .ids = ids, .targets = tg, .pos = pos,
                            .loss_mask = mask};
            for (size_t i = 0; i < gllm_data_loader_n_batches(l); i++)
                gllm_data_loader_batch(l, i, &b, NULL);
            gllm_data_loader_free(l);
        }
        gllm_data_free(ds);
    }
    unlink(path);
    return 0;
}
