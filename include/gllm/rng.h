/* The one random number generator of gllm: SplitMix64 (Steele, Lea and
 * Flood 2014). Deterministic from its seed, the same on every platform;
 * used for the validation split, shuffling, and wherever a seed is drawn. */
#ifndef GLLM_RNG_H
#define GLLM_RNG_H

#include <stdint.h>

/* The SplitMix64 finaliser: a bijective mix of x's bits. */
static inline uint64_t gllm_mix64(uint64_t x)
{
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

/* The next number of the stream whose state is *state. */
static inline uint64_t gllm_splitmix64(uint64_t *state)
{
    return gllm_mix64(*state += 0x9e3779b97f4a7c15ull);
}

/* A double uniform in [0, 1) from the next number (53 random bits). */
static inline double gllm_rng_uniform(uint64_t *state)
{
    return (double)(gllm_splitmix64(state) >> 11) / 9007199254740992.0;
}

#endif
