// Token sampling for inference: greedy, temperature, top-k, top-p.
#pragma once
#include "cuda_common.cuh"

// logits [N, V] bf16 on the device; seeds [N] and out_ids [N] on the device.
// Same generator (SplitMix64, include/gllm/backend_cpu.h) and the same selection
// rules as the CPU backend, so ids agree when probabilities are well separated.
gllm_status gllm_cuda_sample(gllm_cuda_ctx *c, int32_t *out_ids, const __nv_bfloat16 *logits,
                             int N, int V, const gllm_sample_args *a, const uint64_t *seeds);
