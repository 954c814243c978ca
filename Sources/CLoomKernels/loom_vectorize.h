#ifndef LOOM_VECTORIZE_H
#define LOOM_VECTORIZE_H

/* One version per instruction set; the dynamic loader picks one through an ifunc. */
#define LOOM_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))

/* For loops that read and write element i only: safe to vectorize even when an output buffer is
 * an input buffer (in-place use); without this clang's runtime overlap check sends in-place
 * calls down the scalar path (measured: 14x slower log). */
#define LOOM_ELEMENTWISE _Pragma("clang loop vectorize(assume_safety)")

#endif
