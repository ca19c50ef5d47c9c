/* Epoch rows: shuffle by (seed, epoch), shard by rank, pack whole documents
 * into rows of T tokens (or one per row), and fill gllm_batch. */
#include <stdlib.h>
#include <string.h>

#include "data/data_internal.h"
#include "gllm/rng.h"

struct gllm_data_loader {
    const gllm_dataset *ds;
    int B, T;
    size_t n_rows, n_batches;
    size_t *row_begin; /* [n_rows + 1] into docs */
    size_t *docs;      /* document indices, row after row */
};

void gllm_data_loader_free(gllm_data_loader *l)
{
    if (!l)
        return;
    free(l->row_begin);
    free(l->docs);
    free(l);
}

size_t gllm_data_loader_n_batches(const gllm_data_loader *l) { return l->n_batches; }

static size_t doc_len(const gllm_dataset *ds, size_t d) { return ds->off[d + 1] - ds->off[d]; }

/* Rows of rank r from the split's ordered documents; rows==NULL only counts. */
static size_t pack(const gllm_dataset *ds, const size_t *order, size_t n, int T, bool packed, int r, int world,
                   size_t *row_begin, size_t *docs)
{
    size_t rows = 0, k = 0, fill = (size_t)T;
    for (size_t i = (size_t)r; i < n; i += (size_t)world) {
        size_t len = doc_len(ds, order[i]);
        if (!packed || fill + len > (size_t)T) {
            if (row_begin)
                row_begin[rows] = k;
            rows++;
            fill = 0;
        }
        fill += len;
        if (docs)
            docs[k] = order[i];
        k++;
    }
    if (row_begin)
        row_begin[rows] = k;
    return rows;
}

gllm_status gllm_data_loader_new(const gllm_dataset *ds, int split, int B, int T, bool packed, uint64_t epoch,
                                 int rank, int world, gllm_data_loader **out)
{
    *out = NULL;
    if (B <= 0 || T <= 0 || world <= 0 || rank < 0 || rank >= world || (split != 0 && split != 1))
        return gllm_fail(GLLM_ERR_INVALID, "data loader: bad B=%d T=%d split=%d rank=%d world=%d", B, T, split,
                         rank, world);
    size_t n = 0;
    for (size_t d = 0; d < ds->n_docs; d++) {
        if (ds->split[d] != split)
            continue;
        if (doc_len(ds, d) > (size_t)T)
            return gllm_fail(GLLM_ERR_INVALID,
                             "data loader: document of line %u has %zu tokens, more than the row length T=%d "
                             "(make T >= max_len)",
                             ds->line[d], doc_len(ds, d), T);
        n++;
    }
    size_t *order = malloc((n ? n : 1) * sizeof *order);
    gllm_data_loader *l = calloc(1, sizeof *l);
    if (!order || !l) {
        free(order);
        free(l);
        return gllm_fail(GLLM_ERR_OOM, "data loader: out of memory for %zu documents", n);
    }
    n = 0;
    for (size_t d = 0; d < ds->n_docs; d++)
        if (ds->split[d] == split)
            order[n++] = d;
    if (split == 0) {
        /* Fisher-Yates driven by (seed of the split, epoch): the same on every rank */
        uint64_t s = ds->seed * 0x9e3779b97f4a7c15ull ^ (epoch + 1) * 0xd1b54a32d192ed03ull;
        for (size_t i = n; i > 1; i--) {
            size_t j = (size_t)(gllm_splitmix64(&s) % i);
            size_t t = order[i - 1];
            order[i - 1] = order[j];
            order[j] = t;
        }
    }
    size_t max_rows = 0;
    for (int r = 0; r < world; r++) {
        size_t rows = pack(ds, order, n, T, packed, r, world, NULL, NULL);
        if (rows > max_rows)
            max_rows = rows;
    }
    size_t mine = n / (size_t)world + 1;
    l->ds = ds;
    l->B = B;
    l->T = T;
    l->row_begin = malloc((max_rows + 1) * sizeof *l->row_begin);
    l->docs = malloc(mine * sizeof *l->docs);
    if (!l->row_begin || !l->docs) {
        free(order);
        gllm_data_loader_free(l);
        return gllm_fail(GLLM_ERR_OOM, "data loader: out of memory for %zu rows", max_rows);
    }
    l->n_rows = pack(ds, order, n, T, packed, rank, world, l->row_begin, l->docs);
    l->n_batches = (max_rows + (size_t)B - 1) / (size_t)B;
    free(order);
    *out = l;
    return GLLM_OK;
}

gllm_status gllm_data_loader_batch(const gllm_data_loader *l, size_t i, gllm_batch *b, int32_t *doc_of)
{
    if (i >= l->n_batches || b->B != l->B || b->T != l->T)
        return gllm_fail(GLLM_ERR_INVALID, "data loader: batch %zu of %zu with B=%d T=%d (loader B=%d T=%d)", i,
                         l->n_batches, b->B, b->T, l->B, l->T);
    const gllm_dataset *ds = l->ds;
    for (int r = 0; r < l->B; r++) {
        size_t row = i * (size_t)l->B + (size_t)r, p = (size_t)r * (size_t)l->T, end = p + (size_t)l->T;
        if (row < l->n_rows) {
            for (size_t k = l->row_begin[row]; k < l->row_begin[row + 1]; k++) {
                size_t d = l->docs[k], n = doc_len(ds, d);
                const int32_t *ids = ds->tokens + ds->off[d];
                const uint8_t *lab = ds->labels + ds->off[d];
                for (size_t t = 0; t < n; t++, p++) {
                    b->ids[p] = ids[t];
                    b->pos[p] = (int32_t)t;
                    b->targets[p] = t + 1 < n ? ids[t + 1] : ds->pad_id;
                    b->loss_mask[p] = t + 1 < n && lab[t + 1] ? 1.0f : 0.0f;
                    if (doc_of)
                        doc_of[p] = (int32_t)d;
                }
            }
        }
        for (int32_t t = 0; p < end; p++, t++) {
            b->ids[p] = ds->pad_id;
            b->pos[p] = t;
            b->targets[p] = ds->pad_id;
            b->loss_mask[p] = 0.0f;
            if (doc_of)
                doc_of[p] = -1;
        }
    }
    return GLLM_OK;
}
