/* pool.c: the thread pool (see pool.h). Workers sleep on a condition variable between jobs;
 * a job is published under the mutex with a generation number, ranges are claimed with an
 * atomic counter, and the last finisher wakes the caller. */
#include "pool.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

struct pool {
    int n_threads;
    pthread_t *threads; /* (n_threads - 1) workers */
    pthread_mutex_t mu;
    pthread_cond_t wake;
    pthread_cond_t done;
    unsigned long generation;
    int stop;
    /* The current job. */
    pool_fn fn;
    void *ctx;
    size_t n;
    size_t grain;
    atomic_size_t next;
    int busy; /* workers still inside the current job */
};

static void work(pool *p)
{
    for (;;) {
        size_t i0 = atomic_fetch_add(&p->next, p->grain);
        if (i0 >= p->n)
            break;
        size_t i1 = p->n - i0 < p->grain ? p->n : i0 + p->grain;
        p->fn(p->ctx, i0, i1);
    }
}

static void *worker_main(void *arg)
{
    pool *p = arg;
    unsigned long seen = 0;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        while (p->generation == seen && !p->stop)
            pthread_cond_wait(&p->wake, &p->mu);
        if (p->stop)
            break;
        seen = p->generation;
        pthread_mutex_unlock(&p->mu);
        work(p);
        pthread_mutex_lock(&p->mu);
        if (--p->busy == 0)
            pthread_cond_signal(&p->done);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

pool *pool_create(int n_threads)
{
    if (n_threads < 1)
        n_threads = 1;
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
            pool_destroy(p);
            return NULL;
        }
        for (int i = 0; i < n_threads - 1; i++)
            if (pthread_create(&p->threads[i], NULL, worker_main, p)) {
                p->n_threads = i + 1; /* destroy joins only the started ones */
                pool_destroy(p);
                return NULL;
            }
    }
    return p;
}

void pool_destroy(pool *p)
{
    if (!p)
        return;
    pthread_mutex_lock(&p->mu);
    p->stop = 1;
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

void pool_for(pool *p, size_t n, size_t grain, pool_fn fn, void *ctx)
{
    if (grain == 0)
        grain = 1;
    if (!p || p->n_threads == 1 || n <= grain) {
        for (size_t i0 = 0; i0 < n; i0 += grain)
            fn(ctx, i0, n - i0 < grain ? n : i0 + grain);
        return;
    }
    pthread_mutex_lock(&p->mu);
    p->fn = fn;
    p->ctx = ctx;
    p->n = n;
    p->grain = grain;
    atomic_store(&p->next, 0);
    p->busy = p->n_threads - 1;
    p->generation++;
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->mu);
    work(p);
    pthread_mutex_lock(&p->mu);
    while (p->busy > 0)
        pthread_cond_wait(&p->done, &p->mu);
    pthread_mutex_unlock(&p->mu);
}
