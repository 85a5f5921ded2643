/*
 * test.h - the few macros every test program uses. A test program runs its
 * checks, prints "<name>: N passed, N failed[, N skipped]" and exits non-zero
 * if anything failed; tests/run adds the programs' counts up.
 *
 *   CHECK(cond, "fmt", ...)    one check; on failure prints file:line and why
 *   SKIP("why")                records a skipped check with its reason
 *   return TEST_END();         at the end of main
 */
#ifndef SB_TEST_H
#define SB_TEST_H

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int t_pass, t_fail, t_skip;

#define CHECK(cond, ...)                                                        \
    do {                                                                        \
        if (cond) {                                                             \
            t_pass++;                                                           \
        } else {                                                                \
            t_fail++;                                                           \
            fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);     \
            fprintf(stderr, __VA_ARGS__);                                       \
            fputc('\n', stderr);                                                \
        }                                                                       \
    } while (0)

#define SKIP(...)                                                               \
    do {                                                                        \
        t_skip++;                                                               \
        fprintf(stderr, "SKIP %s:%d: ", __FILE__, __LINE__);                    \
        fprintf(stderr, __VA_ARGS__);                                           \
        fputc('\n', stderr);                                                    \
    } while (0)

/* xorshift64, the random test data of the kernel tests (each file keeps its own state) */
static inline uint64_t test_xorshift(uint64_t *s) {
    *s ^= *s << 13, *s ^= *s >> 7, *s ^= *s << 17;
    return *s;
}
/* uniform in [-1, 1) from the top 53 bits of the next draw */
static inline float test_frand(uint64_t *s) {
    return (float)((double)(test_xorshift(s) >> 11) / 9007199254740992.0 * 2.0 - 1.0);
}

static inline int test_end(const char *file) {
    const char *name = strrchr(file, '/');
    printf("%s: %d passed, %d failed, %d skipped\n", name ? name + 1 : file, t_pass, t_fail,
           t_skip);
    return t_fail ? 1 : 0;
}
#define TEST_END() test_end(__FILE__)

/* Folder of the shared test assets: $SABIO_ASSETS or ../shared/assets. */
static inline const char *test_assets(void) {
    const char *a = getenv("SABIO_ASSETS");
    return a && *a ? a : "../shared/assets";
}

#endif
