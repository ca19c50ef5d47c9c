/* Chat templates: public API, built-in named templates, tokenizer_config.json
 * loading, and the arena behind the interpreter (chat_parse.c, chat_eval.c). */
#include "gllm/chat.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/file.h"
#include "gllm/json.h"
#include "tok/chat_jinja.h"

struct jarena_chunk {
    jarena_chunk *next;
    size_t used, cap;
    max_align_t data[];
};

void *gllm_jarena_alloc(jarena *a, size_t bytes)
{
    bytes = (bytes + sizeof(max_align_t) - 1) / sizeof(max_align_t) * sizeof(max_align_t);
    jarena_chunk *h = a->head;
    if (!h || h->used + bytes > h->cap) {
        size_t cap = bytes > 65536 ? bytes : 65536;
        h = malloc(sizeof *h + cap);
        if (!h)
            return NULL;
        h->next = a->head;
        h->used = 0;
        h->cap = cap;
        a->head = h;
    }
    void *p = (char *)h->data + h->used;
    h->used += bytes;
    return p;
}

char *gllm_jarena_strndup(jarena *a, const char *s, size_t n)
{
    char *d = gllm_jarena_alloc(a, n + 1);
    if (d) {
        memcpy(d, s, n);
        d[n] = '\0';
    }
    return d;
}

void gllm_jarena_free(jarena *a)
{
    while (a->head) {
        jarena_chunk *n = a->head->next;
        free(a->head);
        a->head = n;
    }
}

struct gllm_chat_template {
    jtemplate tpl;
    char *bos, *eos;
};

/* Built-in sources, written in the same Jinja subset they are rendered by. */
static const struct {
    const char *name, *src;
} k_builtin[] = {
    {"chatml",
     "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + "
     "'<|im_end|>' + '\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}"
     "{% endif %}"},
    {"llama2",
     "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}{% set system_message "
     "= messages[0]['content'] %}{% else %}{% set loop_messages = messages %}{% set system_message = false "
     "%}{% endif %}{% for message in loop_messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 "
     "== 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}"
     "{% endif %}{% if loop.index0 == 0 and system_message != false %}{% set content = '<<SYS>>\\n' + "
     "system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}{% else %}{% set content = "
     "message['content'] %}{% endif %}{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + "
     "content.strip() + ' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ ' ' + content.strip() + "
     "' ' + eos_token }}{% endif %}{% endfor %}"},
    {"llama3",
     "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = "
     "'<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' + message['content'] | trim + "
     "'<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}"
     "{{ content }}{% endfor %}{% if add_generation_prompt %}{{ "
     "'<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}"},
    {"mistral",
     "{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == "
     "0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}"
     "{% endif %}{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}"
     "{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token}}{% else %}"
     "{{ raise_exception('Only user and assistant roles are supported!') }}{% endif %}{% endfor %}"},
    /* Base models: the contents separated by blank lines, and a trailing
     * separator as the generation prompt, so that rendering a prefix with the
     * prompt is a prefix of rendering the whole conversation. */
    {"plain",
     "{% for message in messages %}{% if not loop.first %}{{ '\\n\\n' }}{% endif %}{{ message['content'] }}"
     "{% endfor %}{% if add_generation_prompt and messages %}{{ '\\n\\n' }}{% endif %}"},
};

const char *gllm_chat_builtin(const char *name)
{
    for (size_t i = 0; i < sizeof k_builtin / sizeof *k_builtin; i++)
        if (!strcmp(name, k_builtin[i].name))
            return k_builtin[i].src;
    return NULL;
}

static char *dup_or_null(const char *s)
{
    return s ? strdup(s) : NULL;
}

void gllm_chat_free(gllm_chat_template *t)
{
    if (!t)
        return;
    gllm_jarena_free(&t->tpl.arena);
    free(t->bos);
    free(t->eos);
    free(t);
}

gllm_status gllm_chat_open(const char *spec, const char *bos_token, const char *eos_token,
                           gllm_chat_template **out)
{
    *out = NULL;
    if (!spec)
        return gllm_fail(GLLM_ERR_INVALID, "chat template: no template given");
    const char *builtin = gllm_chat_builtin(spec);
    gllm_chat_template *t = calloc(1, sizeof *t);
    if (!t)
        return gllm_fail(GLLM_ERR_OOM, "chat template: out of memory");
    t->bos = dup_or_null(bos_token);
    t->eos = dup_or_null(eos_token);
    if ((bos_token && !t->bos) || (eos_token && !t->eos)) {
        gllm_chat_free(t);
        return gllm_fail(GLLM_ERR_OOM, "chat template: out of memory");
    }
    gllm_status s = gllm_jinja_parse(builtin ? builtin : spec, &t->tpl);
    if (s != GLLM_OK) {
        gllm_chat_free(t);
        return s;
    }
    *out = t;
    return GLLM_OK;
}

