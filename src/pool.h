/* pool.h: a persistent pthread pool. pool_for splits [0, n) into contiguous ranges handed out
 * through an atomic counter; the caller's thread works too. Which thread computes a range never
 * changes the arithmetic (kernels compute each output element from its inputs alone), so
 * results are bit-identical for any thread count. */
#ifndef VLM_POOL_H
#define VLM_POOL_H

#include <stddef.h>

typedef struct pool pool;

/* fn computes items [i0, i1) of the job described by ctx. */
typedef void (*pool_fn)(void *ctx, size_t i0, size_t i1);

enum { POOL_MAX_CPUS = 1024 };

/* The default thread count: the fast CPUs (pool_fast_cpus) this process may run on, or every
 * CPU it may run on when none can be told apart or none of them is allowed. */
int pool_default_threads(void);

/* The fast CPUs among the online ones (sysfs under root: "" for this machine, a directory
 * prefix in tests): fast[c] = 1 for c < n (n <= POOL_MAX_CPUS). Decided by the first source
 * that tells CPUs apart: Intel's hybrid PMU list of performance cores
 * (/sys/devices/cpu_core/cpus), else the scheduler's cpu_capacity (>= 60% of the largest),
 * else cpufreq's cpuinfo_max_freq (>= 80% of the highest). Returns their count, or 0 when no
 * source tells the online CPUs apart (all alike, or unreadable): then every CPU is fast. */
int pool_fast_cpus(const char *root, int n, unsigned char *fast);

/* n_threads >= 1 (including the caller), capped at the CPUs the process may run on.
 * Returns NULL if threads cannot be created. */
pool *pool_create(int n_threads);
void pool_destroy(pool *p);
int pool_threads(const pool *p);

/* Runs fn over [0, n) in ranges of `grain` items (the last may be shorter) and returns when
 * all are done. p may be NULL or have one thread: then fn runs once, on the caller, over the
 * whole of [0, n). Not reentrant. */
void pool_for(pool *p, size_t n, size_t grain, pool_fn fn, void *ctx);
/* pool_for with chunks that shrink as [0, n) runs out: multiples of grain (the smallest chunk),
 * each a 1 / (threads + 1) share of what is left, so the threads end close together. */
void pool_for_guided(pool *p, size_t n, size_t grain, pool_fn fn, void *ctx);

#endif
