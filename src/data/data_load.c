/* JSONL (or JSON array) records -> tokenized documents with loss labels.
 * Records are parsed and tokenized in an OpenMP loop; each keeps its own
 * result and error text, and the merge runs in file order so that the first
 * bad record reported is the first in the file whatever the thread count. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/file.h"
#include "data/data_internal.h"

#define REASON_MAX 400

typedef struct record {
    const char *text; /* JSONL line, or NULL for an element of a JSON array */
    size_t len;
    const cJSON *item;
    size_t line;
} record;

typedef struct doc_out {
    int32_t *ids;
    uint8_t *label;
    size_t n;
    bool bad, truncated, dropped;
    char reason[REASON_MAX];
} doc_out;

static const char k_alpaca_input[] =
    "Below is an instruction that describes a task, paired with an input that provides further "
    "context. Write a response that appropriately completes the request.\n\n### Instruction:\n%s\n\n"
    "### Input:\n%s\n\n### Response:\n";
static const char k_alpaca_noinput[] =
    "Below is an instruction that describes a task. Write a response that appropriately completes "
    "the request.\n\n### Instruction:\n%s\n\n### Response:\n";

static bool bad(doc_out *d, const char *fmt, const char *a)
{
    snprintf(d->reason, sizeof d->reason, fmt, a);
    d->bad = true;
    return false;
}

static bool enc_fail(doc_out *d, const char *what)
{
    snprintf(d->reason, sizeof d->reason, "tokenizing %s: %s", what, gllm_last_error());
    d->bad = true;
    return false;
}

static size_t common_prefix(const int32_t *a, size_t na, const int32_t *b, size_t nb)
{
    size_t i = 0;
    while (i < na && i < nb && a[i] == b[i])
        i++;
    return i;
}

/* Append EOS unless absent or already last; grow ids/label by one. */
static bool append_eos(doc_out *d, const gllm_data_encoder *enc, uint8_t label)
{
    if (enc->eos_id < 0 || (d->n && d->ids[d->n - 1] == enc->eos_id))
        return true;
    int32_t *ids = realloc(d->ids, (d->n + 1) * sizeof *ids);
    if (!ids)
        return bad(d, "out of memory%s", "");
    d->ids = ids;
    uint8_t *lab = realloc(d->label, d->n + 1);
    if (!lab)
        return bad(d, "out of memory%s", "");
    d->label = lab;
    d->ids[d->n] = enc->eos_id;
    d->label[d->n++] = label;
    return true;
}

static bool tokenize_text(doc_out *d, const gllm_data_encoder *enc, const char *text)
{
    if (enc->encode(enc->ctx, text, strlen(text), true, &d->ids, &d->n) != GLLM_OK)
        return enc_fail(d, "\"text\"");
    if (!(d->label = malloc(d->n + 1)))
        return bad(d, "out of memory%s", "");
    memset(d->label, 1, d->n);
    if (d->n)
        d->label[0] = 0; /* the first token has no predecessor */
    return append_eos(d, enc, 1);
}

static bool tokenize_prompt_completion(doc_out *d, const gllm_data_encoder *enc, const char *prompt,
                                       const char *completion)
{
    int32_t *p = NULL;
    size_t np = 0, lp = strlen(prompt), lc = strlen(completion);
    char *full = malloc(lp + lc + 1);
    if (!full)
        return bad(d, "out of memory%s", "");
    memcpy(full, prompt, lp);
    memcpy(full + lp, completion, lc + 1);
    bool ok = enc->encode(enc->ctx, prompt, lp, true, &p, &np) == GLLM_OK;
    if (!ok)
        enc_fail(d, "the prompt");
    if (ok && enc->encode(enc->ctx, full, lp + lc, true, &d->ids, &d->n) != GLLM_OK)
        ok = enc_fail(d, "prompt + completion");
    free(full);
    if (ok) {
        size_t start = common_prefix(p, np, d->ids, d->n);
        if (!(d->label = malloc(d->n + 1)))
            ok = bad(d, "out of memory%s", "");
        else {
            for (size_t t = 0; t < d->n; t++)
                d->label[t] = t >= start && t > 0;
            ok = append_eos(d, enc, 1);
        }
    }
    free(p);
    return ok;
}

