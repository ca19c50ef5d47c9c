/* ginfer: run a model over every line of a JSONL file of prompts.
 * usage: ginfer --model DIR [options] INPUT.jsonl OUTPUT.jsonl (see --help) */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "gllm/ginfer.h"

static const char *USAGE =
    "usage: ginfer --model DIR [options] INPUT.jsonl OUTPUT.jsonl\n"
    "\n"
    "Input lines: {\"id\",\"prompt\"}, {\"id\",\"messages\"}, {\"id\",\"prompt\",\"candidates\"}\n"
    "(scoring), or OpenAI batch lines {\"custom_id\",\"method\",\"url\",\"body\"}. One result per\n"
    "line, in input order. Restarted on the same OUTPUT, ginfer continues after its last\n"
    "complete result. Formats: README.md, section ginfer.\n"
    "\n"
    "  --model DIR             Hugging Face model folder (config.json, safetensors, tokenizer)\n"
    "  --backend NAME          cpu, cuda, cuda:N or auto (default auto)\n"
    "  --threads N             CPU threads (per replica; default: all cores, shared)\n"
    "  --gpus N                one replica per GPU (processes, results merged in order)\n"
    "  --replicas N            N CPU processes, each with its own model (same mechanism)\n"
    "  --kv-bytes SIZE         KV cache budget per replica (e.g. 512M, 4G); default: on a GPU\n"
    "                          what --gpu-memory-utilization leaves, on the CPU 1G (at most\n"
    "                          what --max-seqs full-context sequences use)\n"
    "  --gpu-memory-utilization F\n"
    "                          share of each GPU's memory a replica may hold in all: weights,\n"
    "                          workspace and KV cache (0 < F <= 1, default 0.9)\n"
    "  --max-batch-tokens N    tokens computed per engine step (default 2048)\n"
    "  --max-seqs N            sequences running at once (default 256)\n"
    "  --chunk N               longest prefill piece of one sequence per step\n"
    "  --block-size N          tokens per KV block (default 4 on the CPU, 16 on a GPU)\n"
    "  --prefix-sharing on|off share full prompt blocks between requests (default on)\n"
    "  --chat-template T       built-in name (chatml, llama2, llama3, mistral, plain) or a file\n"
    "                          of Jinja source, replacing the model's template\n"
    "  --set KEY=VALUE         default for a sampling key of every line (repeatable): max_tokens,\n"
    "                          temperature, top_p, top_k, min_p, repetition_penalty, seed, n,\n"
    "                          stop, logprobs, top_logprobs, ignore_eos\n"
    "  --seed N                base of the seeds of lines that give none (default 0)\n"
    "  --fail-fast             stop at the first bad line (else it gets an error result)\n"
    "  --overwrite             start OUTPUT over instead of resuming it\n"
    "  --summary PATH          where summary.json goes (default: beside OUTPUT)\n"
    "  --quiet                 no progress line\n";

static int bad_number(const char *opt, const char *v)
{
    fprintf(stderr, "ginfer: %s needs a positive number, got '%s'\n", opt, v);
    return 2;
}

static int parse_int(const char *v, int lo, int hi, int *out)
{
    char *end;
    long x = strtol(v, &end, 10);
    if (end == v || *end || x < lo || x > hi)
        return 0;
    *out = (int)x;
    return 1;
}

static int parse_size(const char *v, size_t *out)
{
    char *end;
    double x = strtod(v, &end);
    double mul = 1;
    if (*end == 'K' || *end == 'k')
        mul = 1024.0, end++;
    else if (*end == 'M' || *end == 'm')
        mul = 1024.0 * 1024, end++;
    else if (*end == 'G' || *end == 'g')
        mul = 1024.0 * 1024 * 1024, end++;
    if (*end == 'i' || *end == 'B')
        end += *end == 'i' ? 1 : 0, end += *end == 'B' ? 1 : 0;
    if (end == v || *end || x <= 0)
        return 0;
    *out = (size_t)(x * mul);
    return 1;
}

