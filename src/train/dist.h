/*
 * dist.h - data-parallel training across processes: the ranks of an MPI job
 * (`mpirun -np N sabio tune ...`) and the sums that tie their gradients
 * together. MPI (OpenMPI from Debian) is optional at build time: without it
 * there is one rank, and a process that was started by mpirun with more than
 * one rank gets an error saying what is missing instead of N copies of the
 * same run silently overwriting each other's files.
 *
 * Ownership: one sb_dist per process, from sb_dist_init to sb_dist_finish
 * (MPI allows one init per process). The sums are collective: every rank
 * calls them in the same order with the same n.
 */
#ifndef SB_DIST_H
#define SB_DIST_H

#include "base/base.h"

typedef struct sb_dist {
    int rank; /* 0 .. size-1; rank 0 writes files and reports progress */
    int size; /* number of processes (1 without mpirun) */
    bool mpi; /* MPI was initialised (sb_dist_finish finalises it) */
} sb_dist;

/* true if this build has MPI. */
bool sb_dist_available(void);
/* Joins the MPI job this process was started in, or makes a one-rank
 * sb_dist when there is none. Error: started by mpirun with N > 1 ranks
 * and built without MPI. */
sb_status sb_dist_init(sb_dist *d, sb_err *err);
void sb_dist_finish(sb_dist *d);

/* In place: buf[i] = the sum over ranks of buf[i] (every rank gets it). */
sb_status sb_dist_sum_f32(const sb_dist *d, float *buf, size_t n, sb_err *err);
sb_status sb_dist_sum_f64(const sb_dist *d, double *buf, size_t n, sb_err *err);

/* The share [*begin, *end) of n items that rank d->rank takes: contiguous,
 * sizes differing by at most one, in rank order. */
void sb_dist_share(const sb_dist *d, int64_t n, int64_t *begin, int64_t *end);

#endif
