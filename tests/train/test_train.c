/* The data pipeline feeding the model, and the training loop end to end, on
 * the real stories260K model and tokenizer from ../shared:
 *  - a document's loss is the same packed with others or alone (packing keeps
 *    documents from seeing each other), for every document of a small set;
 *  - gtrain's loop runs from a JSON config, writes metrics.jsonl, summary.json
 *    and an HF checkpoint that loads back, and its loss falls;
 *  - bad run configs are refused naming the file and key. */
#include <unistd.h>

#include "gllm/data.h"
#include "gllm/model.h"
#include "gllm/tok.h"
#include "gllm/train.h"
#include "test_util.h"

static void write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    fputs(text, f);
    fclose(f);
}

static int count_lines(const char *path, const char *needle)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    char line[4096];
    int n = 0;
    while (fgets(line, sizeof line, f))
        n += strstr(line, needle) != NULL;
    fclose(f);
    return n;
}

static int stop_after(const gllm_train_progress *p, void *user)
{
    return p->step >= *(const int *)user;
}

static const char *k_docs[] = {
    "Once upon a time, there was a little girl named Lily.",
    "The cat sat on the mat and looked at the big red ball.",
    "Tom and Sue went to the park. They played all day.",
    "One day, a bird flew into the garden and sang a song.",
    "Ben had a toy car. He liked to drive it on the floor.",
    "The sun was hot, so the children went to swim in the lake.",
};
#define N_DOCS (int)(sizeof k_docs / sizeof k_docs[0])