static bool render_encode(doc_out *d, const gllm_data_encoder *enc, const gllm_chat_template *chat,
                          const gllm_chat_message *m, size_t n, bool gen, int32_t **ids, size_t *nids)
{
    char *s = NULL;
    size_t len = 0;
    if (gllm_chat_render(chat, m, n, gen, &s, &len) != GLLM_OK) {
        snprintf(d->reason, sizeof d->reason, "chat template: %s", gllm_last_error());
        d->bad = true;
        return false;
    }
    gllm_status st = enc->encode(enc->ctx, s, len, false, ids, nids);
    free(s);
    if (st != GLLM_OK)
        return enc_fail(d, "the rendered conversation");
    return true;
}

static bool tokenize_messages(doc_out *d, const gllm_data_encoder *enc, const gllm_chat_template *chat,
                              const cJSON *msgs)
{
    if (!chat)
        return bad(d, "\"messages\" record but no chat template was given%s", "");
    size_t n = (size_t)cJSON_GetArraySize(msgs), n_asst = 0;
    if (n == 0)
        return bad(d, "empty \"messages\"%s", "");
    gllm_chat_message *m = malloc(n * sizeof *m);
    if (!m)
        return bad(d, "out of memory%s", "");
    size_t i = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, msgs) {
        const cJSON *role = cJSON_GetObjectItemCaseSensitive(it, "role");
        const cJSON *content = cJSON_GetObjectItemCaseSensitive(it, "content");
        if (!cJSON_IsString(role) || !cJSON_IsString(content)) {
            free(m);
            char what[48];
            snprintf(what, sizeof what, "%zu", i);
            return bad(d, "message %s lacks a string \"role\" or \"content\"", what);
        }
        m[i].role = role->valuestring;
        m[i].content = content->valuestring;
        if (!strcmp(m[i].role, "assistant")) {
            n_asst++;
            if (!m[i].content[0]) {
                free(m);
                return bad(d, "empty assistant \"content\"%s", "");
            }
        }
        i++;
    }
    if (!n_asst) {
        free(m);
        return bad(d, "no assistant message: nothing to train on%s", "");
    }
    bool ok = render_encode(d, enc, chat, m, n, false, &d->ids, &d->n);
    if (ok && !(d->label = calloc(d->n + 1, 1)))
        ok = bad(d, "out of memory%s", "");
    for (i = 0; ok && i < n; i++) {
        if (strcmp(m[i].role, "assistant"))
            continue;
        int32_t *a = NULL, *b = NULL;
        size_t na = 0, nb = 0;
        ok = render_encode(d, enc, chat, m, i, true, &a, &na) &&
             render_encode(d, enc, chat, m, i + 1, false, &b, &nb);
        if (ok) {
            size_t start = common_prefix(a, na, d->ids, d->n), end = common_prefix(b, nb, d->ids, d->n);
            if (start != na || end <= start) {
                char what[48];
                snprintf(what, sizeof what, "%zu", i);
                ok = bad(d, "chat template renders the conversation up to assistant message %s differently "
                            "from the whole conversation, so its tokens cannot be located; choose a "
                            "prefix-stable template (e.g. \"chat_template\": \"chatml\")", what);
            }
            for (size_t t = start; ok && t < end; t++)
                d->label[t] = t > 0;
        }
        free(a);
        free(b);
    }
    free(m);
    return ok;
}

