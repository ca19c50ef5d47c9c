/* A batch of training or scoring tokens, as the dataset produces it and the
 * model consumes it: B rows of T tokens, host memory, token n = b*T + t. */
#ifndef GLLM_BATCH_H
#define GLLM_BATCH_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct gllm_batch {
    int B, T;
    int32_t *ids;     /* [B*T] input token ids */
    int32_t *targets; /* [B*T] next-token targets; any value where loss_mask is 0 */
    float *loss_mask; /* [B*T] 1 where the target counts toward the loss, else 0 */
    int32_t *pos;     /* [B*T] position inside the token's own document; restarts at 0
                         at each packed document, so attention never crosses documents */
} gllm_batch;

#ifdef __cplusplus
}
#endif
#endif
