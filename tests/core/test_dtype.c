#include "gllm/dtype.h"
#include "test_util.h"

int main(void)
{
    test_seed();
    TEST_CASE("bf16 round trip and rounding")
    {
        CHECK(gllm_bf16_to_f32(gllm_f32_to_bf16(1.0f)) == 1.0f);
        /* 1 + 2^-8 is a tie between 1 and 1 + 2^-7: round to even (1.0) */
        CHECK(gllm_bf16_to_f32(gllm_f32_to_bf16(1.0f + 0x1p-8f)) == 1.0f);
        CHECK(gllm_bf16_to_f32(gllm_f32_to_bf16(1.0f + 0x1p-8f + 0x1p-20f)) == 1.0f + 0x1p-7f);
        CHECK(isnan(gllm_bf16_to_f32(gllm_f32_to_bf16(NAN))));
        float x[1000], y[1000];
        uint16_t h[1000];
        test_fill(x, 1000, 3.0f);
        gllm_from_f32(h, GLLM_BF16, x, 1000);
        gllm_to_f32(y, h, GLLM_BF16, 1000);
        CHECK(rel_err(y, x, 1000) < 4e-3);
        CHECK(rel_err(y, x, 1000) > 0);
    }
    TEST_CASE("f16 conversions")
    {
        CHECK(gllm_f16_to_f32(0x3c00) == 1.0f);
        CHECK(gllm_f16_to_f32(0xc000) == -2.0f);
        CHECK(gllm_f16_to_f32(0x7bff) == 65504.0f);
        CHECK(gllm_f16_to_f32(0x0001) == 0x1p-24f);
        CHECK(gllm_f32_to_f16(65504.0f) == 0x7bff);
        CHECK(gllm_f32_to_f16(1e6f) == 0x7c00);
        CHECK(gllm_f32_to_f16(0x1p-24f) == 0x0001);
        CHECK(gllm_f32_to_f16(1.0f + 0x1p-11f) == 0x3c00); /* tie to even */
        for (uint32_t b = 0; b < 0x7c00; b++) /* every finite half round-trips */
            if (gllm_f32_to_f16(gllm_f16_to_f32((uint16_t)b)) != b) {
                CHECK_MSG(0, "half 0x%04x does not round-trip", b);
                break;
            }
    }
    TEST_CASE("dtype names")
    {
        CHECK(gllm_dtype_parse("BF16") == GLLM_BF16);
        CHECK(gllm_dtype_parse("F64") == -1);
        CHECK(gllm_dtype_size(GLLM_I64) == 8);
    }
    return test_summary();
}
