/* gconvert: models between Hugging Face folders and GGUF files.
 *
 *   gconvert IN OUT [--type f32|f16|bf16|q8_0] [--name NAME]
 *
 * IN is an HF folder or a .gguf file. OUT ending in .gguf gets a GGUF file
 * (weights as --type, default f16; tokenizer and chat template metadata from
 * IN's tokenizer) that llama.cpp and the `gguf` package read. Any other OUT
 * gets an HF folder from a .gguf IN: config.json, model.safetensors (--type
 * bf16, the default, or f32), tokenizer.json and tokenizer_config.json (with
 * the chat template), which transformers loads. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "gllm/backend.h"
#include "gllm/dtype.h"
#include "gllm/gguf.h"
#include "gllm/gguf_model.h"
#include "gllm/model.h"
#include "gllm/safetensors.h"
#include "gllm/tok.h"
#include "gllm/tok_gguf.h"

static bool ends_with(const char *s, const char *suf)
{
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && strcmp(s + a - b, suf) == 0;
}

static gllm_status write_text(const char *dir, const char *name, const char *text)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f)
        return gllm_fail(GLLM_ERR_IO, "%s: cannot write: %s", path, strerror(errno));
    size_t n = strlen(text);
    bool ok = fwrite(text, 1, n, f) == n;
    ok = fclose(f) == 0 && ok;
    return ok ? GLLM_OK : gllm_fail(GLLM_ERR_IO, "%s: write failed", path);
}

static gllm_status to_gguf(gllm_model *m, const char *in, const char *out, int type,
                           const char *name)
{
    gllm_tokenizer *tok = NULL;
    GLLM_TRY(gllm_tok_load(in, &tok));
    gllm_gguf_writer *w;
    gllm_status s = gllm_gguf_writer_new(out, &w);
    if (s == GLLM_OK) {
        s = gllm_model_export_gguf(m, w, type, name);
        if (s == GLLM_OK)
            s = gllm_tok_export_gguf(tok, w);
        if (s == GLLM_OK)
            s = gllm_gguf_writer_finish(w);
        else
            gllm_gguf_writer_free(w);
    }
    gllm_tok_free(tok);
    return s;
}

static void transpose(float *dst, const float *src, int64_t rows, int64_t cols)
{
    for (int64_t r = 0; r < rows; r++)
        for (int64_t c = 0; c < cols; c++)
            dst[c * rows + r] = src[r * cols + c];
}

static gllm_status to_hf(gllm_model *m, const char *in, const char *dir, gllm_dtype dt)
{
    if (mkdir(dir, 0755) != 0 && errno != EEXIST)
        return gllm_fail(GLLM_ERR_IO, "%s: cannot create folder: %s", dir, strerror(errno));
    gllm_gguf *g;
    GLLM_TRY(gllm_gguf_open(in, &g));
    char *config = NULL, *tj = NULL, *tc = NULL;
    gllm_status s = gllm_gguf_hf_config(g, &config);
    gllm_gguf_close(g);
    if (s == GLLM_OK)
        s = gllm_tok_gguf_to_hf(in, &tj, &tc);
    const int n = gllm_model_n_params(m);
    gllm_st_entry *e = calloc((size_t)n, sizeof *e);
    void *data = malloc(gllm_model_numel(m) * gllm_dtype_size(dt));
    size_t maxn = 0;
    for (int i = 0; i < n; i++)
        if (gllm_model_param(m, i)->numel > maxn)
            maxn = gllm_model_param(m, i)->numel;
    float *a = malloc(maxn * sizeof(float)), *b = malloc(maxn * sizeof(float));
    if (s == GLLM_OK && (!e || !data || !a || !b))
        s = gllm_fail(GLLM_ERR_OOM, "out of memory for the HF weights");
    for (int i = 0; i < n && s == GLLM_OK; i++) {
        const gllm_param_info *p = gllm_model_param(m, i);
        s = gllm_model_read_param(m, p, a);
        const float *src = a;
        e[i].name = p->name;
        e[i].dtype = dt;
        e[i].ndim = p->ndim;
        e[i].shape[0] = p->shape[0];
        e[i].shape[1] = p->shape[1];
        if (p->hf_transposed) { /* GPT-2's Conv1D: [in, out] in the HF file */
            transpose(b, a, p->shape[0], p->shape[1]);
            src = b;
            e[i].shape[0] = p->shape[1];
            e[i].shape[1] = p->shape[0];
        }
        void *dst = (char *)data + p->offset * gllm_dtype_size(dt);
        gllm_from_f32(dst, dt, src, p->numel);
        e[i].data = dst;
    }
    char path[4096];
    if (s == GLLM_OK) {
        static const char *const meta[] = {"format", "pt", NULL};
        snprintf(path, sizeof path, "%s/model.safetensors", dir);
        s = gllm_st_write(path, e, n, meta);
    }
    if (s == GLLM_OK && dt == GLLM_BF16) { /* say the weights' dtype in the config */
        cJSON *c = cJSON_Parse(config);
        cJSON_ReplaceItemInObjectCaseSensitive(c, "torch_dtype", cJSON_CreateString("bfloat16"));
        char *text = c ? cJSON_Print(c) : NULL;
        cJSON_Delete(c);
        if (text) {
            free(config);
            config = text;
        }
    }
    if (s == GLLM_OK)
        s = write_text(dir, "config.json", config);
    if (s == GLLM_OK)
        s = write_text(dir, "tokenizer.json", tj);
    if (s == GLLM_OK)
        s = write_text(dir, "tokenizer_config.json", tc);
    free(a);
    free(b);
    free(data);
    free(e);
    free(config);
    free(tj);
    free(tc);
    return s;
}

