/* The queue and event hooks of every backend present (the CPU always, CUDA
 * when a GPU is): an event recorded on the compute queue, waited on by the
 * comm queue and polled from the host; queue handles; device facts. */
#include "gllm/backend.h"
#include "test_util.h"

static void check_backend(gllm_backend *be)
{
    printf("backend %s\n", be->name);
    gllm_event *ev = NULL;
    CHECK_OK(be->event_create(be, &ev));
    float *buf = NULL;
    float host[257], back[257];
    test_fill(host, 257, 1.0f);
    CHECK_OK(be->alloc(be, sizeof host, "queue test", (void **)&buf));
    CHECK_OK(be->upload(be, buf, host, sizeof host));
    CHECK_OK(be->event_record(be, ev, GLLM_QUEUE_COMPUTE));
    CHECK_OK(be->queue_wait(be, GLLM_QUEUE_COMM, ev));
    CHECK_OK(be->sync(be));
    bool done = false;
    CHECK_OK(be->event_query(be, ev, &done));
    CHECK(done);
    CHECK_OK(be->event_record(be, ev, GLLM_QUEUE_COMM));
    CHECK_OK(be->queue_wait(be, GLLM_QUEUE_COMPUTE, ev));
    CHECK_OK(be->download(be, back, buf, sizeof back));
    CHECK(memcmp(host, back, sizeof host) == 0);
    CHECK_ERR(be->event_record(be, ev, (gllm_queue)7), GLLM_ERR_INVALID, "no queue 7");
    const bool device = strcmp(be->name, "cpu") != 0;
    CHECK((be->queue_handle(be, GLLM_QUEUE_COMM) != NULL) == device);
    CHECK(be->queue_handle(be, GLLM_QUEUE_COMM) != be->queue_handle(be, GLLM_QUEUE_COMPUTE) ||
          !device);
    gllm_device_info a, b;
    CHECK_OK(be->device_info(be, &a));
    void *big = NULL;
    CHECK_OK(be->alloc(be, 64u << 20, "peak memory probe", &big));
    CHECK_OK(be->device_info(be, &b));
    printf("  device \"%s\", %.0f MiB total, peak %.1f -> %.1f MiB after a 64 MiB buffer\n",
           b.name, b.mem_total / 1048576.0, a.mem_peak / 1048576.0, b.mem_peak / 1048576.0);
    CHECK(b.name[0] != '\0' && b.mem_total > 0);
    CHECK(b.mem_peak >= a.mem_peak + (60u << 20));
    be->free(be, big);
    be->free(be, buf);
    be->event_destroy(be, ev);
}

int main(void)
{
    gllm_backend *be;
    TEST_CASE("cpu")
    {
        CHECK_OK(gllm_backend_cpu_create(1, &be));
        check_backend(be);
        be->destroy(be);
    }
    TEST_CASE("cuda, when a GPU is present")
    {
        if (gllm_backend_cuda_create(0, &be) != GLLM_OK) {
            printf("no CUDA device: %s\n", gllm_last_error());
            break;
        }
        check_backend(be);
        be->destroy(be);
    }
    return test_summary();
}
