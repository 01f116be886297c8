/* pool.c: the thread pool (see pool.h). A job is published by bumping an atomic generation
 * number; workers spin briefly on it (decode steps issue hundreds of small jobs per token, and
 * a futex wake-up costs more than the job), then yield, then sleep on a condition variable, so
 * a pool with more threads than cores degrades gracefully instead of spinning against itself.
 * Ranges are claimed with an atomic counter; the last worker to finish wakes the caller. */
#include "pool.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

enum { POOL_STACK_BYTES = 4 << 20 }; /* worker stack: 20x what the kernels need, address space only */

enum { SPIN_PAUSES = 2000, SPIN_YIELDS = 200 };

struct pool {
    int n_threads;
    pthread_t *threads; /* (n_threads - 1) workers */
    pthread_mutex_t mu;
    pthread_cond_t wake;
    pthread_cond_t done;
    int sleepers;       /* workers waiting on `wake`, under mu */
    atomic_uint generation;
    atomic_int stop;
    /* The current job: written before generation is bumped (release), read after (acquire). */
    pool_fn fn;
    void *ctx;
    size_t n;
    size_t grain;
    int guided;         /* chunks shrink as the range runs out (pool_for_guided) */
    atomic_size_t next;
    atomic_int busy;    /* workers still inside the current job */
};

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ volatile("yield");
#endif
}

static void work(pool *p)
{
    for (;;) {
        size_t i0, take = p->grain;
        if (p->guided) {
            /* A share of what is left (1 / (threads + 1)), a multiple of the grain: large
             * chunks first, small ones last, so the threads finish close together. Each chunk
             * of a decoding product restarts its weight stream and rebuilds its activation
             * tables: 1 / (threads + 1) makes ~30% fewer chunks than 1 / (2 threads) did
             * (generation within the noise: +1 point of the roofline in two interleaved series,
             * level in one with the order rotated). */
            i0 = atomic_load(&p->next);
            do {
                if (i0 >= p->n)
                    return;
                take = (p->n - i0) / ((size_t)p->n_threads + 1) / p->grain * p->grain;
                if (take < p->grain)
                    take = p->grain;
            } while (!atomic_compare_exchange_weak(&p->next, &i0, i0 + take));
        } else {
            i0 = atomic_fetch_add(&p->next, p->grain);
            if (i0 >= p->n)
                return;
        }
        size_t i1 = p->n - i0 < take ? p->n : i0 + take;
        p->fn(p->ctx, i0, i1);
    }
}

/* Waits until generation differs from seen (or stop); returns the new generation. */
static unsigned wait_job(pool *p, unsigned seen)
{
    for (int i = 0; i < SPIN_PAUSES + SPIN_YIELDS; i++) {
        unsigned g = atomic_load_explicit(&p->generation, memory_order_acquire);
        if (g != seen || atomic_load(&p->stop))
            return g;
        if (i < SPIN_PAUSES)
            cpu_relax();
        else
            sched_yield();
    }
    pthread_mutex_lock(&p->mu);
    p->sleepers++;
    unsigned g;
    while ((g = atomic_load_explicit(&p->generation, memory_order_acquire)) == seen && !atomic_load(&p->stop))
        pthread_cond_wait(&p->wake, &p->mu);
    p->sleepers--;
    pthread_mutex_unlock(&p->mu);
    return g;
}

static void *worker_main(void *arg)
{
    pool *p = arg;
    unsigned seen = 0;
    for (;;) {
        seen = wait_job(p, seen);
        if (atomic_load(&p->stop))
            break;
        work(p);
        if (atomic_fetch_sub(&p->busy, 1) == 1) {
            pthread_mutex_lock(&p->mu);
            pthread_cond_signal(&p->done);
            pthread_mutex_unlock(&p->mu);
        }
    }
    return NULL;
}

/* CPUs this process may run on (its affinity mask), at least 1. */
static int usable_cpus(void)
{
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0 && CPU_COUNT(&set) > 0)
        return CPU_COUNT(&set);
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

