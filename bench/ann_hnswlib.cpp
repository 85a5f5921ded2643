// bench/ann_hnswlib.cpp - our HNSW (src/rag/hnsw.c) against hnswlib (Debian
// libhnswlib-dev, header-only) in one process, on the same vectors, M,
// efConstruction and build threads: build time, then for each ef the recall@10
// against exact search (gt.ivec from bench/ann_prepare.py) and queries/s
// (one thread, all queries, median of RUNS alternating ours / theirs), and
// queries/s interpolated at equal recall. Each time is taken twice: on the
// wall clock, and as the CPU time of this process (on a shared machine the
// wall clock also counts the time other programs held the cores; the CPU
// time does not, so its ratios are the steadier comparison).
//
// usage: build/bench/ann DIR [M] [EF_CONSTRUCTION] [THREADS] [RUNS]
//   DIR holds base.fvec, query.fvec, gt.ivec (bench/ann_prepare.py)
#include <hnswlib/hnswlib.h>

extern "C" {
#include "rag/hnsw.h"
}

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <string>
#include <thread>
#include <vector>

template <typename T> static std::vector<T> read_mat(const std::string &path, int &n, int &d) {
    FILE *f = fopen(path.c_str(), "rb");
    int hd[2];
    if (!f || fread(hd, 4, 2, f) != 2) {
        fprintf(stderr, "ann: cannot read %s\n", path.c_str());
        exit(1);
    }
    n = hd[0], d = hd[1];
    std::vector<T> v((size_t)n * d);
    if (fread(v.data(), sizeof(T), v.size(), f) != v.size()) {
        fprintf(stderr, "ann: %s is short\n", path.c_str());
        exit(1);
    }
    fclose(f);
    return v;
}

static double now() {
    return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}
static double cpu_now() {
    timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return t.tv_sec + 1e-9 * t.tv_nsec;
}

struct point {
    int ef;
    double recall, qps, qps_cpu;
};

