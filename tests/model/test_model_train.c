/* Training behaviour and model I/O on the fixture models: loss falls, packed
 * documents cannot see each other, checkpoints round-trip (and load in
 * transformers when it is installed), bad configs/weights/batches are refused. */
#include <unistd.h>

#include "fixture.h"

static gllm_backend *g_be;

static gllm_model *load(const char *arch)
{
    char dir[1024];
    fixture_dir(arch, dir, sizeof dir);
    gllm_model *m = NULL;
    if (gllm_model_load(dir, g_be, &m) != GLLM_OK)
        printf("load %s: %s\n", arch, gllm_last_error());
    return m;
}

static void write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    fputs(text, f);
    fclose(f);
}

static void random_batch(gllm_batch *b, int B, int T, int V)
{
    b->B = B;
    b->T = T;
    b->ids = malloc((size_t)B * T * sizeof(int32_t));
    b->targets = malloc((size_t)B * T * sizeof(int32_t));
    b->pos = malloc((size_t)B * T * sizeof(int32_t));
    b->loss_mask = malloc((size_t)B * T * sizeof(float));
    for (int i = 0; i < B * T; i++) {
        b->ids[i] = (int32_t)(test_rand_u64() % (uint64_t)V);
        b->targets[i] = (int32_t)(test_rand_u64() % (uint64_t)V);
        b->pos[i] = i % T;
        b->loss_mask[i] = 1.0f;
    }
}

static void free_batch(gllm_batch *b)
{
    free(b->ids);
    free(b->targets);
    free(b->pos);
    free(b->loss_mask);
}