int main(void)
{
    char model_dir[1024];
    test_shared_path("assets/models/stories260K-hf", model_dir, sizeof model_dir);
    char tmp[] = "/tmp/gllm_test_train_XXXXXX";
    if (!mkdtemp(tmp))
        return 1;
    char data[1200];
    snprintf(data, sizeof data, "%s/docs.jsonl", tmp);
    FILE *f = fopen(data, "w");
    for (int i = 0; i < N_DOCS; i++)
        fprintf(f, "{\"text\": \"%s\"}\n", k_docs[i]);
    fclose(f);

    gllm_backend *be = NULL;
    gllm_model *m = NULL;
    gllm_tokenizer *tok = NULL;
    gllm_dataset *ds = NULL;
    if (gllm_backend_cpu_create(0, &be) != GLLM_OK || gllm_model_load(model_dir, be, &m) != GLLM_OK ||
        gllm_tok_load(model_dir, &tok) != GLLM_OK) {
        printf("setup: %s\n", gllm_last_error());
        return 1;
    }
    TEST_CASE("a document's loss is the same packed or alone")
    {
        gllm_data_options o = gllm_data_default_options();
        o.max_len = 64;
        gllm_data_encoder enc = gllm_data_encoder_tok(tok);
        CHECK_OK(gllm_data_load(data, &enc, &o, &ds));
        gllm_data_loader *packed = NULL, *alone = NULL;
        const int T = 64, B = 2;
        CHECK_OK(gllm_data_loader_new(ds, 0, B, T, true, 0, 0, 1, &packed));
        CHECK_OK(gllm_data_loader_new(ds, 0, 1, T, false, 0, 0, 1, &alone));
        gllm_batch pb = {.B = B, .T = T}, ab = {.B = 1, .T = T};
        pb.ids = malloc(B * T * 4), pb.targets = malloc(B * T * 4), pb.pos = malloc(B * T * 4);
        pb.loss_mask = malloc(B * T * 4);
        ab.ids = malloc(T * 4), ab.targets = malloc(T * 4), ab.pos = malloc(T * 4);
        ab.loss_mask = malloc(T * 4);
        int32_t doc_of[128], doc_alone[64];
        float *mask = malloc(B * T * 4);
        double packed_loss[N_DOCS] = {0}, alone_loss[N_DOCS] = {0};
        int several = 0;
        for (size_t i = 0; packed && i < gllm_data_loader_n_batches(packed); i++) {
            CHECK_OK(gllm_data_loader_batch(packed, i, &pb, doc_of));
            memcpy(mask, pb.loss_mask, B * T * 4);
            int docs_in_row0 = 0;
            for (int t = 1; t < T; t++)
                docs_in_row0 += doc_of[t] >= 0 && doc_of[t] != doc_of[t - 1];
            several |= docs_in_row0 > 0;
            for (int d = 0; d < N_DOCS; d++) { /* one document's tokens at a time */
                double n = 0;
                for (int t = 0; t < B * T; t++) {
                    pb.loss_mask[t] = doc_of[t] == d ? mask[t] : 0.0f;
                    n += pb.loss_mask[t];
                }
                float loss;
                if (n == 0)
                    continue;
                CHECK_OK(gllm_model_forward(m, &pb, &loss, NULL));
                packed_loss[d] = loss;
            }
        }
        CHECK(several); /* rows really hold more than one document */
        for (size_t i = 0; alone && i < gllm_data_loader_n_batches(alone); i++) {
            CHECK_OK(gllm_data_loader_batch(alone, i, &ab, doc_alone));
            float loss;
            CHECK_OK(gllm_model_forward(m, &ab, &loss, NULL));
            alone_loss[doc_alone[0]] = loss;
        }
        for (int d = 0; d < N_DOCS; d++) {
            CHECK_MSG(alone_loss[d] > 0, "document %d was not seen alone", d);
            CHECK_MSG(fabs(packed_loss[d] - alone_loss[d]) <= 1e-5 * alone_loss[d],
                      "document %d: packed %.7f alone %.7f", d, packed_loss[d], alone_loss[d]);
        }
        printf("document 0: packed %.6f alone %.6f\n", packed_loss[0], alone_loss[0]);
        free(pb.ids), free(pb.targets), free(pb.pos), free(pb.loss_mask);
        free(ab.ids), free(ab.targets), free(ab.pos), free(ab.loss_mask);
        free(mask);
        gllm_data_loader_free(packed);
        gllm_data_loader_free(alone);
    }
    TEST_CASE("the training loop runs from a config and its checkpoint loads back")
    {
        char cfg_path[1200], cfg[8192], run[1200], metrics[1300], summary[1300], final[1300];
        snprintf(cfg_path, sizeof cfg_path, "%s/run.json", tmp);
        snprintf(run, sizeof run, "%s/run", tmp);
        snprintf(cfg, sizeof cfg,
                 "{\"model\": \"%s\", \"data\": \"docs.jsonl\", \"out_dir\": \"run\", "
                 "\"backend\": \"cpu\", \"seq_len\": 64, \"batch_size\": 2, \"grad_accum\": 2, "
                 "\"max_steps\": 12, \"lr\": 3e-3, \"warmup_steps\": 2, \"weight_decay\": 0.1, "
                 "\"val_fraction\": 0.2, \"eval_every\": 6, \"seed\": 7}",
                 model_dir);
        write_text(cfg_path, cfg);
        gllm_train_config c;
        gllm_train_summary s;
        CHECK_OK(gllm_train_config_load(cfg_path, &c));
        CHECK(strcmp(c.out_dir, run) == 0);
        CHECK_OK(gllm_train_run(&c, NULL, NULL, NULL, &s));
        printf("train: %d steps, loss %.4f -> %.4f, val %.4f\n", s.steps, s.first_loss,
               s.final_loss, s.final_val_loss);
        CHECK(s.steps == 12);
        CHECK(s.final_loss < s.first_loss);
        snprintf(metrics, sizeof metrics, "%s/metrics.jsonl", run);
        snprintf(summary, sizeof summary, "%s/summary.json", run);
        snprintf(final, sizeof final, "%s/final", run);
        CHECK(count_lines(metrics, "\"step\":") == 12 + 2);
        CHECK(count_lines(metrics, "\"event\":\"eval\"") == 2);
        CHECK(count_lines(metrics, "\"event\":\"data\"") == 1);
        CHECK(count_lines(summary, "\"steps\":12") == 1);
        gllm_model *m2 = NULL;
        gllm_tokenizer *t2 = NULL;
        CHECK_OK(gllm_model_load(final, be, &m2));
        CHECK_OK(gllm_tok_load(final, &t2));
        gllm_model_free(m2);
        gllm_tok_free(t2);
    }
    TEST_CASE("val_data: a separate validation file gives the run and the loss of the val_fraction split")
    {
        /* the documents val_fraction 0.2 (seed 7) held out above go to val.jsonl, the rest to
         * train.jsonl in file order: the same training (bit for bit), the same validation loss */
        gllm_data_options o = gllm_data_default_options();
        o.max_len = 64;
        o.overlong = GLLM_DATA_OVERLONG_TRUNCATE;
        o.val_fraction = 0.2;
        o.seed = 7;
        gllm_data_encoder enc = gllm_data_encoder_tok(tok);
        gllm_dataset *sd = NULL;
        CHECK_OK(gllm_data_load(data, &enc, &o, &sd));
        char tp[1200], vp[1200], cfg_path[1200], cfg[8192];
        snprintf(tp, sizeof tp, "%s/train.jsonl", tmp);
        snprintf(vp, sizeof vp, "%s/val.jsonl", tmp);
        FILE *ft = fopen(tp, "w"), *fv = fopen(vp, "w");
        int n_val = 0;
        for (size_t i = 0; sd && i < gllm_data_n_docs(sd); i++) {
            int split;
            size_t line;
            gllm_data_doc(sd, i, NULL, NULL, NULL, &split, &line);
            fprintf(split ? fv : ft, "{\"text\": \"%s\"}\n", k_docs[line - 1]);
            n_val += split;
        }
        fclose(ft);
        fclose(fv);
        gllm_data_free(sd);
        CHECK(n_val >= 1 && n_val < N_DOCS);
        snprintf(cfg_path, sizeof cfg_path, "%s/split.json", tmp);
        snprintf(cfg, sizeof cfg,
                 "{\"model\": \"%s\", \"data\": \"train.jsonl\", \"val_data\": \"val.jsonl\", "
                 "\"out_dir\": \"split\", \"backend\": \"cpu\", \"seq_len\": 64, \"batch_size\": 2, "
                 "\"grad_accum\": 2, \"max_steps\": 12, \"lr\": 3e-3, \"warmup_steps\": 2, "
                 "\"weight_decay\": 0.1, \"eval_every\": 6, \"seed\": 7}",
                 model_dir);
        write_text(cfg_path, cfg);
        gllm_train_config c;
        gllm_train_summary s_split, s_frac;
        CHECK_OK(gllm_train_config_load(cfg_path, &c));
        CHECK_OK(gllm_train_run(&c, NULL, NULL, NULL, &s_split));
        snprintf(cfg_path, sizeof cfg_path, "%s/run.json", tmp);
        CHECK_OK(gllm_train_config_load(cfg_path, &c));
        c.overwrite = true;
        CHECK_OK(gllm_train_run(&c, NULL, NULL, NULL, &s_frac));
        char a[1300], b[1300];
        snprintf(a, sizeof a, "%s/split/final/model.safetensors", tmp);
        snprintf(b, sizeof b, "%s/run/final/model.safetensors", tmp);
        CHECK_MSG(test_files_equal(a, b), "training on train.jsonl differs from training on the val_fraction split");
        printf("val_data: val loss %.7f, val_fraction split %.7f (%d of %d documents)\n",
               s_split.final_val_loss, s_frac.final_val_loss, n_val, N_DOCS);
        CHECK(isfinite(s_split.final_val_loss));
        CHECK(fabs(s_split.final_val_loss - s_frac.final_val_loss) <= 1e-5 * fabs(s_frac.final_val_loss));
        snprintf(a, sizeof a, "%s/split/metrics.jsonl", tmp);
        CHECK(count_lines(a, "\"event\":\"eval\"") == 2);
        /* both at once is refused */
        snprintf(cfg_path, sizeof cfg_path, "%s/both.json", tmp);
        snprintf(cfg, sizeof cfg,
                 "{\"model\": \"%s\", \"data\": \"train.jsonl\", \"val_data\": \"val.jsonl\", "
                 "\"val_fraction\": 0.1, \"out_dir\": \"both\", \"max_steps\": 1}", model_dir);
        write_text(cfg_path, cfg);
        CHECK_ERR(gllm_train_config_load(cfg_path, &c), GLLM_ERR_INVALID, "val_data and val_fraction");
    }
    TEST_CASE("an interrupted run resumes from its checkpoint bit for bit")
    {
        char cfg_path[1200], cfg[8192];
        const char *runs[2] = {"straight", "broken"};
        for (int k = 0; k < 2; k++) {
            snprintf(cfg_path, sizeof cfg_path, "%s/%s.json", tmp, runs[k]);
            snprintf(cfg, sizeof cfg,
                     "{\"model\": \"%s\", \"data\": \"docs.jsonl\", \"out_dir\": \"%s\", "
                     "\"backend\": \"cpu\", \"seq_len\": 64, \"batch_size\": 2, \"max_steps\": 7, "
                     "\"lr\": 3e-3, \"warmup_steps\": 2, \"weight_decay\": 0.1, \"seed\": 5, "
                     "\"save_every\": 2, \"keep_checkpoints\": 2}",
                     model_dir, runs[k]);
            write_text(cfg_path, cfg);
        }
        gllm_train_config c;
        gllm_train_summary s;
        snprintf(cfg_path, sizeof cfg_path, "%s/straight.json", tmp);
        CHECK_OK(gllm_train_config_load(cfg_path, &c));
        CHECK_OK(gllm_train_run(&c, NULL, NULL, NULL, &s));
        /* the broken run stops after step 5; checkpoint-4 is the last one */
        snprintf(cfg_path, sizeof cfg_path, "%s/broken.json", tmp);
        CHECK_OK(gllm_train_config_load(cfg_path, &c));
        int stop_at = 5;
        CHECK_ERR(gllm_train_run(&c, NULL, stop_after, &stop_at, &s), GLLM_ERR_INVALID,
                  "interrupted at step 5");
        c.resume = true;
        CHECK_OK(gllm_train_run(&c, NULL, NULL, NULL, &s));
        CHECK(s.steps == 7);
        char a[1300], b[1300];
        snprintf(a, sizeof a, "%s/straight/final/model.safetensors", tmp);
        snprintf(b, sizeof b, "%s/broken/final/model.safetensors", tmp);
        CHECK_MSG(test_files_equal(a, b), "resumed weights differ from the uninterrupted run's");
        snprintf(a, sizeof a, "%s/broken/metrics.jsonl", tmp);
        for (int step = 1; step <= 7; step++) {
            char needle[64];
            snprintf(needle, sizeof needle, "{\"step\":%d,", step);
            CHECK_MSG(count_lines(a, needle) == 1, "step %d logged %d times", step,
                      count_lines(a, needle));
        }
        CHECK(count_lines(a, "\"event\":\"resume\"") == 1);
        /* keep_checkpoints 2: checkpoint-2 was removed, 4 and 6 remain */
        struct stat st;
        snprintf(a, sizeof a, "%s/broken/checkpoint-2", tmp);
        CHECK(stat(a, &st) != 0);
        snprintf(a, sizeof a, "%s/broken/checkpoint-6/optimizer-rank0.safetensors", tmp);
        CHECK(stat(a, &st) == 0);
        snprintf(a, sizeof a, "%s/broken/latest", tmp);
        CHECK(count_lines(a, "checkpoint-6") == 1);
    }
    TEST_CASE("bad run configs are refused naming the key")
    {
        char cfg_path[1200];
        snprintf(cfg_path, sizeof cfg_path, "%s/bad.json", tmp);
        gllm_train_config c;
        write_text(cfg_path, "{\"model\": \"m\", \"data\": \"d\", \"out_dir\": \"o\", \"lr\": \"high\"}");
        CHECK_ERR(gllm_train_config_load(cfg_path, &c), GLLM_ERR_FORMAT, "\"lr\"");
        write_text(cfg_path, "{\"model\": \"m\", \"data\": \"d\", \"out_dir\": \"o\", \"learning_rate\": 1}");
        CHECK_ERR(gllm_train_config_load(cfg_path, &c), GLLM_ERR_FORMAT, "learning_rate");
        write_text(cfg_path, "{\"model\": \"m\", \"out_dir\": \"o\"}");
        CHECK_ERR(gllm_train_config_load(cfg_path, &c), GLLM_ERR_FORMAT, "\"data\"");
        write_text(cfg_path, "{\"model\": \"m\", \"data\": \"d\", \"out_dir\": \"o\", \"seq_len\": 1}");
        CHECK_ERR(gllm_train_config_load(cfg_path, &c), GLLM_ERR_INVALID, "seq_len");
        write_text(cfg_path, "{\"model\": ");
        CHECK_ERR(gllm_train_config_load(cfg_path, &c), GLLM_ERR_FORMAT, "bad.json");
    }
    gllm_data_free(ds);
    gllm_tok_free(tok);
    gllm_model_free(m);
    be->destroy(be);
    char cmd[200];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmp);
    if (system(cmd) != 0)
        printf("could not remove %s\n", tmp);
    return test_summary();
}
