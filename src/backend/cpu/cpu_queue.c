/* Queues and events on the CPU: every op has finished when it returns, so the
 * compute and comm queues are one, an event is complete once recorded, and
 * waiting on it costs nothing. Communicators that overlap on a device run
 * their collectives in call order here. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backend/cpu/cpu_internal.h"

/* an event only has to be a distinct, freeable object */
struct gllm_event {
    int recorded;
};

static gllm_status cpu_event_create(gllm_backend *be, gllm_event **out)
{
    (void)be;
    *out = gllm_calloc(1, sizeof **out, "cpu event");
    return *out ? GLLM_OK : GLLM_ERR_OOM;
}

static void cpu_event_destroy(gllm_backend *be, gllm_event *e)
{
    (void)be;
    free(e);
}

static gllm_status check_queue(gllm_queue q)
{
    if (q != GLLM_QUEUE_COMPUTE && q != GLLM_QUEUE_COMM)
        return gllm_fail(GLLM_ERR_INVALID, "cpu backend: no queue %d (compute 0, comm 1)", (int)q);
    return GLLM_OK;
}

static gllm_status cpu_event_record(gllm_backend *be, gllm_event *e, gllm_queue q)
{
    (void)be;
    GLLM_TRY(check_queue(q));
    e->recorded = 1;
    return GLLM_OK;
}

static gllm_status cpu_queue_wait(gllm_backend *be, gllm_queue q, gllm_event *e)
{
    (void)be;
    GLLM_TRY(check_queue(q));
    if (!e->recorded)
        return gllm_fail(GLLM_ERR_INVALID, "cpu backend: waiting on an event never recorded");
    return GLLM_OK;
}

static gllm_status cpu_event_query(gllm_backend *be, gllm_event *e, bool *done)
{
    (void)be;
    if (!e->recorded)
        return gllm_fail(GLLM_ERR_INVALID, "cpu backend: querying an event never recorded");
    *done = true;
    return GLLM_OK;
}

static void *cpu_queue_handle(gllm_backend *be, gllm_queue q)
{
    (void)be, (void)q;
    return NULL;
}

static void read_cpu_name(char *name, size_t n)
{
    snprintf(name, n, "cpu");
    FILE *f = fopen("/proc/cpuinfo", "r");
    char line[512];
    while (f && fgets(line, sizeof line, f)) {
        if (strncmp(line, "model name", 10) != 0)
            continue;
        const char *v = strchr(line, ':');
        if (v) {
            v += 1 + (v[1] == ' ');
            snprintf(name, n, "%.*s", (int)strcspn(v, "\n"), v);
        }
        break;
    }
    if (f)
        fclose(f);
}

static gllm_status cpu_device_info(gllm_backend *be, gllm_device_info *out)
{
    gllm_cpu_ctx *c = gllm_cpu_ctx_of(be);
    if (!c->device_name[0]) /* the trainer asks every step */
        read_cpu_name(c->device_name, sizeof c->device_name);
    memset(out, 0, sizeof *out);
    snprintf(out->name, sizeof out->name, "%s", c->device_name);
    const long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
    out->mem_total = pages > 0 && page > 0 ? (size_t)pages * (size_t)page : 0;
    out->mem_peak = c->mem_peak;
    return GLLM_OK;
}

void gllm_cpu_queue_ops(gllm_backend *be)
{
    be->event_create = cpu_event_create;
    be->event_destroy = cpu_event_destroy;
    be->event_record = cpu_event_record;
    be->queue_wait = cpu_queue_wait;
    be->event_query = cpu_event_query;
    be->queue_handle = cpu_queue_handle;
    be->device_info = cpu_device_info;
}
