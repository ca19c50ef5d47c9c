#include <stdlib.h>
#include <string.h>

#include "gllm/backend.h"

#ifndef GLLM_HAVE_CUDA
gllm_status gllm_backend_cuda_create(int device, gllm_backend **out)
{
    (void)device;
    *out = NULL;
    return gllm_fail(GLLM_ERR_UNSUPPORTED,
                     "backend 'cuda': this gllm was built without CUDA (configure with "
                     "-DGLLM_CUDA=ON on a machine with the CUDA toolkit)");
}
#endif

/* "auto" takes a GPU where there is one. The CUDA emulator (-DGLLM_CUDA_EMU=ON)
 * is no GPU: it runs the CUDA code on the CPU thousands of times slower, for
 * tests, so only "cuda" asks for it. */
#ifdef GLLM_CUDA_EMU
static gllm_status auto_cuda(int device, gllm_backend **out)
{
    (void)device;
    *out = NULL;
    return gllm_fail(GLLM_ERR_UNSUPPORTED, "the CUDA backend of this build is the emulator");
}
#else
#define auto_cuda gllm_backend_cuda_create
#endif

gllm_status gllm_backend_open(const char *name, gllm_backend **out)
{
    *out = NULL;
    if (!name || strcmp(name, "auto") == 0) {
        if (auto_cuda(0, out) == GLLM_OK)
            return GLLM_OK;
        gllm_clear_error();
        return gllm_backend_cpu_create(0, out);
    }
    if (strncmp(name, "auto:", 5) == 0) { /* a worker of a multi-GPU launch: its GPU, if any */
        char *end;
        long dev = strtol(name + 5, &end, 10);
        if (*end || end == name + 5 || dev < 0)
            return gllm_fail(GLLM_ERR_INVALID, "backend '%s': expected auto:N with N >= 0", name);
        if (auto_cuda((int)dev, out) == GLLM_OK)
            return GLLM_OK;
        gllm_clear_error();
        return gllm_backend_cpu_create(0, out);
    }
    if (strcmp(name, "cpu") == 0)
        return gllm_backend_cpu_create(0, out);
    if (strcmp(name, "cuda") == 0)
        return gllm_backend_cuda_create(0, out);
    if (strncmp(name, "cuda:", 5) == 0) {
        char *end;
        long dev = strtol(name + 5, &end, 10);
        if (*end || end == name + 5 || dev < 0)
            return gllm_fail(GLLM_ERR_INVALID, "backend '%s': expected cuda:N with N >= 0", name);
        return gllm_backend_cuda_create((int)dev, out);
    }
    return gllm_fail(GLLM_ERR_INVALID, "unknown backend '%s' (choose cpu, cuda, cuda:N or auto)",
                     name);
}
