# sabio - one Makefile. `make` builds libsabio and the `sabio` command;
# `make test` builds and runs the test suite; `make asan` runs it under
# AddressSanitizer + UBSan; `make fuzz` builds the libFuzzer targets
# (clang); `make bench` runs the benchmarks.
#
# Sources are found by wildcard: src/<layer>/*.c go into libsabio,
# tests/test_*.c are one test program each, fuzz/fuzz_*.c one fuzz target each.
# Kernel files named *_avx2.c / *_avx512.c get their -m flags here, so the
# binary itself runs on any x86-64 and dispatches at run time.

B        ?= build
CC       ?= cc
OPT      ?= -O2
PKGS     := jansson libutf8proc libpcre2-8 openblas sqlite3 gumbo poppler-glib libmicrohttpd libcurl libcrypto
CFLAGS   := -std=c11 -D_GNU_SOURCE $(OPT) -g -Wall -Wextra -Wno-unused-parameter \
            -Wshadow -Wno-missing-field-initializers -fno-strict-aliasing \
            -Iinclude -Isrc $(shell pkg-config --cflags $(PKGS)) $(EXTRA_CFLAGS)
LDLIBS   := $(shell pkg-config --libs $(PKGS)) -lm -lpthread $(EXTRA_LDFLAGS)
# Optional: MPI (OpenMPI) for data-parallel `mpirun -np N sabio tune`.
# Without it sabio builds and trains in one process.
ifeq ($(shell pkg-config --exists ompi-c && echo y),y)
CFLAGS   += -DSB_HAVE_MPI $(shell pkg-config --cflags ompi-c)
LDLIBS   += $(shell pkg-config --libs ompi-c)
endif
# Optional: libpq for PostgreSQL stores (`--store postgres://...`).
# Without it sabio builds, and such a store says libpq support is missing.
ifeq ($(shell pkg-config --exists libpq && echo y),y)
CFLAGS   += -DSB_HAVE_PQ $(shell pkg-config --cflags libpq)
LDLIBS   += $(shell pkg-config --libs libpq)
endif

