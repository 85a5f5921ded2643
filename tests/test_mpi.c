/*
 * test_mpi.c - data-parallel tuning (train/dist.h) on the tiny random Phi-3
 * of tests/data/tiny_phi3_4k:
 *   - 20 AdamW steps with `mpirun -np 2` give the adapter of the same 20
 *     steps in one process (same global batch), within 1e-5 relative;
 *   - a 2-rank run stopped after step 10 and resumed in one process ends at
 *     the same adapter (checkpoints do not depend on the rank count);
 *   - without MPI in the build, a process started as one of several ranks
 *     is refused with a message naming what is missing.
 * The program runs itself under mpirun as the worker (`--worker DIR STOP`).
 * Skips clearly where there is no mpirun or no MPI in this build.
 */
#include "test.h"

#include <stdint.h>
#include <unistd.h>

#include "model/model.h"
#include "train/adapter.h"
#include "train/dist.h"
#include "train/tune.h"

#define MODEL "tests/data/tiny_phi3_4k"
#define STEPS 20

/* 16 examples of 12..27 random tokens; the second half of each is "the
 * assistant's" (has targets). Drawn from a fixed counter stream. */
static sb_dataset *make_data(void) {
    enum { N = 16 };
    sb_dataset *d = sb_calloc(1, sizeof *d);
    d->n = N;
    d->offset = sb_calloc(N + 1, sizeof(int64_t));
    for (int i = 0; i < N; i++) d->offset[i + 1] = d->offset[i] + 12 + (int64_t)(sb_rng_at(7, (uint64_t)i) % 16);
    const int64_t T = d->offset[N];
    d->tokens = sb_calloc((size_t)T, sizeof(int32_t));
    d->targets = sb_calloc((size_t)T, sizeof(int32_t));
    for (int64_t t = 0; t < T; t++) d->tokens[t] = (int32_t)(sb_rng_at(11, (uint64_t)t) % 512);
    for (int i = 0; i < N; i++) {
        const int64_t a = d->offset[i], b = d->offset[i + 1], mid = (a + b) / 2;
        for (int64_t t = a; t < b; t++) {
            d->targets[t] = t >= mid && t + 1 < b ? d->tokens[t + 1] : -1;
            d->n_target_total += d->targets[t] >= 0;
        }
    }
    d->n_lines = N;
    return d;
}

static sb_tune_opts opts(const char *dir) {
    sb_tune_opts o = sb_tune_opts_default();
    o.lora.dropout = 0; /* masks are drawn per micro-batch, which the rank split changes */
    o.lora.r = 4;
    o.lr = 1e-2f;
    o.steps = STEPS;
    o.batch = 4; /* one micro-batch of 4 in one process, 2 + 2 on two ranks */
    o.grad_accum = 1;
    o.warmup = 2;
    o.max_len = 32;
    o.threads = 1;
    o.seed = 3;
    o.save_every = 1;
    o.out_dir = dir;
    return o;
}

typedef struct stop_at {
    int64_t step;
} stop_at;

/* Ends the process after the checkpoint of step `step` is written: the
 * progress call comes before that step's checkpoint, so stop at the next. */
static void on_step(const sb_step_log *s, int64_t total, double eta, void *user) {
    (void)total, (void)eta;
    const stop_at *st = user;
    if (st->step > 0 && s->step == st->step + 1) _exit(3);
}

static int run(const char *dir, int64_t stop, bool resume, const sb_dist *dist) {
    sb_err err = {0};
    sb_model *m = sb_model_open(MODEL, &err);
    if (!m) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    sb_dataset *d = make_data();
    sb_tune_opts o = opts(dir);
    o.resume = resume;
    o.dist = dist;
    stop_at st = {stop};
    sb_status s = sb_tune(m, d, NULL, &o, on_step, &st, &err);
    if (s != SB_OK) fprintf(stderr, "tune: %s\n", err.msg);
    sb_dataset_free(d);
    sb_model_free(m);
    return s == SB_OK ? 0 : 1;
}

/* ||a - b|| / ||a|| over the two adapters' parameters, and the worst element
 * relative to the largest |a|. */
static void compare(const char *dir_a, const char *dir_b, const char *what) {
    sb_err err = {0};
    sb_model *m = sb_model_open(MODEL, &err);
    CHECK(m != NULL, "%s", err.msg);
    if (!m) return;
    char *pa = sb_path_join(dir_a, "adapter_model.safetensors"), *pb = sb_path_join(dir_b, "adapter_model.safetensors");
    sb_lora *a = sb_lora_load(m, pa, &err);
    CHECK(a != NULL, "%s: %s", what, err.msg);
    sb_lora *b = a ? sb_lora_load(m, pb, &err) : NULL;
    CHECK(b != NULL, "%s: %s", what, err.msg);
    if (a && b) {
        CHECK(a->n_params == b->n_params, "%s: %zu vs %zu parameters", what, a->n_params, b->n_params);
        double num = 0, den = 0, amax = 0, dmax = 0;
        for (size_t i = 0; i < a->n_params && i < b->n_params; i++) {
            const double x = a->params[i], y = b->params[i];
            num += (x - y) * (x - y), den += x * x;
            amax = fabs(x) > amax ? fabs(x) : amax;
            dmax = fabs(x - y) > dmax ? fabs(x - y) : dmax;
        }
        const double rel = sqrt(num / (den > 0 ? den : 1));
        fprintf(stderr, "%s: relative difference %.3g (worst element %.3g of max |p| %.3g)\n", what, rel, dmax, amax);
        CHECK(den > 0, "%s: the adapter is all zeros", what);
        CHECK(rel <= 1e-5, "%s: relative difference %.3g > 1e-5", what, rel);
    }
    sb_lora_free(a), sb_lora_free(b);
    free(pa), free(pb);
    sb_model_free(m);
}

