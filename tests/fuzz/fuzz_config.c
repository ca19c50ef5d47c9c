/* Any bytes as config.json (model) and as a gtrain run config: refused with a
 * message or parsed, never a crash. */
#include "fuzz_common.h"
#include "gllm/model.h"
#include "gllm/train.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *path = fuzz_write("-config.json", data, size);
    gllm_model_config c;
    if (gllm_model_config_load(path, &c) == GLLM_OK && c.head_dim > 0 && c.head_dim <= 4096) {
        float inv[2048];
        gllm_rope_inv_freq(&c, inv);
    }
    gllm_train_config t;
    gllm_train_config_load(path, &t);
    unlink(path);
    return 0;
}