int main(void)
{
    test_seed();
    if (gllm_backend_cpu_create(0, &g_be) != GLLM_OK)
        return 1;
    char tmp[] = "/tmp/gllm_test_model_XXXXXX";
    if (!mkdtemp(tmp))
        return 1;

    TEST_CASE("loss falls over 50 AdamW steps on a fixed batch")
    {
        gllm_model *m = load("llama3");
        CHECK(m != NULL);
        gllm_batch b;
        random_batch(&b, 2, 16, gllm_model_cfg(m)->vocab_size);
        gllm_adamw_config h = {.lr = 3e-3f, .beta1 = 0.9f, .beta2 = 0.95f, .eps = 1e-8f,
                               .weight_decay = 0.1f, .max_grad_norm = 1.0f};
        float first = 0, last = 0;
        for (int step = 1; m && step <= 50; step++) {
            float loss = 0;
            CHECK_OK(gllm_model_zero_grad(m));
            CHECK_OK(gllm_model_forward_backward(m, &b, 0.0f, &loss));
            CHECK_OK(gllm_model_adamw_step(m, &h, step, NULL));
            if (step == 1)
                first = loss;
            last = loss;
        }
        printf("loss %.4f -> %.4f over 50 steps\n", first, last);
        CHECK(last < 0.5f * first);
        free_batch(&b);
        gllm_model_free(m);
    }
    TEST_CASE("forward and backward are bitwise repeatable")
    {
        gllm_model *m = load("mistral");
        gllm_batch b;
        random_batch(&b, 3, 16, gllm_model_cfg(m)->vocab_size);
        const size_t n = gllm_model_numel(m);
        float *g[2] = {malloc(n * 4), malloc(n * 4)}, loss[2];
        for (int run = 0; run < 2; run++) {
            CHECK_OK(gllm_model_zero_grad(m));
            CHECK_OK(gllm_model_forward_backward(m, &b, 0.0f, &loss[run]));
            for (int i = 0; i < gllm_model_n_params(m); i++) {
                const gllm_param_info *p = gllm_model_param(m, i);
                CHECK_OK(gllm_model_read_grad(m, p, g[run] + p->offset));
            }
        }
        CHECK(memcmp(&loss[0], &loss[1], sizeof(float)) == 0);
        CHECK(memcmp(g[0], g[1], n * 4) == 0);
        free(g[0]);
        free(g[1]);
        free_batch(&b);
        gllm_model_free(m);
    }
    TEST_CASE("a document's loss and gradients are the same packed or alone")
    {
        gllm_model *m = load("qwen2");
        CHECK(m != NULL);
        const int V = m ? gllm_model_cfg(m)->vocab_size : 2;
        /* row: doc A (5 tokens) | doc B (7) | doc C (4); loss only on B */
        gllm_batch packed;
        random_batch(&packed, 1, 16, V);
        const int starts[] = {0, 5, 12, 16};
        for (int d = 0; d < 3; d++)
            for (int i = starts[d]; i < starts[d + 1]; i++) {
                packed.pos[i] = i - starts[d];
                packed.loss_mask[i] = d == 1 ? 1.0f : 0.0f;
            }
        gllm_batch alone = {.B = 1, .T = 7, .ids = packed.ids + 5, .targets = packed.targets + 5,
                            .pos = packed.pos + 5, .loss_mask = packed.loss_mask + 5};
        float lp = 0, la = 0;
        const size_t n = m ? gllm_model_numel(m) : 1;
        float *gp = malloc(n * sizeof(float)), *ga = malloc(n * sizeof(float));
        for (int pass = 0; m && pass < 2; pass++) {
            float *g = pass ? ga : gp;
            CHECK_OK(gllm_model_zero_grad(m));
            CHECK_OK(gllm_model_forward_backward(m, pass ? &alone : &packed, 0.0f,
                                                 pass ? &la : &lp));
            for (int i = 0; i < gllm_model_n_params(m); i++) {
                const gllm_param_info *p = gllm_model_param(m, i);
                CHECK_OK(gllm_model_read_grad(m, p, g + p->offset));
            }
        }
        printf("doc loss packed %.7f alone %.7f; grad rel diff %.2e\n", lp, la, rel_err(gp, ga, n));
        CHECK(fabsf(lp - la) <= 1e-5f * fabsf(la));
        CHECK(rel_err(gp, ga, n) < 1e-5);
        free(gp);
        free(ga);
        free_batch(&packed);
        gllm_model_free(m);
    }
    TEST_CASE("save and reload: identical weights, and transformers loads them")
    {
        char cmd[8192];
        int len = snprintf(cmd, sizeof cmd, "python3 %s/scripts/check_hf_load.py", GLLM_SOURCE_DIR);
        for (int a = 0; a < N_FIXTURE_ARCHS; a++) {
            gllm_model *m = load(k_fixture_archs[a]), *m2 = NULL;
            char out[1200], ref[1024];
            snprintf(out, sizeof out, "%s/%s", tmp, k_fixture_archs[a]);
            CHECK_OK(gllm_model_save(m, out));
            CHECK_OK(gllm_model_load(out, g_be, &m2));
            for (int i = 0; m2 && i < gllm_model_n_params(m); i++) {
                const gllm_param_info *p = gllm_model_param(m, i);
                float *x = malloc(p->numel * 4), *y = malloc(p->numel * 4);
                CHECK_OK(gllm_model_read_param(m, p, x));
                CHECK_OK(gllm_model_read_param(m2, gllm_model_param(m2, i), y));
                CHECK_MSG(memcmp(x, y, p->numel * 4) == 0, "%s differs", p->name);
                free(x);
                free(y);
            }
            fixture_dir(k_fixture_archs[a], ref, sizeof ref);
            len += snprintf(cmd + len, sizeof cmd - (size_t)len, " %s %s", out, ref);
            gllm_model_free(m);
            gllm_model_free(m2);
        }
        snprintf(cmd + len, sizeof cmd - (size_t)len, " > %s/hf.log 2>&1", tmp);
        int rc = system(cmd);
        rc = WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
        if (rc == 77)
            printf("transformers not installed: HF load-back check skipped\n");
        else
            CHECK_MSG(rc == 0, "transformers load-back failed (rc %d; see %s/hf.log)", rc, tmp);
    }
    TEST_CASE("bad configs are refused with the file and the key")
    {
        char dir[1200], path[1300];
        snprintf(dir, sizeof dir, "%s/cfg", tmp);
        mkdir(dir, 0755);
        snprintf(path, sizeof path, "%s/config.json", dir);
        gllm_model_config c;
        write_text(path, "{\"architectures\": [\"BertModel\"]}");
        CHECK_ERR(gllm_model_config_load(dir, &c), GLLM_ERR_UNSUPPORTED, "LlamaForCausalLM");
        write_text(path, "{\"architectures\": [\"LlamaForCausalLM\"], \"hidden_size\": 64}");
        CHECK_ERR(gllm_model_config_load(dir, &c), GLLM_ERR_FORMAT, "intermediate_size");
        write_text(path, "{\"architectures\": [\"LlamaForCausalLM\"], \"hidden_size\": 64, "
                         "\"intermediate_size\": 128, \"num_hidden_layers\": 2, "
                         "\"num_attention_heads\": 4, \"rope_scaling\": {\"rope_type\": \"yarn\"}}");
        CHECK_ERR(gllm_model_config_load(dir, &c), GLLM_ERR_UNSUPPORTED, "yarn");
        write_text(path, "{\"architectures\": [\"LlamaForCausalLM\"], \"hidden_size\": 64, "
                         "\"intermediate_size\": 128, \"num_hidden_layers\": 2, "
                         "\"num_attention_heads\": 4, \"num_key_value_heads\": 3}");
        CHECK_ERR(gllm_model_config_load(dir, &c), GLLM_ERR_FORMAT, "num_key_value_heads");
        write_text(path, "{\"architectures\": [\"LlamaForCausalLM\"], \"hidden_size\": \"64\"}");
        CHECK_ERR(gllm_model_config_load(dir, &c), GLLM_ERR_FORMAT, "hidden_size");
        write_text(path, "{\"architectures\": [\"LlamaForCausalLM\"], ");
        CHECK_ERR(gllm_model_config_load(dir, &c), GLLM_ERR_FORMAT, "config.json");
        write_text(path, "{\"architectures\": [\"GPT2LMHeadModel\"], \"activation_function\": "
                         "\"relu\"}");
        CHECK_ERR(gllm_model_config_load(dir, &c), GLLM_ERR_UNSUPPORTED, "relu");
    }
    TEST_CASE("a missing tensor is refused naming the tensor")
    {
        gllm_model *m = load("llama2");
        char out[1200], st_path[1300];
        snprintf(out, sizeof out, "%s/missing", tmp);
        CHECK_OK(gllm_model_save(m, out));
        /* rewrite the weights without one tensor */
        snprintf(st_path, sizeof st_path, "%s/model.safetensors", out);
        gllm_safetensors *st = NULL;
        CHECK_OK(gllm_st_open(st_path, &st));
        const int n = st ? gllm_st_count(st) : 0;
        gllm_st_entry *e = calloc((size_t)n + 1, sizeof *e);
        void **copies = calloc((size_t)n + 1, sizeof *copies);
        int k = 0;
        for (int i = 0; i < n; i++) {
            const gllm_st_tensor *t = gllm_st_at(st, i);
            if (strcmp(t->name, "model.layers.1.mlp.up_proj.weight") == 0)
                continue;
            copies[k] = malloc(t->nbytes);
            memcpy(copies[k], t->data, t->nbytes);
            e[k] = (gllm_st_entry){.name = strdup(t->name), .dtype = t->dtype, .ndim = t->ndim,
                                   .data = copies[k]};
            memcpy(e[k].shape, t->shape, sizeof t->shape);
            k++;
        }
        gllm_st_close(st);
        CHECK(k == n - 1);
        CHECK_OK(gllm_st_write(st_path, e, k, NULL));
        for (int i = 0; i < k; i++) {
            free((void *)e[i].name);
            free(copies[i]);
        }
        free(e);
        free(copies);
        gllm_model *m2 = NULL;
        CHECK_ERR(gllm_model_load(out, g_be, &m2), GLLM_ERR_NOT_FOUND,
                  "model.layers.1.mlp.up_proj.weight");
        CHECK(m2 == NULL);
        gllm_model_free(m);
    }
    TEST_CASE("bad batches are refused")
    {
        gllm_model *m = load("gpt2");
        gllm_batch b;
        const int V = gllm_model_cfg(m)->vocab_size;
        random_batch(&b, 1, 8, V);
        float loss;
        b.ids[3] = V;
        CHECK_ERR(gllm_model_forward_backward(m, &b, 0, &loss), GLLM_ERR_INVALID, "token 3");
        b.ids[3] = 0;
        b.pos[5] = 6;
        CHECK_ERR(gllm_model_forward_backward(m, &b, 0, &loss), GLLM_ERR_INVALID, "position");
        free_batch(&b);
        gllm_model_free(m);
    }
    char cmd[200];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmp);
    if (system(cmd) != 0)
        printf("could not remove %s\n", tmp);
    g_be->destroy(g_be);
    return test_summary();
}