static int worker(int argc, char **argv) {
    if (argc < 4) return 2;
    sb_dist d;
    sb_err err = {0};
    if (sb_dist_init(&d, &err) != SB_OK) {
        fprintf(stderr, "worker: %s\n", err.msg);
        return 1;
    }
    fprintf(stderr, "worker: rank %d of %d\n", d.rank, d.size);
    int rc = d.size == 2 ? run(argv[2], atol(argv[3]), false, &d) : 1;
    sb_dist_finish(&d);
    return rc;
}

static int mpirun(const char *self, const char *dir, int64_t stop) {
    char cmd[4096];
    /* root in CI containers: OpenMPI asks for both flags; shared memory and self only.
     * OpenMPI itself leaks at exit, which LeakSanitizer would report (make asan). */
    snprintf(cmd, sizeof cmd,
             "ASAN_OPTIONS=detect_leaks=0 OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_btl=self,vader "
             "OMPI_MCA_rmaps_base_oversubscribe=1 mpirun -np 2 '%s' --worker '%s' %lld >'%s.log' 2>&1",
             self, dir, (long long)stop, dir);
    int rc = system(cmd);
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : 128;
}

static void no_mpi_refusal(void) {
    setenv("OMPI_COMM_WORLD_SIZE", "2", 1);
    sb_dist d;
    sb_err err = {0};
    sb_status s = sb_dist_init(&d, &err);
    unsetenv("OMPI_COMM_WORLD_SIZE");
    CHECK(s != SB_OK, "a 2-rank launch without MPI in the build was accepted");
    CHECK(strstr(err.msg, "without MPI") != NULL, "message: %s", err.msg);
}

int main(int argc, char **argv) {
    if (argc > 1 && !strcmp(argv[1], "--worker")) return worker(argc, argv);
    sb_log_set_level(SB_LOG_WARN);

    sb_dist one;
    sb_err err = {0};
    CHECK(sb_dist_init(&one, &err) == SB_OK && one.size == 1 && one.rank == 0, "one process: %s", err.msg);
    /* shares: contiguous, cover everything, sizes differ by at most one */
    for (int size = 1; size <= 5; size++) {
        int64_t next = 0;
        for (int r = 0; r < size; r++) {
            sb_dist d = {r, size, false};
            int64_t b, e;
            sb_dist_share(&d, 13, &b, &e);
            CHECK(b == next && e - b >= 13 / size && e - b <= 13 / size + 1, "share %d/%d: [%lld, %lld)", r, size,
                  (long long)b, (long long)e);
            next = e;
        }
        CHECK(next == 13, "shares of 13 over %d ranks end at %lld", size, (long long)next);
    }
    if (!sb_dist_available()) {
        no_mpi_refusal();
        SKIP("this build has no MPI (libopenmpi-dev): the 2-rank runs are not tested");
        return TEST_END();
    }
    if (system("command -v mpirun >/dev/null 2>&1") != 0) {
        SKIP("no mpirun on PATH (openmpi-bin): the 2-rank runs are not tested");
        return TEST_END();
    }

    char tmp[] = "/tmp/sabio-mpi-XXXXXX";
    CHECK(mkdtemp(tmp) != NULL, "mkdtemp");
    char one_dir[300], two_dir[300], res_dir[300];
    snprintf(one_dir, sizeof one_dir, "%s/one", tmp);
    snprintf(two_dir, sizeof two_dir, "%s/two", tmp);
    snprintf(res_dir, sizeof res_dir, "%s/resumed", tmp);

    double t0 = sb_time_sec();
    CHECK(run(one_dir, 0, false, NULL) == 0, "single-process run");
    double t1 = sb_time_sec();
    int rc = mpirun(argv[0], two_dir, 0);
    double t2 = sb_time_sec();
    CHECK(rc == 0, "mpirun -np 2 exited %d (see %s.log)", rc, two_dir);
    fprintf(stderr, "%d steps: 1 rank %.2f s, 2 ranks %.2f s (incl. mpirun start-up)\n", STEPS, t1 - t0, t2 - t1);
    if (rc == 0) compare(one_dir, two_dir, "1 rank vs 2 ranks");

    /* 2 ranks stopped after step 10 (process exits), then resumed by 1 */
    rc = mpirun(argv[0], res_dir, 10);
    CHECK(rc != 0, "the 2-rank run was meant to stop at step 10");
    char *ck = sb_path_join(res_dir, "checkpoint.bin"), *ad = sb_path_join(res_dir, "adapter_model.safetensors");
    CHECK(sb_file_exists(ck), "no checkpoint after the stop");
    CHECK(!sb_file_exists(ad), "the stopped run wrote a final adapter");
    CHECK(run(res_dir, 0, true, NULL) == 0, "resume in one process");
    compare(one_dir, res_dir, "1 rank vs 2 ranks to step 10 + 1 rank resumed");
    free(ck), free(ad);

    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
    if (t_fail == 0 && getenv("KEEP") == NULL && system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmp);
    return TEST_END();
}
