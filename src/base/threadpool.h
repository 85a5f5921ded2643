/*
 * threadpool.h - a small persistent pool of worker threads for the kernels.
 *
 * sb_pool_run(pool, fn, arg) calls fn(arg, ith, nth) on every thread of the
 * pool, the caller's included (ith = 0), and returns when all are done. The
 * workers sleep on a condition variable between runs. A NULL pool, or a pool
 * of one thread, runs fn(arg, 0, 1) inline.
 */
#ifndef SB_THREADPOOL_H
#define SB_THREADPOOL_H

typedef struct sb_pool sb_pool;

/* n_threads <= 0: the number of online CPUs. NULL on failure. */
sb_pool *sb_pool_new(int n_threads);
void sb_pool_free(sb_pool *p);
int sb_pool_size(const sb_pool *p);
void sb_pool_run(sb_pool *p, void (*fn)(void *arg, int ith, int nth), void *arg);

#endif
