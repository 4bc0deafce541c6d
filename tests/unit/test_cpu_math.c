/* test_cpu_math.c - the CPU backend's compute library dispatches on the CPU's features:
 * on a CPU (and OS) with AVX2 or AVX-512, oneDNN's instruction set is not the baseline
 * and not below what cpuid reports, and its float32 products run an AVX2/AVX-512
 * kernel; bf16 products are measured exactly where the dispatch has bf16 instructions. */
#include <stdlib.h>
#include <string.h>

#include "core/device.h"
#include "testutil.h"

static void test_dispatch(void **state)
{
    (void)state;
    lk_cpu_math_info mi;
    lk_backend_cpu_math_info(&mi);
    print_message("  %s: dispatching to %s, the CPU reports %s; float32 products: %s\n", mi.library,
                  mi.isa, mi.cpu_isa, mi.fp32_kernel);
    assert_true(!strncmp(mi.library, "oneDNN ", 7));
    const int simd = !strncmp(mi.cpu_isa, "avx2", 4) || !strncmp(mi.cpu_isa, "avx512", 6);
    if (!simd) {
        print_message("  this CPU reports neither AVX2 nor AVX-512: nothing to check\n");
        skip();
    }
    if (getenv("ONEDNN_MAX_CPU_ISA") || getenv("DNNL_MAX_CPU_ISA")) {
        print_message("  ONEDNN_MAX_CPU_ISA / DNNL_MAX_CPU_ISA is set: the dispatch is limited on purpose\n");
        skip();
    }
    assert_false(mi.baseline);
    assert_false(mi.below);
    /* a JIT kernel (named for its ISA, or oneDNN's JIT gemm, which picks the ISA itself: what
     * an AVX2-only AMD EPYC gets), never the reference or SSE4.1 ones */
    if (!strstr(mi.fp32_kernel, "avx2") && !strstr(mi.fp32_kernel, "avx512") && strcmp(mi.fp32_kernel, "gemm:jit"))
        fail_msg("float32 products on %s", mi.fp32_kernel);
}

static void test_bf16_rate(void **state)
{
    (void)state;
    lk_cpu_math_info mi;
    lk_backend_cpu_math_info(&mi);
    double flops = -1.0;
    TU_OK(lk_backend_cpu_bf16_rate(tu_cpu(), 128, 0.01, &flops));
    const int has = strstr(mi.isa, "bf16") || strstr(mi.isa, "amx");
    print_message("  bf16 products of 128^3 on %s: %.1f GFLOP/s\n", mi.isa, flops * 1e-9);
    assert_true(has ? flops > 0.0 : flops == 0.0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dispatch),
        cmocka_unit_test(test_bf16_rate),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
