/* What a training step costs and how well it uses the device: the peak bf16
 * tensor rate of known GPUs (for MFU), each rank's peak memory and the share
 * of the step the host spent waiting on communication. */
#include <stdlib.h>
#include <string.h>

#include "train/train_internal.h"

/* Dense (no sparsity) bf16 tensor-core peaks from the vendors' data sheets,
 * in TFLOP/s, with fp32 accumulation. The first match wins, so the more
 * specific names come first. */
static const struct {
    const char *match;
    double tflops;
} k_peaks[] = {
    {"GH200", 989.0},     {"H200", 989.0},      {"H100 NVL", 835.0}, {"H100 PCIe", 756.0},
    {"H100", 989.0},      {"H800", 989.0},      {"B200", 2250.0},    {"B100", 1750.0},
    {"A100", 312.0},      {"A800", 312.0},      {"L40S", 362.0},     {"L40", 181.0},
    {"L4", 121.0},        {"A10", 125.0},       {"RTX 4090", 165.0}, {"RTX 3090", 71.0},
    {"RTX 6000 Ada", 364.0},
};

double gllm_train_peak_flops(const char *device, const char **source)
{
    const char *env = getenv("GLLM_PEAK_TFLOPS");
    if (env && *env) {
        char *end;
        const double t = strtod(env, &end);
        if (!*end && t > 0) {
            *source = "GLLM_PEAK_TFLOPS";
            return t * 1e12;
        }
    }
    for (size_t i = 0; i < sizeof k_peaks / sizeof k_peaks[0]; i++)
        if (strstr(device, k_peaks[i].match)) {
            *source = "table";
            return k_peaks[i].tflops * 1e12;
        }
    *source = "unknown device";
    return 0;
}