int main(int argc, char **argv)
{
    gllm_ginfer_options o;
    gllm_ginfer_options_default(&o);
    const char *pos[2] = {NULL, NULL};
    int n_pos = 0, gpus = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
#define TAKES_VALUE()                                                        \
    do {                                                                     \
        if (!v) {                                                            \
            fprintf(stderr, "ginfer: %s needs a value (see --help)\n", a);   \
            return 2;                                                        \
        }                                                                    \
        i++;                                                                 \
    } while (0)
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            fputs(USAGE, stdout);
            return 0;
        } else if (strcmp(a, "--model") == 0) {
            TAKES_VALUE();
            o.model = v;
        } else if (strcmp(a, "--backend") == 0) {
            TAKES_VALUE();
            o.backend = v;
        } else if (strcmp(a, "--threads") == 0) {
            TAKES_VALUE();
            if (!parse_int(v, 1, 4096, &o.threads))
                return bad_number(a, v);
        } else if (strcmp(a, "--gpus") == 0) {
            TAKES_VALUE();
            if (!parse_int(v, 1, 256, &gpus))
                return bad_number(a, v);
            o.replicas = gpus;
            o.gpus = true;
        } else if (strcmp(a, "--replicas") == 0) {
            TAKES_VALUE();
            if (!parse_int(v, 1, 256, &o.replicas))
                return bad_number(a, v);
        } else if (strcmp(a, "--kv-bytes") == 0) {
            TAKES_VALUE();
            if (!parse_size(v, &o.engine.kv_bytes))
                return bad_number(a, v);
        } else if (strcmp(a, "--gpu-memory-utilization") == 0) {
            TAKES_VALUE();
            char *end;
            const double f = strtod(v, &end);
            if (end == v || *end || !(f > 0.0 && f <= 1.0)) {
                fprintf(stderr, "ginfer: --gpu-memory-utilization takes a share in (0, 1], got "
                                "'%s'\n", v);
                return 2;
            }
            o.engine.gpu_memory_utilization = (float)f;
        } else if (strcmp(a, "--max-batch-tokens") == 0) {
            TAKES_VALUE();
            if (!parse_int(v, 1, 1 << 24, &o.engine.max_batch_tokens))
                return bad_number(a, v);
        } else if (strcmp(a, "--max-seqs") == 0) {
            TAKES_VALUE();
            if (!parse_int(v, 1, 1 << 20, &o.engine.max_seqs))
                return bad_number(a, v);
        } else if (strcmp(a, "--chunk") == 0) {
            TAKES_VALUE();
            if (!parse_int(v, 1, 1 << 24, &o.engine.prefill_chunk))
                return bad_number(a, v);
        } else if (strcmp(a, "--block-size") == 0) {
            TAKES_VALUE();
            if (!parse_int(v, 1, 1 << 16, &o.engine.block_size))
                return bad_number(a, v);
        } else if (strcmp(a, "--prefix-sharing") == 0) {
            TAKES_VALUE();
            if (strcmp(v, "on") != 0 && strcmp(v, "off") != 0) {
                fprintf(stderr, "ginfer: --prefix-sharing takes on or off, got '%s'\n", v);
                return 2;
            }
            o.engine.prefix_sharing = strcmp(v, "on") == 0;
        } else if (strcmp(a, "--chat-template") == 0) {
            TAKES_VALUE();
            o.chat_template = v;
        } else if (strcmp(a, "--set") == 0) {
            TAKES_VALUE();
            if (gllm_ginfer_set(&o.defaults, v) != GLLM_OK) {
                fprintf(stderr, "ginfer: %s\n", gllm_last_error());
                return 2;
            }
        } else if (strcmp(a, "--seed") == 0) {
            TAKES_VALUE();
            char *end;
            o.seed = strtoull(v, &end, 10);
            if (end == v || *end)
                return bad_number(a, v);
        } else if (strcmp(a, "--fail-fast") == 0)
            o.fail_fast = true;
        else if (strcmp(a, "--overwrite") == 0)
            o.overwrite = true;
        else if (strcmp(a, "--quiet") == 0)
            o.quiet = true;
        else if (strcmp(a, "--summary") == 0) {
            TAKES_VALUE();
            o.summary = v;
        } else if (a[0] != '-' && n_pos < 2)
            pos[n_pos++] = a;
        else {
            fprintf(stderr, "ginfer: unexpected argument '%s' (see ginfer --help)\n", a);
            return 2;
        }
#undef TAKES_VALUE
    }
    if (!o.model || n_pos != 2) {
        fprintf(stderr, "usage: ginfer --model DIR [options] INPUT.jsonl OUTPUT.jsonl "
                        "(ginfer --help lists the options)\n");
        return 2;
    }
    o.input = pos[0];
    o.output = pos[1];
    if (o.gpus && strcmp(o.backend, "auto") != 0 && strncmp(o.backend, "cuda", 4) != 0) {
        fprintf(stderr, "ginfer: --gpus runs on CUDA devices, not --backend %s (--replicas N "
                        "runs CPU processes)\n", o.backend);
        return 2;
    }
    if (o.replicas > 1 && !o.gpus) {
        if (strcmp(o.backend, "auto") == 0)
            o.backend = "cpu";
        else if (strcmp(o.backend, "cpu") != 0) {
            fprintf(stderr, "ginfer: --replicas runs CPU processes; for one replica per GPU "
                            "use --gpus N\n");
            return 2;
        }
    }
    o.progress_tty = isatty(2);
    gllm_ginfer_summary sum;
    gllm_status st = gllm_ginfer_run(&o, &sum);
    gllm_ginfer_defaults_free(&o.defaults);
    if (st != GLLM_OK) {
        fprintf(stderr, "ginfer: %s\n", gllm_last_error());
        return 1;
    }
    if (!o.quiet)
        fprintf(stderr,
                "done: %ld lines (%ld resumed, %ld errors) in %.1f s on %s; %lld prompt tokens "
                "(%.0f%% from the prefix cache), %lld generated (%.0f tok/s)\n",
                sum.total, sum.done_before, sum.errors, sum.wall_s, sum.device,
                (long long)sum.prompt_tokens,
                sum.prompt_tokens ? 100.0 * (double)sum.cached_tokens / (double)sum.prompt_tokens
                                  : 0,
                (long long)sum.generated_tokens,
                sum.wall_s > 0 ? (double)sum.generated_tokens / sum.wall_s : 0);
    return 0;
}
