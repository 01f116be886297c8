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
#include <string.h>
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

/* The text of a small sysfs file root/rel (whitespace trimmed) in buf; 0, or -1 if unreadable. */
static int read_sysfs(const char *root, const char *rel, char *buf, size_t cap)
{
    char path[512];
    snprintf(path, sizeof path, "%s%s", root, rel);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    size_t n = fread(buf, 1, cap - 1, f);
    fclose(f);
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == ' '))
        n--;
    buf[n] = 0;
    return n > 0 ? 0 : -1;
}

/* Parses a kernel CPU list ("0-3,8,10-11") into set[0:n] (CPUs >= n ignored); -1 if malformed. */
static int parse_cpulist(const char *s, unsigned char *set, int n)
{
    while (*s) {
        char *end;
        long a = strtol(s, &end, 10), b = a;
        if (end == s || a < 0)
            return -1;
        s = end;
        if (*s == '-') {
            b = strtol(s + 1, &end, 10);
            if (end == s + 1 || b < a)
                return -1;
            s = end;
        }
        for (long c = a; c <= b && c < n; c++)
            set[c] = 1;
        if (*s == ',')
            s++;
        else if (*s)
            return -1;
    }
    return 0;
}

/* values[c] = the integer in root/sys/devices/system/cpu/cpu<c>/<leaf> for each CPU c in
 * online; 0 if every one was read, -1 otherwise. */
static int read_per_cpu(const char *root, const char *leaf, const unsigned char *online, int n, long *values)
{
    for (int c = 0; c < n; c++) {
        if (!online[c])
            continue;
        char rel[128], buf[32], *end;
        snprintf(rel, sizeof rel, "/sys/devices/system/cpu/cpu%d/%s", c, leaf);
        if (read_sysfs(root, rel, buf, sizeof buf))
            return -1;
        values[c] = strtol(buf, &end, 10);
        if (end == buf || *end || values[c] <= 0 || values[c] > (1L << 40)) /* x 100 must not overflow */
            return -1;
    }
    return 0;
}

/* fast[c] = 1 for the online CPUs c with values[c] >= pct % of the largest; their count, or 0
 * when all online CPUs have the same value (nothing to tell apart). */
static int keep_fastest(const long *values, const unsigned char *online, int n, int pct, unsigned char *fast)
{
    long best = 0, worst = 0;
    for (int c = 0; c < n; c++)
        if (online[c]) {
            best = values[c] > best ? values[c] : best;
            worst = !worst || values[c] < worst ? values[c] : worst;
        }
    if (best == worst)
        return 0;
    int count = 0;
    for (int c = 0; c < n; c++) {
        fast[c] = online[c] && values[c] * 100 >= best * pct;
        count += fast[c];
    }
    return count;
}

int pool_fast_cpus(const char *root, int n, unsigned char *fast)
{
    unsigned char online[POOL_MAX_CPUS] = {0};
    long values[POOL_MAX_CPUS];
    char buf[4096];
    if (n > POOL_MAX_CPUS)
        n = POOL_MAX_CPUS;
    for (int c = 0; c < n; c++)
        fast[c] = 0;
    if (read_sysfs(root, "/sys/devices/system/cpu/online", buf, sizeof buf) || parse_cpulist(buf, online, n))
        return 0;
    /* Intel hybrid CPUs: the kernel's PMU lists the performance cores itself. */
    if (!read_sysfs(root, "/sys/devices/cpu_core/cpus", buf, sizeof buf) && !parse_cpulist(buf, fast, n)) {
        int count = 0;
        for (int c = 0; c < n; c++) {
            fast[c] &= online[c];
            count += fast[c];
        }
        if (count)
            return count;
    }
    /* The scheduler's capacity (arm64: core type x frequency from the device tree; the same 1024
     * everywhere when unknown): a LITTLE core has a third to a half of a big one's. */
    int count = 0;
    if (!read_per_cpu(root, "cpu_capacity", online, n, values))
        count = keep_fastest(values, online, n, 60, fast);
    /* Maximum frequencies: LITTLE cores run at 55-75% of the fastest core's, the big cores of a
     * phone beside a prime core at 82-95%. */
    if (!count && !read_per_cpu(root, "cpufreq/cpuinfo_max_freq", online, n, values))
        count = keep_fastest(values, online, n, 80, fast);
    if (!count)
        memset(fast, 0, (size_t)n);
    return count;
}

int pool_default_threads(void)
{
    unsigned char fast[POOL_MAX_CPUS];
    int n_fast = pool_fast_cpus("", POOL_MAX_CPUS, fast);
    cpu_set_t set;
    int have_set = sched_getaffinity(0, sizeof set, &set) == 0 && CPU_COUNT(&set) > 0;
    if (n_fast && have_set) {
        /* Only the fast CPUs this process may run on; all it may run on if none of them. */
        int n = 0;
        for (int c = 0; c < POOL_MAX_CPUS && c < CPU_SETSIZE; c++)
            n += fast[c] && CPU_ISSET(c, &set);
        return n ? n : CPU_COUNT(&set);
    }
    return n_fast ? n_fast : usable_cpus();
}
