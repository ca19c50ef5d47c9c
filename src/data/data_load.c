/* JSONL (or JSON array) records -> tokenized documents with loss labels.
 * Lines come from the streaming JSONL reader in chunks of CHUNK records; each
 * chunk is tokenized in an OpenMP loop (every record keeps its own result and
 * error text) and merged in file order, so the first bad record reported is
 * the first in the file whatever the thread count, and memory holds one
 * chunk of records beside the tokens kept. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/file.h"
#include "data/data_internal.h"
#include "gllm/json.h"
#include "gllm/jsonl.h"
#include "gllm/rng.h"

#define REASON_MAX 400
#define CHUNK 4096

typedef struct record {
    cJSON *item;   /* the parsed record, or NULL when the line was bad */
    bool owned;    /* item is freed after its chunk (JSONL), not (array element) */
    size_t line;   /* line, or element number in a JSON array, 1-based */
    char err[REASON_MAX]; /* the reader's reason when item is NULL */
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

/* The record formats, by their defining field; a record uses exactly one. */
static const char *const k_format_keys[] = {"messages", "prompt", "instruction", "text"};

static bool process(const record *r, const gllm_data_encoder *enc, const gllm_data_options *opt, doc_out *d)
{
    const cJSON *o = r->item;
    if (!o)
        return bad(d, "%s", r->err);
    const char *dup = gllm_json_duplicate_key(o);
    if (dup)
        return bad(d, "duplicate key \"%s\"", dup);
    const char *first = NULL;
    for (size_t k = 0; k < sizeof k_format_keys / sizeof *k_format_keys; k++) {
        if (!has(o, k_format_keys[k]))
            continue;
        if (first) {
            char what[64];
            snprintf(what, sizeof what, "\"%s\" and \"%s\"", first, k_format_keys[k]);
            return bad(d, "record has both %s: one format per record", what);
        }
        first = k_format_keys[k];
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

static void assign_split(gllm_dataset *ds, const gllm_data_options *opt)
{
    ds->stats.n_train = ds->stats.n_val = 0;
    for (size_t i = 0; i < ds->n_docs; i++) {
        /* one draw per record line: the split of a line does not depend on the others */
        uint64_t state = opt->seed * 0x100000001b3ull ^ ds->line[i];
        double u = gllm_rng_uniform(&state);
        ds->split[i] = u < opt->val_fraction;
        if (ds->split[i])
            ds->stats.n_val++;
        else
            ds->stats.n_train++;
    }
}

/* Growable arrays of the dataset while it is being read. */
static bool grow(void **p, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap)
        return true;
    size_t c = *cap ? *cap : 1024;
    while (c < need)
        c *= 2;
    void *np = realloc(*p, c * elem);
    if (!np)
        return false;
    *p = np;
    *cap = c;
    return true;
}

typedef struct reader {
    gllm_jsonl *jsonl; /* JSONL file, or */
    cJSON *array;      /* a file that is one JSON array of records */
    const cJSON *next_item;
    size_t n_items;
} reader;

/* Whether the file's first non-blank line starts (after a UTF-8 byte-order
 * mark) with '[': the file is then one JSON array. */
static gllm_status starts_with_bracket(const char *path, bool *yes)
{
    *yes = false;
    gllm_jsonl *r;
    GLLM_TRY(gllm_jsonl_open(path, &r));
    for (;;) {
        const char *s;
        size_t n;
        long ln;
        gllm_status st = gllm_jsonl_next_line(r, &s, &n, &ln, NULL);
        if (st == GLLM_ERR_FORMAT) /* an over-long first line: JSONL's errors will name it */
            break;
        if (st != GLLM_OK) {
            gllm_jsonl_close(r);
            return st;
        }
        if (!s)
            break;
        size_t b = ln == 1 && n >= 3 && !memcmp(s, "\xef\xbb\xbf", 3) ? 3 : 0;
        while (b < n && (s[b] == ' ' || s[b] == '\t' || s[b] == '\r'))
            b++;
        if (b < n) {
            *yes = s[b] == '[';
            break;
        }
    }
    gllm_jsonl_close(r);
    return GLLM_OK;
}

static gllm_status reader_open(const char *path, reader *rd)
{
    memset(rd, 0, sizeof *rd);
    bool array;
    GLLM_TRY(starts_with_bracket(path, &array));
    if (!array)
        return gllm_jsonl_open(path, &rd->jsonl);
    size_t size = 0;
    char *text;
    GLLM_TRY(gllm_read_file(path, &text, &size));
    size_t b = size >= 3 && !memcmp(text, "\xef\xbb\xbf", 3) ? 3 : 0;
    if (gllm_utf8_invalid_at(text + b, size - b) < size - b || memchr(text + b, '\0', size - b)) {
        size_t at = gllm_utf8_invalid_at(text + b, size - b);
        const char *nul = memchr(text + b, '\0', size - b);
        size_t off = nul && (size_t)(nul - text) < at + b ? (size_t)(nul - text) : at + b;
        long line = 1;
        for (size_t i = 0; i < off; i++)
            line += text[i] == '\n';
        free(text);
        return gllm_fail(GLLM_ERR_FORMAT, "%s:%ld: %s in a JSON array file", path, line,
                         nul && nul - text == (long)off ? "NUL byte" : "invalid UTF-8");
    }
    const char *end = NULL;
    /* the length counts the terminating NUL: cJSON then accepts trailing whitespace */
    rd->array = cJSON_ParseWithLengthOpts(text + b, size - b + 1, &end, true);
    long line = 1;
    for (const char *p = text; end && p < end && p < text + size; p++)
        line += *p == '\n';
    free(text);
    if (!cJSON_IsArray(rd->array)) {
        cJSON_Delete(rd->array);
        rd->array = NULL;
        return gllm_fail(GLLM_ERR_FORMAT, "%s:%ld: starts with '[' but is not a valid JSON array", path, line);
    }
    rd->next_item = rd->array->child;
    return GLLM_OK;
}

/* The next record into *rec; *end at the end of the file. A line the reader
 * refuses becomes a record without an item (a bad record); I/O errors fail. */
static gllm_status reader_next(reader *rd, record *rec, bool *end)
{
    memset(rec, 0, sizeof *rec);
    *end = false;
    if (rd->array) {
        if (!rd->next_item) {
            *end = true;
            return GLLM_OK;
        }
        rec->item = (cJSON *)rd->next_item;
        rec->line = ++rd->n_items;
        rd->next_item = rd->next_item->next;
        return GLLM_OK;
    }
    long ln = 0;
    gllm_status st = gllm_jsonl_next(rd->jsonl, &rec->item, &ln);
    rec->line = (size_t)ln;
    if (st == GLLM_ERR_FORMAT) {
        /* the reader says "path:line: reason"; the merge adds path:line again */
        const char *msg = gllm_last_error();
        char prefix[64];
        int pn = snprintf(prefix, sizeof prefix, ":%ld: ", ln);
        const char *at = strstr(msg, prefix);
        snprintf(rec->err, sizeof rec->err, "%s", at ? at + pn : msg);
        return GLLM_OK;
    }
    if (st != GLLM_OK)
        return st;
    rec->owned = true;
    *end = rec->item == NULL;
    return GLLM_OK;
}

static void reader_close(reader *rd)
{
    gllm_jsonl_close(rd->jsonl);
    cJSON_Delete(rd->array);
}

typedef struct sizes {
    size_t tokens, labels, off, line; /* capacities of ds's arrays */
} sizes;

/* One record's outcome into the dataset and its counts, in file order. */
static gllm_status merge(gllm_dataset *ds, sizes *cap, const char *path, const char *unit, const record *r,
                         const doc_out *d, const gllm_data_options *opt)
{
    gllm_data_stats *s = &ds->stats;
    if (d->bad) {
        if (!s->first_bad[0])
            snprintf(s->first_bad, sizeof s->first_bad, "%s:%s%zu: %s", path, unit, r->line, d->reason);
        s->n_bad++;
        if (!opt->skip_bad)
            return gllm_fail(GLLM_ERR_FORMAT, "%s:%s%zu: %s", path, unit, r->line, d->reason);
        return GLLM_OK;
    }
    if (d->dropped) {
        s->n_dropped_long++;
        return GLLM_OK;
    }
    size_t nt = ds->n_tokens, nd = ds->n_docs;
    if (!grow((void **)&ds->tokens, &cap->tokens, nt + d->n, sizeof *ds->tokens) ||
        !grow((void **)&ds->labels, &cap->labels, nt + d->n, 1) ||
        !grow((void **)&ds->off, &cap->off, nd + 2, sizeof *ds->off) ||
        !grow((void **)&ds->line, &cap->line, nd + 1, sizeof *ds->line))
        return gllm_fail(GLLM_ERR_OOM, "%s: out of memory for %zu tokens", path, nt + d->n);
    s->n_truncated += d->truncated;
    ds->off[nd] = nt;
    ds->line[nd] = (uint32_t)r->line;
    memcpy(ds->tokens + nt, d->ids, d->n * sizeof *d->ids);
    memcpy(ds->labels + nt, d->label, d->n);
    ds->n_tokens = nt + d->n;
    ds->n_docs = nd + 1;
    return GLLM_OK;
}

static gllm_status tokenize_file(const char *path, const gllm_data_encoder *enc, const gllm_data_options *opt,
                                 gllm_dataset *ds)
{
    reader rd;
    GLLM_TRY(reader_open(path, &rd));
    const char *unit = rd.array ? "record " : "";
    record *recs = calloc(CHUNK, sizeof *recs);
    doc_out *outs = calloc(CHUNK, sizeof *outs);
    sizes sizes = {0};
    gllm_status st = recs && outs ? GLLM_OK : gllm_fail(GLLM_ERR_OOM, "%s: out of memory reading records", path);
    for (bool end = false; st == GLLM_OK && !end;) {
        size_t k = 0;
        while (k < CHUNK && st == GLLM_OK) {
            st = reader_next(&rd, &recs[k], &end);
            if (st != GLLM_OK || end)
                break;
            k++;
        }
#pragma omp parallel for schedule(dynamic, 8)
        for (size_t i = 0; i < k; i++)
            process(&recs[i], enc, opt, &outs[i]);
        for (size_t i = 0; i < k; i++) {
            doc_out *d = &outs[i];
            if (st == GLLM_OK)
                st = merge(ds, &sizes, path, unit, &recs[i], d, opt);
            free(d->ids);
            free(d->label);
            memset(d, 0, sizeof *d);
            if (recs[i].owned)
                cJSON_Delete(recs[i].item);
        }
        ds->stats.n_records += k;
    }
    size_t ndocs = ds->n_docs;
    if (st == GLLM_OK && (!grow((void **)&ds->off, &sizes.off, ndocs + 1, sizeof *ds->off) ||
                          !(ds->split = malloc(ndocs ? ndocs : 1)) ||
                          !grow((void **)&ds->tokens, &sizes.tokens, 1, sizeof *ds->tokens) ||
                          !grow((void **)&ds->labels, &sizes.labels, 1, 1) ||
                          !grow((void **)&ds->line, &sizes.line, 1, sizeof *ds->line)))
        st = gllm_fail(GLLM_ERR_OOM, "%s: out of memory for %zu documents", path, ndocs);
    if (st == GLLM_OK)
        ds->off[ndocs] = ds->n_tokens;
    free(outs);
    free(recs);
    reader_close(&rd);
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
    /* before the cache key hashes it: a folder or /dev/zero is refused at once */
    GLLM_TRY(gllm_require_regular_file(path));
    gllm_dataset *ds = calloc(1, sizeof *ds);
    if (!ds)
        return gllm_fail(GLLM_ERR_OOM, "dataset %s: out of memory", path);
    ds->pad_id = enc->pad_id;
    ds->seed = opt->seed;
    uint64_t key = 0;
    gllm_status st = gllm_hash_file(path, &ds->stats.file_hash);
    if (st == GLLM_OK && opt->cache_dir) {
        st = gllm_data_cache_key(path, ds->stats.file_hash, enc, opt, &key);
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
    ds->stats.n_no_target = 0;
    for (size_t i = 0; i < ds->n_docs; i++) {
        size_t targets = 0;
        for (size_t t = ds->off[i]; t < ds->off[i + 1]; t++)
            targets += ds->labels[t];
        ds->stats.n_loss_tokens += targets;
        ds->stats.n_no_target += targets == 0;
    }
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
