/*
 * isa.c - the instruction set the engine's kernels dispatch on: what the CPU
 * reports, capped by HEPTAPOD_ISA so that tests and users can force a slower
 * path (and compare its bits with the fast one).
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "engine/eng.h"
#include "engine/isa.h"

static eng__isa_level level;
static pthread_once_t once = PTHREAD_ONCE_INIT;

static eng__isa_level cpu_level(void)
{
#if defined(__x86_64__) && defined(__GNUC__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl") &&
        __builtin_cpu_supports("avx512vnni") && __builtin_cpu_supports("avx512bf16"))
        return ENG__ISA_AVX512;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        return ENG__ISA_AVX2;
#endif
    return ENG__ISA_SCALAR;
}

static void decide(void)
{
    level = cpu_level();
    const char *cap = getenv("HEPTAPOD_ISA");
    eng__isa_level want = level;
    if (!cap || !*cap)
        return;
    if (!strcmp(cap, "scalar"))
        want = ENG__ISA_SCALAR;
    else if (!strcmp(cap, "avx2"))
        want = ENG__ISA_AVX2;
    else if (!strcmp(cap, "avx512"))
        want = ENG__ISA_AVX512;
    if (want < level) level = want;
}

eng__isa_level eng__isa(void)
{
    pthread_once(&once, decide);
    return level;
}

const char *eng_isa_name(void)
{
    static const char *const names[] = {"scalar", "avx2", "avx512"};
    return names[eng__isa()];
}