LAYERS   := base tensor formats text model train rag
LIB_SRC  := $(foreach l,$(LAYERS),$(wildcard src/$(l)/*.c))
LIB_OBJ  := $(LIB_SRC:%.c=$(B)/%.o)
CLI_SRC  := $(wildcard src/cli/*.c)
CLI_OBJ  := $(CLI_SRC:%.c=$(B)/%.o)
# the HTTP server (app layer beside the CLI); its web page is compiled in from www/
SERVE_SRC := $(wildcard src/serve/*.c)
SERVE_OBJ := $(SERVE_SRC:%.c=$(B)/%.o) $(B)/src/serve/www.o
WWW      := $(sort $(wildcard src/serve/www/*))
TEST_SRC := $(wildcard tests/test_*.c)
TEST_BIN := $(TEST_SRC:tests/%.c=$(B)/tests/%)
FUZZ_SRC := $(wildcard fuzz/fuzz_*.c)
HDRS     := $(wildcard include/*.h src/*/*.h)

.PHONY: all test asan fuzz bench clean demo
all: $(B)/sabio $(B)/libsabio.a

$(B)/%_avx2.o: EXTRA_ARCH := -mavx2 -mfma -mf16c
$(B)/%_avx512.o: EXTRA_ARCH := -mavx512f -mavx512bw -mavx512vl -mavx512dq -mavx512vnni -mavx512bf16 -mfma -mf16c

$(B)/%.o: %.c $(HDRS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(EXTRA_ARCH) -c $< -o $@

$(B)/libsabio.a: $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(B)/libserve.a: $(SERVE_OBJ)
	@rm -f $@
	ar rcs $@ $^

# www.c: each file of src/serve/www as a byte array (xxd), and the table of them
$(B)/src/serve/www.c: $(WWW) Makefile
	@mkdir -p $(dir $@)
	@{ echo '#include "serve/www.h"'; \
	  for f in $(WWW); do n=$$(basename $$f | tr -c 'a-zA-Z0-9\n' _); \
	    echo "static const unsigned char $$n[] = {"; xxd -i <$$f; echo ', 0};'; done; \
	  echo 'const sv_asset sv_assets[] = {'; \
	  for f in $(WWW); do n=$$(basename $$f | tr -c 'a-zA-Z0-9\n' _); \
	    echo "    {\"/$$(basename $$f)\", $$n, sizeof $$n - 1},"; done; \
	  echo '    {0}};'; } >$@.tmp && mv $@.tmp $@
$(B)/src/serve/www.o: $(B)/src/serve/www.c src/serve/www.h
	$(CC) $(CFLAGS) -c $< -o $@

$(B)/sabio: $(CLI_OBJ) $(B)/libserve.a $(B)/libsabio.a
	$(CC) $(CFLAGS) -o $@ $(CLI_OBJ) $(B)/libserve.a $(B)/libsabio.a $(LDLIBS)

$(B)/tests/%: tests/%.c tests/test.h $(B)/libsabio.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Itests -o $@ $< $(B)/libsabio.a $(LDLIBS)

# The test command of the README and of CI (beside a throwaway PostgreSQL server: tests/with_pg).
test: $(B)/sabio $(TEST_BIN)
	@SABIO=$(B)/sabio tests/with_pg tests/run $(TEST_BIN)

ASAN := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
asan:
	$(MAKE) B=build-asan OPT=-O1 EXTRA_CFLAGS="$(ASAN)" EXTRA_LDFLAGS="$(ASAN)" test

# libFuzzer targets: build/fuzz/fuzz_X. Run one: build-fuzz/fuzz_gguf -max_total_time=600 corpus/
FUZZ_CFLAGS := -fsanitize=fuzzer-no-link,address,undefined -fno-omit-frame-pointer
fuzz:
	$(MAKE) B=build-fuzz CC=clang OPT=-O1 EXTRA_CFLAGS="$(FUZZ_CFLAGS)" build-fuzz/libsabio.a build-fuzz/libserve.a
	@mkdir -p build-fuzz/fuzz
	for f in $(FUZZ_SRC); do n=$$(basename $$f .c); \
	  clang -std=c11 -D_GNU_SOURCE -O1 -g -Iinclude -Isrc -fsanitize=fuzzer,address,undefined \
	    -o build-fuzz/fuzz/$$n $$f build-fuzz/libserve.a build-fuzz/libsabio.a $(LDLIBS) || exit 1; done

BENCH_SRC := $(wildcard bench/*.c)
BENCH_BIN := $(BENCH_SRC:bench/%.c=$(B)/bench/%)
$(B)/bench/%: bench/%.c $(B)/libsabio.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $< $(B)/libsabio.a $(LDLIBS)

# bench/ann: our HNSW against hnswlib (header-only C++, built for this CPU, its best case)
CXX ?= c++
BENCH_BIN += $(B)/bench/ann
$(B)/bench/ann: bench/ann_hnswlib.cpp $(B)/libsabio.a $(HDRS)
	@mkdir -p $(dir $@)
	$(CXX) -std=c++17 -O3 -march=native -g -Iinclude -Isrc -o $@ $< $(B)/libsabio.a $(LDLIBS)

bench: $(B)/sabio $(BENCH_BIN)
	bench/run

# The main job in one command: fetch the default models if missing, ingest the
# sample company documents in examples/company, ask a question, print the
# answer with its sources.
DEMO_Q ?= How many days of paid vacation do employees get?
demo: $(B)/sabio
	@[ -f models/SmolLM2-135M-Instruct.Q4_1.gguf ] && [ -d models/all-MiniLM-L6-v2 ] || scripts/setup
	$(B)/sabio ingest --store $(B)/demo-store examples/company
	$(B)/sabio ask --store $(B)/demo-store -m models/SmolLM2-135M-Instruct.Q4_1.gguf -k 3 "$(DEMO_Q)"

clean:
	rm -rf build build-asan build-fuzz
