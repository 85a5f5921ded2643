/*
 * threadpool.c - the pool of threadpool.h. A run publishes the task and bumps
 * a generation counter; workers spin briefly on the counter (a decode step
 * issues hundreds of small products, too short for a sleep/wake round trip)
 * and only then sleep on a condition variable. The caller spins until every
 * worker has checked out. Both spins yield the CPU every YIELD_EVERY turns:
 * on an oversubscribed machine a spinner would otherwise burn the time slice
 * the thread it waits for needs (measured: decode 1 t/s instead of 14 with
 * load 20 on 2 cores); on a quiet machine sched_yield returns at once.
 */
#include "base/threadpool.h"

#include <pthread.h>
#include <sched.h>
#include <stdbool.h>
#include <stdlib.h>
#include <unistd.h>

#define SPIN_ITERS 200000 /* ~ tens of microseconds before a worker sleeps */
#define YIELD_EVERY 256

struct sb_pool {
    int n;
    pthread_t *threads;
    pthread_mutex_t mu;
    pthread_cond_t wake;
    unsigned long generation; /* atomic */
    int pending;              /* atomic: workers still running the current task */
    int sleepers;             /* guarded by mu */
    bool quit;                /* atomic */
    void (*fn)(void *arg, int ith, int nth);
    void *arg;
};

typedef struct worker_arg {
    sb_pool *p;
    int ith;
} worker_arg;

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

static void *worker(void *v) {
    worker_arg *wa = v;
    sb_pool *p = wa->p;
    int ith = wa->ith;
    free(wa);
    unsigned long seen = 0;
    for (;;) {
        unsigned long g;
        int spins = 0;
        while ((g = __atomic_load_n(&p->generation, __ATOMIC_ACQUIRE)) == seen &&
               !__atomic_load_n(&p->quit, __ATOMIC_ACQUIRE)) {
            if (++spins < SPIN_ITERS) {
                if (spins % YIELD_EVERY == 0) sched_yield();
                else cpu_relax();
                continue;
            }
            pthread_mutex_lock(&p->mu);
            p->sleepers++;
            while (__atomic_load_n(&p->generation, __ATOMIC_ACQUIRE) == seen &&
                   !__atomic_load_n(&p->quit, __ATOMIC_ACQUIRE))
                pthread_cond_wait(&p->wake, &p->mu);
            p->sleepers--;
            pthread_mutex_unlock(&p->mu);
            spins = 0;
        }
        if (__atomic_load_n(&p->quit, __ATOMIC_ACQUIRE)) return NULL;
        seen = g;
        p->fn(p->arg, ith, p->n);
        __atomic_sub_fetch(&p->pending, 1, __ATOMIC_ACQ_REL);
    }
}

sb_pool *sb_pool_new(int n_threads) {
    if (n_threads <= 0) {
        long c = sysconf(_SC_NPROCESSORS_ONLN);
        n_threads = c > 0 ? (int)c : 1;
    }
    if (n_threads > 256) n_threads = 256;
    sb_pool *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    p->n = 1;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->wake, NULL);
    p->threads = calloc((size_t)n_threads, sizeof *p->threads);
    if (!p->threads) {
        sb_pool_free(p);
        return NULL;
    }
    for (int i = 1; i < n_threads; i++) {
        worker_arg *wa = malloc(sizeof *wa);
        if (!wa) break;
        *wa = (worker_arg){p, i};
        if (pthread_create(&p->threads[i], NULL, worker, wa) != 0) {
            free(wa);
            break; /* run with the threads we have */
        }
        p->n = i + 1;
    }
    return p;
}

void sb_pool_free(sb_pool *p) {
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    __atomic_store_n(&p->quit, true, __ATOMIC_RELEASE);
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->mu);
    for (int i = 1; i < p->n; i++) pthread_join(p->threads[i], NULL);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->wake);
    free(p->threads);
    free(p);
}

int sb_pool_size(const sb_pool *p) { return p ? p->n : 1; }

void sb_pool_run(sb_pool *p, void (*fn)(void *arg, int ith, int nth), void *arg) {
    if (!p || p->n <= 1) {
        fn(arg, 0, 1);
        return;
    }
    p->fn = fn;
    p->arg = arg;
    __atomic_store_n(&p->pending, p->n - 1, __ATOMIC_RELEASE);
    __atomic_add_fetch(&p->generation, 1, __ATOMIC_ACQ_REL);
    pthread_mutex_lock(&p->mu);
    if (p->sleepers) pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->mu);
    fn(arg, 0, p->n);
    for (unsigned spins = 1; __atomic_load_n(&p->pending, __ATOMIC_ACQUIRE) > 0; spins++) {
        if (spins % YIELD_EVERY == 0) sched_yield();
        else cpu_relax();
    }
}
