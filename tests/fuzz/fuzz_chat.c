/* Any template source given to the Jinja-subset interpreter: refused at open or
 * rendered (or raising), never a crash or a hang. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "gllm/chat.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *src = malloc(size + 1);
    memcpy(src, data, size);
    src[size] = '\0';
    gllm_chat_template *t = NULL;
    if (gllm_chat_open(src, "<s>", "</s>", &t) == GLLM_OK) {
        const gllm_chat_message msgs[] = {{"system", "Be brief."},
                                          {"user", "Hi {{ there }}"},
                                          {"assistant", "Hello."},
                                          {"user", "Bye"}};
        char *out = NULL;
        if (gllm_chat_render(t, msgs, 4, true, &out, NULL) == GLLM_OK)
            free(out);
        gllm_chat_free(t);
    }
    free(src);
    return 0;
}