static int usage(void)
{
    fprintf(stderr, "usage: gconvert IN OUT [--type f32|f16|bf16|q8_0] [--name NAME]\n"
                    "  IN: an HF model folder or a .gguf file\n"
                    "  OUT: a .gguf file (default type f16), or an HF folder from a .gguf IN\n"
                    "       (default type bf16)\n");
    return 2;
}

int main(int argc, char **argv)
{
    const char *in = NULL, *out = NULL, *type = NULL, *name = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--type") == 0 && i + 1 < argc)
            type = argv[++i];
        else if (strcmp(argv[i], "--name") == 0 && i + 1 < argc)
            name = argv[++i];
        else if (argv[i][0] == '-')
            return usage();
        else if (!in)
            in = argv[i];
        else if (!out)
            out = argv[i];
        else
            return usage();
    }
    if (!in || !out)
        return usage();
    const bool gguf_out = ends_with(out, ".gguf");
    if (!gguf_out && !ends_with(in, ".gguf")) {
        fprintf(stderr, "gconvert: %s is an HF folder already; OUT must end in .gguf\n", in);
        return 2;
    }
    if (!type)
        type = gguf_out ? "f16" : "bf16";
    static const struct {
        const char *name;
        int ggml;
        int st; /* safetensors dtype, -1 if not an HF output type */
    } types[] = {{"f32", GLLM_GGML_F32, GLLM_F32},
                 {"f16", GLLM_GGML_F16, -1},
                 {"bf16", GLLM_GGML_BF16, GLLM_BF16},
                 {"q8_0", GLLM_GGML_Q8_0, -1}};
    int t = -1;
    for (int i = 0; i < 4; i++)
        if (strcmp(types[i].name, type) == 0)
            t = i;
    if (t < 0 || (!gguf_out && types[t].st < 0)) {
        fprintf(stderr, "gconvert: --type %s is not one of %s\n", type,
                gguf_out ? "f32, f16, bf16, q8_0" : "bf16, f32 (HF output)");
        return 2;
    }
    gllm_backend *be;
    gllm_model *m = NULL;
    gllm_status s = gllm_backend_cpu_create(0, &be);
    if (s == GLLM_OK)
        s = gllm_model_load(in, be, &m);
    if (s == GLLM_OK)
        s = gguf_out ? to_gguf(m, in, out, types[t].ggml, name)
                     : to_hf(m, in, out, (gllm_dtype)types[t].st);
    if (s != GLLM_OK) {
        fprintf(stderr, "gconvert: %s\n", gllm_last_error());
        gllm_model_free(m);
        return 1;
    }
    printf("gconvert: %s -> %s (%s, %zu parameters)\n", in, out, type, gllm_model_numel(m));
    gllm_model_free(m);
    be->destroy(be);
    return 0;
}