static const char *str_field(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static bool has(const cJSON *o, const char *k) { return cJSON_GetObjectItemCaseSensitive(o, k) != NULL; }

static bool process(const record *r, const gllm_data_encoder *enc, const gllm_data_options *opt, doc_out *d)
{
    cJSON *parsed = NULL;
    const cJSON *o = r->item;
    if (!o) {
        o = parsed = cJSON_ParseWithLength(r->text, r->len);
        if (!o)
            return bad(d, "not valid JSON%s", "");
    }
    bool ok;
    if (!cJSON_IsObject(o)) {
        ok = bad(d, "not a JSON object%s", "");
    } else if (has(o, "messages")) {
        const cJSON *msgs = cJSON_GetObjectItemCaseSensitive(o, "messages");
        ok = cJSON_IsArray(msgs) ? tokenize_messages(d, enc, opt->chat, msgs)
                                 : bad(d, "\"messages\" is not a list%s", "");
    } else if (has(o, "prompt") || has(o, "completion")) {
        const char *p = str_field(o, "prompt"), *c = str_field(o, "completion");
        if (!p || !c)
            ok = bad(d, "missing or non-string \"%s\"", p ? "completion" : "prompt");
        else if (!c[0])
            ok = bad(d, "empty \"completion\"%s", "");
        else
            ok = tokenize_prompt_completion(d, enc, p, c);
    } else if (has(o, "instruction") || has(o, "output")) {
        const char *ins = str_field(o, "instruction"), *out = str_field(o, "output");
        const char *in = str_field(o, "input");
        if (!ins || !out) {
            ok = bad(d, "missing or non-string \"%s\"", ins ? "output" : "instruction");
        } else if (!out[0]) {
            ok = bad(d, "empty \"output\"%s", "");
        } else {
            bool with_input = in && in[0];
            size_t n = strlen(k_alpaca_input) + strlen(ins) + (with_input ? strlen(in) : 0) + 1;
            char *prompt = malloc(n);
            if (!prompt) {
                ok = bad(d, "out of memory%s", "");
            } else {
                if (with_input)
                    snprintf(prompt, n, k_alpaca_input, ins, in);
                else
                    snprintf(prompt, n, k_alpaca_noinput, ins);
                ok = tokenize_prompt_completion(d, enc, prompt, out);
                free(prompt);
            }
        }
    } else if (has(o, "text")) {
        const char *t = str_field(o, "text");
        ok = !t ? bad(d, "\"text\" is not a string%s", "") : !t[0] ? bad(d, "empty \"text\"%s", "")
                                                                   : tokenize_text(d, enc, t);
    } else {
        ok = bad(d, "missing fields: expected \"text\", \"prompt\"+\"completion\", \"messages\" or "
                    "\"instruction\"+\"output\"%s", "");
    }
    cJSON_Delete(parsed);
    if (ok && d->n > (size_t)opt->max_len) {
        if (opt->overlong == GLLM_DATA_OVERLONG_TRUNCATE) {
            d->n = (size_t)opt->max_len;
            d->truncated = true;
        } else if (opt->overlong == GLLM_DATA_OVERLONG_DROP) {
            d->dropped = true;
        } else {
            char what[96];
            snprintf(what, sizeof what, "%zu tokens exceed max_len %d", d->n, opt->max_len);
            ok = bad(d, "%s (set the overlong policy to truncate or drop)", what);
        }
    }
    return ok;
}

/* splitmix64: the validation split draws one number per record line. */
static uint64_t mix64(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

static void assign_split(gllm_dataset *ds, const gllm_data_options *opt)
{
    ds->stats.n_train = ds->stats.n_val = 0;
    for (size_t i = 0; i < ds->n_docs; i++) {
        double u = (double)(mix64(opt->seed * 0x100000001b3ull ^ ds->line[i]) >> 11) / 9007199254740992.0;
        ds->split[i] = u < opt->val_fraction;
        if (ds->split[i])
            ds->stats.n_val++;
        else
            ds->stats.n_train++;
    }
}

static gllm_status tokenize_file(const char *path, const gllm_data_encoder *enc, const gllm_data_options *opt,
                                 gllm_dataset *ds)
{
    size_t size = 0;
    char *text;
    GLLM_TRY(gllm_read_file(path, &text, &size));
    cJSON *array = NULL;
    record *recs = NULL;
    size_t nrec = 0;
    size_t first = 0;
    while (first < size && (text[first] == ' ' || text[first] == '\n' || text[first] == '\r' || text[first] == '\t'))
        first++;
    if (first < size && text[first] == '[') {
        array = cJSON_ParseWithLength(text, size);
        if (!cJSON_IsArray(array)) {
            cJSON_Delete(array);
            free(text);
            return gllm_fail(GLLM_ERR_FORMAT, "%s: starts with '[' but is not a valid JSON array", path);
        }
        size_t n = (size_t)cJSON_GetArraySize(array);
        recs = calloc(n ? n : 1, sizeof *recs);
        const cJSON *it;
        cJSON_ArrayForEach(it, array) {
            if (recs)
                recs[nrec] = (record){NULL, 0, it, nrec + 1};
            nrec++;
        }
    } else {
        size_t cap = 1024;
        recs = malloc(cap * sizeof *recs);
        size_t line = 0;
        for (size_t p = 0; recs && p < size;) {
            char *nl = memchr(text + p, '\n', size - p);
            size_t e = nl ? (size_t)(nl - text) : size;
            line++;
            size_t b = p, t = e;
            while (b < t && (text[b] == ' ' || text[b] == '\t' || text[b] == '\r'))
                b++;
            while (t > b && (text[t - 1] == ' ' || text[t - 1] == '\t' || text[t - 1] == '\r'))
                t--;
            if (t > b) {
                if (nrec == cap) {
                    record *nr = realloc(recs, (cap *= 2) * sizeof *recs);
                    if (!nr) {
                        free(recs);
                        recs = NULL;
                        break;
                    }
                    recs = nr;
                }
                recs[nrec++] = (record){text + b, t - b, NULL, line};
            }
            p = e + 1;
        }
    }
    doc_out *outs = recs ? calloc(nrec ? nrec : 1, sizeof *outs) : NULL;
    if (!outs) {
        free(recs);
        cJSON_Delete(array);
        free(text);
        return gllm_fail(GLLM_ERR_OOM, "%s: out of memory indexing records", path);
    }
#pragma omp parallel for schedule(dynamic, 8)
    for (size_t i = 0; i < nrec; i++)
        process(&recs[i], enc, opt, &outs[i]);

    gllm_status st = GLLM_OK;
    gllm_data_stats *s = &ds->stats;
    s->n_records = nrec;
    size_t ndocs = 0, ntok = 0;
    for (size_t i = 0; i < nrec && st == GLLM_OK; i++) {
        doc_out *d = &outs[i];
        if (d->bad) {
            if (!s->first_bad[0])
                snprintf(s->first_bad, sizeof s->first_bad, "%s:%s%zu: %s", path, array ? "record " : "",
                         recs[i].line, d->reason);
            if (!opt->skip_bad)
                st = gllm_fail(GLLM_ERR_FORMAT, "%s:%s%zu: %s", path, array ? "record " : "", recs[i].line,
                               d->reason);
            s->n_bad++;
        } else if (d->dropped) {
            s->n_dropped_long++;
        } else {
            s->n_truncated += d->truncated;
            ndocs++;
            ntok += d->n;
        }
    }
    if (st == GLLM_OK) {
        ds->tokens = malloc((ntok ? ntok : 1) * sizeof *ds->tokens);
        ds->labels = malloc(ntok ? ntok : 1);
        ds->off = malloc((ndocs + 1) * sizeof *ds->off);
        ds->line = malloc((ndocs ? ndocs : 1) * sizeof *ds->line);
        ds->split = malloc(ndocs ? ndocs : 1);
        if (!ds->tokens || !ds->labels || !ds->off || !ds->line || !ds->split)
            st = gllm_fail(GLLM_ERR_OOM, "%s: out of memory for %zu tokens", path, ntok);
    }
    if (st == GLLM_OK) {
        size_t k = 0, t = 0;
        for (size_t i = 0; i < nrec; i++) {
            doc_out *d = &outs[i];
            if (d->bad || d->dropped)
                continue;
            ds->off[k] = t;
            ds->line[k] = (uint32_t)recs[i].line;
            memcpy(ds->tokens + t, d->ids, d->n * sizeof *d->ids);
            memcpy(ds->labels + t, d->label, d->n);
            t += d->n;
            k++;
        }
        ds->off[k] = t;
        ds->n_docs = ndocs;
        ds->n_tokens = ntok;
    }
    for (size_t i = 0; i < nrec; i++) {
        free(outs[i].ids);
        free(outs[i].label);
    }
    free(outs);
    free(recs);
    cJSON_Delete(array);
    free(text);
    return st;
}

void gllm_data_free(gllm_dataset *ds)
{
    if (!ds)
        return;
    free(ds->tokens);
    free(ds->labels);
    free(ds->off);
    free(ds->line);
    free(ds->split);
    free(ds);
}

gllm_status gllm_data_load(const char *path, const gllm_data_encoder *enc, const gllm_data_options *opt,
                           gllm_dataset **out)
{
    *out = NULL;
    if (opt->max_len <= 0)
        return gllm_fail(GLLM_ERR_INVALID, "dataset %s: max_len must be positive, got %d", path, opt->max_len);
    if (opt->val_fraction < 0 || opt->val_fraction >= 1)
        return gllm_fail(GLLM_ERR_INVALID, "dataset %s: val_fraction must be in [0, 1), got %g", path,
                         opt->val_fraction);
    gllm_dataset *ds = calloc(1, sizeof *ds);
    if (!ds)
        return gllm_fail(GLLM_ERR_OOM, "dataset %s: out of memory", path);
    ds->pad_id = enc->pad_id;
    ds->seed = opt->seed;
    uint64_t key = 0;
    gllm_status st = GLLM_OK;
    if (opt->cache_dir) {
        st = gllm_data_cache_key(path, enc, opt, &key);
        if (st == GLLM_OK && gllm_data_cache_read(opt->cache_dir, key, ds) == GLLM_OK)
            ds->stats.cache_hit = true;
    }
    if (st == GLLM_OK && !ds->stats.cache_hit) {
        st = tokenize_file(path, enc, opt, ds);
        if (st == GLLM_OK && opt->cache_dir)
            st = gllm_data_cache_write(opt->cache_dir, key, ds);
    }
    if (st != GLLM_OK) {
        gllm_data_free(ds);
        return st;
    }
    ds->stats.n_docs = ds->n_docs;
    ds->stats.n_tokens = ds->n_tokens;
    ds->stats.n_loss_tokens = 0;
    for (size_t t = 0; t < ds->n_tokens; t++)
        ds->stats.n_loss_tokens += ds->labels[t];
    assign_split(ds, opt);
    *out = ds;
    return GLLM_OK;
}

const gllm_data_stats *gllm_data_stats_of(const gllm_dataset *ds) { return &ds->stats; }
size_t gllm_data_n_docs(const gllm_dataset *ds) { return ds->n_docs; }

void gllm_data_doc(const gllm_dataset *ds, size_t i, const int32_t **ids, const uint8_t **label, size_t *n,
                   int *split, size_t *line)
{
    if (ids)
        *ids = ds->tokens + ds->off[i];
    if (label)
        *label = ds->labels + ds->off[i];
    if (n)
        *n = ds->off[i + 1] - ds->off[i];
    if (split)
        *split = ds->split[i];
    if (line)
        *line = ds->line[i];
}