pool *pool_create(int n_threads)
{
    if (n_threads < 1)
        n_threads = 1;
    /* More threads than usable CPUs can only take turns, and a spinning waiter then steals the
     * CPU from the thread it waits for: decoding got 1.8x slower with 8 threads on 2 CPUs. The
     * extra threads are not started; results do not depend on the thread count anyway. */
    int cpus = usable_cpus();
    if (n_threads > cpus)
        n_threads = cpus;
    pool *p = calloc(1, sizeof *p);
    if (!p)
        return NULL;
    p->n_threads = n_threads;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->wake, NULL);
    pthread_cond_init(&p->done, NULL);
    if (n_threads > 1) {
        p->threads = calloc((size_t)n_threads - 1, sizeof *p->threads);
        if (!p->threads) {
            p->n_threads = 1;
            pool_destroy(p);
            return NULL;
        }
        /* Kernels keep their packed tiles on the stack (up to ~200 KB, kernels.h); a libc whose
         * default thread stack is small (musl: 128 KB) must not decide whether they fit. */
        pthread_attr_t attr;
        int attr_ok = pthread_attr_init(&attr) == 0;
        if (attr_ok)
            pthread_attr_setstacksize(&attr, (size_t)POOL_STACK_BYTES);
        for (int i = 0; i < n_threads - 1; i++)
            if (pthread_create(&p->threads[i], attr_ok ? &attr : NULL, worker_main, p)) {
                if (attr_ok)
                    pthread_attr_destroy(&attr);
                p->n_threads = i + 1; /* destroy joins only the started ones */
                pool_destroy(p);
                return NULL;
            }
        if (attr_ok)
            pthread_attr_destroy(&attr);
    }
    return p;
}

void pool_destroy(pool *p)
{
    if (!p)
        return;
    pthread_mutex_lock(&p->mu);
    atomic_store(&p->stop, 1);
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->mu);
    for (int i = 0; p->threads && i < p->n_threads - 1; i++)
        pthread_join(p->threads[i], NULL);
    free(p->threads);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->wake);
    pthread_cond_destroy(&p->done);
    free(p);
}

int pool_threads(const pool *p) { return p ? p->n_threads : 1; }

static void pool_run(pool *p, size_t n, size_t grain, int guided, pool_fn fn, void *ctx);

void pool_for(pool *p, size_t n, size_t grain, pool_fn fn, void *ctx)
{
    pool_run(p, n, grain, 0, fn, ctx);
}

void pool_for_guided(pool *p, size_t n, size_t grain, pool_fn fn, void *ctx)
{
    pool_run(p, n, grain, 1, fn, ctx);
}

static void pool_run(pool *p, size_t n, size_t grain, int guided, pool_fn fn, void *ctx)
{
    if (grain == 0)
        grain = 1;
    if (!p || p->n_threads == 1 || n <= grain) {
        /* One call over the whole range: a kernel then streams it as one sequence (a decoding
         * product cut into 16-row calls restarted its weight prefetch at every cut: one thread
         * generated at 54% of its read bandwidth instead of 90%). */
        if (n)
            fn(ctx, 0, n);
        return;
    }
    p->fn = fn;
    p->ctx = ctx;
    p->n = n;
    p->grain = grain;
    p->guided = guided;
    atomic_store(&p->next, 0);
    atomic_store(&p->busy, p->n_threads - 1);
    atomic_fetch_add_explicit(&p->generation, 1, memory_order_release);
    /* Sleepers check the generation under the mutex before waiting: no lost wake-up. */
    pthread_mutex_lock(&p->mu);
    if (p->sleepers)
        pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->mu);
    work(p);
    for (int i = 0; i < SPIN_PAUSES && atomic_load(&p->busy) > 0; i++)
        cpu_relax();
    if (atomic_load(&p->busy) > 0) {
        pthread_mutex_lock(&p->mu);
        while (atomic_load(&p->busy) > 0)
            pthread_cond_wait(&p->done, &p->mu);
        pthread_mutex_unlock(&p->mu);
    }
}

int pool_default_threads(void)
{
    long online = sysconf(_SC_NPROCESSORS_ONLN);
    if (online < 1)
        online = 1;
    if (online > 1024)
        online = 1024;
    long best = 0;
    int n_best = 0;
    for (long cpu = 0; cpu < online; cpu++) {
        char path[96];
        snprintf(path, sizeof path, "/sys/devices/system/cpu/cpu%ld/cpufreq/cpuinfo_max_freq", cpu);
        FILE *f = fopen(path, "r");
        long khz = 0;
        if (!f)
            return (int)online;
        int ok = fscanf(f, "%ld", &khz) == 1;
        fclose(f);
        if (!ok)
            return (int)online;
        if (khz > best) {
            best = khz;
            n_best = 1;
        } else if (khz == best) {
            n_best++;
        }
    }
    return n_best > 0 ? n_best : (int)online;
}
