/* Any bytes given to the safetensors reader: an error or a valid table, never a crash. */
#include <string.h>

#include "fuzz_common.h"
#include "gllm/safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *path = fuzz_write(".safetensors", data, size);
    gllm_safetensors *st = NULL;
    if (gllm_st_open(path, &st) == GLLM_OK) {
        for (int i = 0; i < gllm_st_count(st); i++) {
            const gllm_st_tensor *t = gllm_st_at(st, i);
            volatile unsigned char sink = 0;
            for (size_t b = 0; b < t->nbytes; b += 4096) /* every byte range is mapped */
                sink ^= ((const unsigned char *)t->data)[b];
            (void)sink;
            if (t->dtype == GLLM_F32 && t->ndim <= 2 && t->nbytes <= (1 << 20)) {
                float *buf = malloc(t->nbytes ? t->nbytes : 1);
                gllm_st_read_f32(st, t->name, t->ndim, t->shape, buf);
                free(buf);
            }
        }
        gllm_st_close(st);
    }
    unlink(path);
    return 0;
}