// queries/s at recall target by linear interpolation between sweep points
static double qps_at(const std::vector<point> &c, double target, bool cpu) {
    for (size_t i = 0; i < c.size(); i++) {
        if (c[i].recall < target) continue;
        double y1 = cpu ? c[i].qps_cpu : c[i].qps;
        if (i == 0) return y1;
        double y0 = cpu ? c[i - 1].qps_cpu : c[i - 1].qps;
        double t = (target - c[i - 1].recall) / (c[i].recall - c[i - 1].recall);
        return y0 + t * (y1 - y0);
    }
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s DIR [M] [EF_CONSTRUCTION] [THREADS] [RUNS]\n", argv[0]);
        return 2;
    }
    std::string dir = argv[1];
    int M = argc > 2 ? atoi(argv[2]) : 16, efc = argc > 3 ? atoi(argv[3]) : 200;
    int threads = argc > 4 ? atoi(argv[4]) : 1, runs = argc > 5 ? atoi(argv[5]) : 3;
    const char *type = getenv("ANN_TYPE"); // "i8": our int8 + rerank
    int n, d, nq, dq, ng, k_gt;
    std::vector<float> base = read_mat<float>(dir + "/base.fvec", n, d);
    std::vector<float> query = read_mat<float>(dir + "/query.fvec", nq, dq);
    std::vector<int> gt = read_mat<int>(dir + "/gt.ivec", ng, k_gt);
    if (dq != d || ng != nq || k_gt < 10) {
        fprintf(stderr, "ann: shapes disagree\n");
        return 1;
    }
    const int K = 10;
    printf("ann: %d base vectors of dim %d, %d queries, M=%d efConstruction=%d, build threads %d, query threads 1, "
           "runs %d\n",
           n, d, nq, M, efc, threads, runs);

    // ---- build: ours, then hnswlib ----
    sb_hnsw_params p = {};
    p.M = M;
    p.ef_construction = efc;
    p.metric = SB_METRIC_IP; // the vectors are L2-normalised: hnswlib's InnerProductSpace does the same work
    if (type && !strcmp(type, "i8")) p.type = SB_VEC_I8, p.rerank = true;
    sb_err err = {};
    sb_hnsw *ours = sb_hnsw_new(d, &p, &err);
    std::vector<int64_t> labels(n);
    for (int i = 0; i < n; i++) labels[i] = i;
    double t0 = now(), c0 = cpu_now();
    if (!ours || sb_hnsw_add_batch(ours, labels.data(), base.data(), n, threads, &err) != SB_OK) {
        fprintf(stderr, "ann: %s\n", err.msg);
        return 1;
    }
    double build_ours = now() - t0, build_ours_cpu = cpu_now() - c0;

    hnswlib::InnerProductSpace space(d);
    hnswlib::HierarchicalNSW<float> theirs(&space, n, M, efc, 100);
    t0 = now(), c0 = cpu_now();
    if (threads <= 1) {
        for (int i = 0; i < n; i++) theirs.addPoint(base.data() + (size_t)i * d, i);
    } else { // as hnswlib's python bindings: points taken from a shared counter
        std::atomic<int> next(0);
        std::vector<std::thread> ts;
        for (int t = 0; t < threads; t++)
            ts.emplace_back([&] {
                for (int i; (i = next++) < n;) theirs.addPoint(base.data() + (size_t)i * d, i);
            });
        for (auto &t : ts) t.join();
    }
    double build_theirs = now() - t0, build_theirs_cpu = cpu_now() - c0;
    printf("build (%s): wall sabio %.2f s, hnswlib %.2f s, ratio %.2f; CPU sabio %.2f s, hnswlib %.2f s, ratio %.2f\n",
           p.type == SB_VEC_I8 ? "int8 + F32 rerank" : "F32", build_ours, build_theirs, build_ours / build_theirs,
           build_ours_cpu, build_theirs_cpu, build_ours_cpu / build_theirs_cpu);

    // ---- query sweep ----
    static const int efs[] = {10, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384};
    std::vector<point> cu, ct;
    printf("| ef | recall@10 sabio | recall@10 hnswlib | q/s sabio | q/s hnswlib | ratio | CPU q/s sabio | CPU q/s hnswlib "
           "| ratio |\n|---|---|---|---|---|---|---|---|---|\n");
    std::vector<int64_t> got((size_t)nq * K);
    for (int ef : efs) {
        theirs.setEf(ef);
        std::vector<double> tu, tt, cu_, ct_;
        double rec_u = 0, rec_t = 0;
        for (int r = 0; r < runs; r++) {
            t0 = now(), c0 = cpu_now();
            for (int q = 0; q < nq; q++)
                sb_hnsw_search(ours, query.data() + (size_t)q * d, K, ef, NULL, NULL, got.data() + (size_t)q * K, NULL);
            tu.push_back(now() - t0);
            cu_.push_back(cpu_now() - c0);
            std::vector<std::vector<int>> res(nq);
            t0 = now(), c0 = cpu_now();
            for (int q = 0; q < nq; q++) {
                auto pq = theirs.searchKnn(query.data() + (size_t)q * d, K);
                while (!pq.empty()) {
                    res[q].push_back((int)pq.top().second);
                    pq.pop();
                }
            }
            tt.push_back(now() - t0);
            ct_.push_back(cpu_now() - c0);
            if (r == 0) {
                int hu = 0, ht = 0;
                for (int q = 0; q < nq; q++)
                    for (int j = 0; j < K; j++) {
                        const int *g = gt.data() + (size_t)q * k_gt;
                        hu += std::find(g, g + K, (int)got[(size_t)q * K + j]) != g + K;
                        if (j < (int)res[q].size()) ht += std::find(g, g + K, res[q][j]) != g + K;
                    }
                rec_u = (double)hu / (nq * K);
                rec_t = (double)ht / (nq * K);
            }
        }
        for (auto *v : {&tu, &tt, &cu_, &ct_}) std::sort(v->begin(), v->end());
        double qu = nq / tu[tu.size() / 2], qt = nq / tt[tt.size() / 2];
        double qcu = nq / cu_[cu_.size() / 2], qct = nq / ct_[ct_.size() / 2];
        cu.push_back({ef, rec_u, qu, qcu});
        ct.push_back({ef, rec_t, qt, qct});
        printf("| %d | %.4f | %.4f | %.0f | %.0f | %.2f | %.0f | %.0f | %.2f |\n", ef, rec_u, rec_t, qu, qt, qu / qt, qcu,
               qct, qcu / qct);
    }
    for (double target : {0.90, 0.95, 0.98})
        for (bool cpu : {false, true}) {
            double a = qps_at(cu, target, cpu), b = qps_at(ct, target, cpu);
            if (a > 0 && b > 0)
                printf("at recall@10 %.2f (%s): sabio %.0f q/s, hnswlib %.0f q/s, ratio %.2f\n", target,
                       cpu ? "CPU time" : "wall", a, b, a / b);
            else
                printf("at recall@10 %.2f: not reached (sabio %.0f, hnswlib %.0f)\n", target, a, b);
        }
    sb_hnsw_free(ours);
    return 0;
}
