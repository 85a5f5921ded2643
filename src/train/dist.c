/*
 * dist.c - ranks and gradient sums over MPI, or a single rank (dist.h).
 */
#include "train/dist.h"

#include <limits.h>
#include <stdlib.h>

#ifdef SB_HAVE_MPI
#include <mpi.h>
#endif

/* The rank count the launcher announced to this process (OpenMPI, MPICH and
 * Slurm's PMI each set one of these), 1 if none. */
static int launcher_size(void) {
    static const char *vars[] = {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE"};
    for (size_t i = 0; i < sizeof vars / sizeof *vars; i++) {
        const char *v = getenv(vars[i]);
        if (v && atoi(v) > 0) return atoi(v);
    }
    return 1;
}

void sb_dist_share(const sb_dist *d, int64_t n, int64_t *begin, int64_t *end) {
    const int64_t q = n / d->size, r = n % d->size;
    *begin = d->rank * q + (d->rank < r ? d->rank : r);
    *end = *begin + q + (d->rank < r);
}

#ifdef SB_HAVE_MPI

bool sb_dist_available(void) { return true; }

sb_status sb_dist_init(sb_dist *d, sb_err *err) {
    *d = (sb_dist){0, 1, false};
    /* Only under a launcher: a plain `sabio tune` needs no MPI runtime. */
    if (launcher_size() <= 1) return SB_OK;
    int ok = 0;
    MPI_Initialized(&ok);
    if (!ok && MPI_Init(NULL, NULL) != MPI_SUCCESS) return sb_err_set(err, SB_ERR_IO, "MPI_Init failed");
    d->mpi = true;
    MPI_Comm_rank(MPI_COMM_WORLD, &d->rank);
    MPI_Comm_size(MPI_COMM_WORLD, &d->size);
    return SB_OK;
}

void sb_dist_finish(sb_dist *d) {
    if (d->mpi) MPI_Finalize();
    d->mpi = false;
}

/* MPI counts are ints: large buffers go in pieces. */
static sb_status sum(const sb_dist *d, void *buf, size_t n, size_t elt, MPI_Datatype t, sb_err *err) {
    if (d->size <= 1) return SB_OK;
    for (size_t at = 0; at < n;) {
        const size_t k = n - at < (size_t)INT_MAX ? n - at : (size_t)INT_MAX;
        if (MPI_Allreduce(MPI_IN_PLACE, (char *)buf + at * elt, (int)k, t, MPI_SUM, MPI_COMM_WORLD) != MPI_SUCCESS)
            return sb_err_set(err, SB_ERR_IO, "MPI_Allreduce of %zu values failed", k);
        at += k;
    }
    return SB_OK;
}

sb_status sb_dist_sum_f32(const sb_dist *d, float *buf, size_t n, sb_err *err) {
    return sum(d, buf, n, sizeof *buf, MPI_FLOAT, err);
}
sb_status sb_dist_sum_f64(const sb_dist *d, double *buf, size_t n, sb_err *err) {
    return sum(d, buf, n, sizeof *buf, MPI_DOUBLE, err);
}

#else /* no MPI in this build */

bool sb_dist_available(void) { return false; }

sb_status sb_dist_init(sb_dist *d, sb_err *err) {
    *d = (sb_dist){0, 1, false};
    const int n = launcher_size();
    if (n > 1)
        return sb_err_set(err, SB_ERR_INVALID,
                          "started as one of %d MPI ranks, but this sabio was built without MPI "
                          "(install libopenmpi-dev, then rebuild: make clean && make)",
                          n);
    return SB_OK;
}

void sb_dist_finish(sb_dist *d) { (void)d; }

sb_status sb_dist_sum_f32(const sb_dist *d, float *buf, size_t n, sb_err *err) {
    (void)d, (void)buf, (void)n, (void)err;
    return SB_OK;
}
sb_status sb_dist_sum_f64(const sb_dist *d, double *buf, size_t n, sb_err *err) {
    (void)d, (void)buf, (void)n, (void)err;
    return SB_OK;
}

#endif
