#define _GNU_SOURCE /* RTLD_DEFAULT */
#include "loom_runtime.h"

#include <dlfcn.h>
#include <sched.h>
#include <stdlib.h> /* defines __GLIBC__ on glibc */

#if defined(__x86_64__)
#include <xmmintrin.h>
#endif

#if defined(__GLIBC__)
#include <malloc.h>
#endif

void loom_configure_malloc(int mmap_threshold, int trim_threshold) {
#if defined(__GLIBC__)
    mallopt(M_MMAP_THRESHOLD, mmap_threshold);
    mallopt(M_TRIM_THRESHOLD, trim_threshold);
    mallopt(M_ARENA_MAX, 1);
#else
    (void)mmap_threshold;
    (void)trim_threshold;
#endif
}

int loom_flush_subnormals(int on) {
#if defined(__x86_64__)
    unsigned int bits = 0x8040u; /* FTZ | DAZ */
    unsigned int csr = _mm_getcsr();
    _mm_setcsr(on ? (csr | bits) : (csr & ~bits));
    return 1;
#else
    (void)on;
    return 0;
#endif
}

int loom_stop_blas_pool(void) {
    int (*shutdown)(void) = (int (*)(void))dlsym(RTLD_DEFAULT, "blas_thread_shutdown_");
    if (shutdown == NULL) return 0;
    shutdown();
    return 1;
}

int loom_allowed_cpus(void) {
#if defined(__linux__)
    cpu_set_t set;
    CPU_ZERO(&set);
    if (sched_getaffinity(0, sizeof(set), &set) != 0) return 0;
    return CPU_COUNT(&set);
#else
    return 0;
#endif
}
