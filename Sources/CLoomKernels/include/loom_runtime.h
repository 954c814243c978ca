#ifndef LOOM_RUNTIME_H
#define LOOM_RUNTIME_H

/* Tells glibc's malloc to serve blocks below mmap_threshold bytes from the heap, to keep up
 * to trim_threshold bytes of freed memory for reuse (mallopt M_MMAP_THRESHOLD, M_TRIM_THRESHOLD)
 * and to serve every thread from one arena (M_ARENA_MAX 1). A no-op where malloc is not glibc's. */
void loom_configure_malloc(int mmap_threshold, int trim_threshold);

/* Sets (on != 0) or clears the calling thread's flush-to-zero and denormals-are-zero modes
 * (MXCSR bits 15 and 6 on x86-64): subnormal results become 0 and subnormal inputs read as 0,
 * instead of taking a microcode assist of ~100 cycles each. Returns 1 where supported, else 0. */
int loom_flush_subnormals(int on);

/* Stops the idle worker threads of OpenBLAS's own pool, if the loaded OpenBLAS has one
 * (blas_thread_shutdown_, looked up at run time: serial builds lack it). OpenBLAS starts its pool
 * when it loads, and an idle pool thread spins on sched_yield for about 2^28 cycles before it
 * sleeps. OpenBLAS starts the pool again by itself in openblas_set_num_threads and when a later
 * product asks for more than one thread. Returns 1 when the call was made, else 0. */
int loom_stop_blas_pool(void);

/* The number of CPUs the calling thread may run on (its affinity mask, as `taskset` or a
 * container's cpuset leave it); 0 when the system does not say. */
int loom_allowed_cpus(void);

/* One pause in a spin-wait loop (x86 PAUSE, Arm YIELD): tells the core that this thread is only
 * polling, so that it does not starve a thread sharing its core and leaves the loop without a
 * memory-order mis-speculation when the polled value changes. */
static inline void loom_spin_pause(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

#endif
