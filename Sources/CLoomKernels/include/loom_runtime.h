#ifndef LOOM_RUNTIME_H
#define LOOM_RUNTIME_H

/* Tells glibc's malloc to serve blocks below mmap_threshold bytes from the heap and to keep up
 * to trim_threshold bytes of freed memory for reuse (mallopt M_MMAP_THRESHOLD, M_TRIM_THRESHOLD).
 * A no-op where malloc is not glibc's. */
void loom_configure_malloc(int mmap_threshold, int trim_threshold);

#endif
