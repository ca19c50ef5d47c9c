// The two CUB device-wide sorts gllm calls (embed.cu, sample.cu), for the CUDA
// emulator: the same interface (a first call with no temporary storage asks for
// its size), the same result (a stable LSD radix sort over bits
// [begin_bit, end_bit) of CUB's order-preserving key bits), on host memory.
// CUB itself is NVIDIA's and is tested there; what this lets run is gllm's code
// around the calls.
#pragma once

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <algorithm>
#include <numeric>
#include <vector>

namespace cub {

namespace emu_detail {

// CUB's "twiddled" unsigned key: order of the unsigned bits is the order of
// the values (floats: negative values flipped, positive ones with the sign set)
inline uint32_t twiddle(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}
inline uint32_t twiddle(int32_t i) { return (uint32_t)i ^ 0x80000000u; }
inline uint32_t twiddle(uint32_t u) { return u; }

constexpr size_t TEMP_BYTES = 256;

template <typename K, typename V>
cudaError_t sort(void *temp, size_t &temp_bytes, const K *keys_in, K *keys_out, const V *vals_in,
                 V *vals_out, int n, int begin_bit, int end_bit, bool descending)
{
    if (!temp) {
        temp_bytes = TEMP_BYTES;
        return cudaSuccess;
    }
    if (temp_bytes < TEMP_BYTES || n < 0 || begin_bit < 0 || end_bit > 32 || begin_bit >= end_bit)
        return cudaErrorInvalidValue;
    memset(temp, 0xff, TEMP_BYTES); // the temporaries are CUB's: clobber them
    const uint32_t mask = (end_bit - begin_bit == 32 ? 0xffffffffu
                                                     : ((1u << (end_bit - begin_bit)) - 1u))
                          << begin_bit;
    std::vector<int> idx((size_t)n);
    std::iota(idx.begin(), idx.end(), 0);
    std::stable_sort(idx.begin(), idx.end(), [&](int a, int b) {
        const uint32_t ka = twiddle(keys_in[a]) & mask, kb = twiddle(keys_in[b]) & mask;
        return descending ? ka > kb : ka < kb;
    });
    std::vector<K> k2((size_t)n);
    std::vector<V> v2((size_t)n);
    for (int i = 0; i < n; i++) {
        k2[(size_t)i] = keys_in[idx[(size_t)i]];
        v2[(size_t)i] = vals_in[idx[(size_t)i]];
    }
    std::copy(k2.begin(), k2.end(), keys_out);
    std::copy(v2.begin(), v2.end(), vals_out);
    return cudaSuccess;
}

} // namespace emu_detail

struct DeviceRadixSort {
    template <typename K, typename V>
    static cudaError_t SortPairs(void *temp, size_t &temp_bytes, const K *keys_in, K *keys_out,
                                 const V *vals_in, V *vals_out, int n, int begin_bit = 0,
                                 int end_bit = (int)sizeof(K) * 8, cudaStream_t s = 0)
    {
        (void)s;
        return emu_detail::sort(temp, temp_bytes, keys_in, keys_out, vals_in, vals_out, n,
                                begin_bit, end_bit, false);
    }
};

struct DeviceSegmentedRadixSort {
    template <typename K, typename V>
    static cudaError_t SortPairsDescending(void *temp, size_t &temp_bytes, const K *keys_in,
                                           K *keys_out, const V *vals_in, V *vals_out, int n,
                                           int n_segments, const int *begin, const int *end,
                                           int begin_bit = 0, int end_bit = (int)sizeof(K) * 8,
                                           cudaStream_t s = 0)
    {
        (void)s;
        if (!temp) {
            temp_bytes = emu_detail::TEMP_BYTES;
            return cudaSuccess;
        }
        for (int i = 0; i < n_segments; i++) {
            const int b = begin[i], e = end[i];
            if (b < 0 || e > n || b > e)
                return cudaErrorInvalidValue;
            cudaError_t r = emu_detail::sort(temp, temp_bytes, keys_in + b, keys_out + b,
                                             vals_in + b, vals_out + b, e - b, begin_bit,
                                             end_bit, true);
            if (r != cudaSuccess)
                return r;
        }
        return cudaSuccess;
    }
};

} // namespace cub