/* A special token in tokenizer_config.json is a string or {"content": ...}. */
static const char *token_str(const cJSON *cfg, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(cfg, key);
    if (cJSON_IsObject(v))
        v = cJSON_GetObjectItemCaseSensitive(v, "content");
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* chat_template is a string, or a list of {name, template} of which the one
 * named "default" is what apply_chat_template uses. */
static const char *config_template(const cJSON *cfg)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(cfg, "chat_template");
    if (cJSON_IsString(v))
        return v->valuestring;
    if (cJSON_IsArray(v)) {
        const cJSON *it;
        cJSON_ArrayForEach(it, v) {
            const cJSON *name = cJSON_GetObjectItemCaseSensitive(it, "name");
            const cJSON *tpl = cJSON_GetObjectItemCaseSensitive(it, "template");
            if (cJSON_IsString(name) && !strcmp(name->valuestring, "default") && cJSON_IsString(tpl))
                return tpl->valuestring;
        }
    }
    return NULL;
}

gllm_status gllm_chat_load(const char *path, const char *override, gllm_chat_template **out)
{
    *out = NULL;
    const size_t plen = strlen(path);
    if (plen > 5 && strcmp(path + plen - 5, ".gguf") == 0)
        return tok_gguf_chat(path, override, out);
    char cfg_path[4096];
    struct stat st;
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) {
        snprintf(cfg_path, sizeof cfg_path, "%s/tokenizer_config.json", path);
    } else {
        const char *slash = strrchr(path, '/');
        int dir_len = slash ? (int)(slash - path) : 1;
        snprintf(cfg_path, sizeof cfg_path, "%.*s/tokenizer_config.json", dir_len, slash ? path : ".");
    }
    cJSON *cfg = NULL;
    gllm_status rs = gllm_json_read_file(cfg_path, &cfg);
    if (rs == GLLM_ERR_NOT_FOUND) {
        if (override)
            return gllm_chat_open(override, NULL, NULL, out);
        return gllm_fail(GLLM_ERR_NOT_FOUND, "%s: cannot read the chat template's config" JINJA_HINT,
                         cfg_path);
    }
    if (rs != GLLM_OK)
        return rs; /* the message names the file, line and column */
    const char *src = override ? override : config_template(cfg);
    gllm_status s;
    if (!src) {
        s = gllm_fail(GLLM_ERR_NOT_FOUND, "%s: no chat_template" JINJA_HINT, cfg_path);
    } else {
        s = gllm_chat_open(src, token_str(cfg, "bos_token"), token_str(cfg, "eos_token"), out);
        if (s != GLLM_OK)
            gllm_fail_prefix(s, "%s: ", cfg_path);
    }
    cJSON_Delete(cfg);
    return s;
}

gllm_status gllm_chat_render(const gllm_chat_template *t, const gllm_chat_message *msgs, size_t n,
                             bool add_generation_prompt, char **out, size_t *len)
{
    *out = NULL;
    jarena scratch = {0};
    gllm_status s = GLLM_OK;
    jlist *list = gllm_jarena_alloc(&scratch, sizeof *list);
    if (list)
        list->items = gllm_jarena_alloc(&scratch, (n ? n : 1) * sizeof *list->items);
    if (!list || !list->items) {
        gllm_jarena_free(&scratch);
        return gllm_fail(GLLM_ERR_OOM, "chat template: out of memory");
    }
    list->n = n;
    for (size_t i = 0; i < n && s == GLLM_OK; i++) {
        jdict *d = gllm_jarena_alloc(&scratch, sizeof *d);
        jv *keys = gllm_jarena_alloc(&scratch, 2 * sizeof *keys), *vals = gllm_jarena_alloc(&scratch, 2 * sizeof *vals);
        if (!d || !keys || !vals) {
            s = gllm_fail(GLLM_ERR_OOM, "chat template: out of memory");
            break;
        }
        if (!msgs[i].role || !msgs[i].content) {
            s = gllm_fail(GLLM_ERR_INVALID, "chat template: message %zu has no %s", i,
                          msgs[i].role ? "content" : "role");
            break;
        }
        keys[0] = (jv){.k = JV_STR, .u.s = {"role", 4}};
        vals[0] = (jv){.k = JV_STR, .u.s = {msgs[i].role, strlen(msgs[i].role)}};
        keys[1] = (jv){.k = JV_STR, .u.s = {"content", 7}};
        vals[1] = (jv){.k = JV_STR, .u.s = {msgs[i].content, strlen(msgs[i].content)}};
        *d = (jdict){.keys = keys, .vals = vals, .n = 2, .cap = 2};
        list->items[i] = (jv){.k = JV_DICT, .u.d = d};
    }
    if (s == GLLM_OK) {
        const char *names[4];
        jv vals[4];
        int nv = 0;
        names[nv] = "messages";
        vals[nv++] = (jv){.k = JV_LIST, .u.l = list};
        names[nv] = "add_generation_prompt";
        vals[nv++] = (jv){.k = JV_BOOL, .u.b = add_generation_prompt};
        if (t->bos) {
            names[nv] = "bos_token";
            vals[nv++] = (jv){.k = JV_STR, .u.s = {t->bos, strlen(t->bos)}};
        }
        if (t->eos) {
            names[nv] = "eos_token";
            vals[nv++] = (jv){.k = JV_STR, .u.s = {t->eos, strlen(t->eos)}};
        }
        s = gllm_jinja_render(&t->tpl, names, vals, nv, &scratch, out, len);
    }
    gllm_jarena_free(&scratch);
    return s;
}
