/*
 * cmd_info.c - `sabio info MODEL`: what a GGUF or safetensors model holds.
 */
#include "cli/cli.h"
#include "formats/gguf.h"
#include "formats/safetensors.h"

#include <stdlib.h>
#include <string.h>

static void print_str(const char *p, uint64_t len, size_t max) {
    putchar('"');
    for (uint64_t i = 0; i < len && i < max; i++) {
        unsigned char c = (unsigned char)p[i];
        if (c == '\n') fputs("\\n", stdout);
        else if (c == '"' || c == '\\') printf("\\%c", c);
        else if (c < 0x20) printf("\\x%02x", c);
        else putchar(c);
    }
    if (len > max) printf("...(%llu bytes)", (unsigned long long)len);
    putchar('"');
}

static void print_value(const sb_gguf_value *v) {
    switch (v->type) {
    case SB_GGUF_STRING: print_str(v->str.ptr, v->str.len, 120); break;
    case SB_GGUF_BOOL: fputs(v->u64 ? "true" : "false", stdout); break;
    case SB_GGUF_FLOAT32:
    case SB_GGUF_FLOAT64: printf("%g", v->f64); break;
    case SB_GGUF_INT8:
    case SB_GGUF_INT16:
    case SB_GGUF_INT32:
    case SB_GGUF_INT64: printf("%lld", (long long)v->i64); break;
    case SB_GGUF_ARRAY: {
        printf("[%s x %llu]", sb_gguf_type_name(v->arr.type), (unsigned long long)v->arr.n);
        uint64_t show = v->arr.n < 4 ? v->arr.n : 4;
        fputs(" ", stdout);
        for (uint64_t i = 0; i < show; i++) {
            if (i) fputs(", ", stdout);
            if (v->arr.items) print_value(&v->arr.items[i]);
            else if (v->arr.type == SB_GGUF_FLOAT32 || v->arr.type == SB_GGUF_FLOAT64) {
                double d;
                if (sb_gguf_arr_float(v, i, &d)) printf("%g", d);
            } else {
                int64_t x;
                if (sb_gguf_arr_int(v, i, &x)) printf("%lld", (long long)x);
            }
        }
        if (v->arr.n > show) fputs(", ...", stdout);
        break;
    }
    default: printf("%llu", (unsigned long long)v->u64); break;
    }
}

static void print_tensor(const sb_tensor *t, size_t *total) {
    printf("  %-40s %-6s [", t->name, sb_dtype_name(t->type));
    for (int d = 0; d < (t->n_dims ? t->n_dims : 1); d++) printf(d ? ", %lld" : "%lld", (long long)t->ne[d]);
    printf("] %.2f MiB\n", t->nbytes / 1048576.0);
    *total += t->nbytes;
}

static int info_gguf(const char *path) {
    sb_err err = {0};
    sb_gguf *g = sb_gguf_open(path, &err);
    if (!g) cli_die("%s", err.msg);
    printf("%s: GGUF v%u, %lld key/values, %lld tensors, alignment %zu\n", path, sb_gguf_version(g),
           (long long)sb_gguf_n_kv(g), (long long)sb_gguf_n_tensors(g), sb_gguf_alignment(g));
    for (int64_t i = 0; i < sb_gguf_n_kv(g); i++) {
        printf("  %-44s ", sb_gguf_key(g, i));
        print_value(sb_gguf_value_at(g, i));
        putchar('\n');
    }
    printf("tensors:\n");
    size_t total = 0;
    for (int64_t i = 0; i < sb_gguf_n_tensors(g); i++) {
        sb_tensor t;
        if (sb_gguf_tensor(g, i, &t)) print_tensor(&t, &total);
    }
    printf("total tensor data: %.2f MiB\n", total / 1048576.0);
    sb_gguf_free(g);
    return 0;
}

static int info_safetensors(const char *path) {
    sb_err err = {0};
    if (sb_is_dir(path)) {
        char *cfg = sb_path_join(path, "config.json");
        char *text = NULL;
        if (cfg && sb_read_file(cfg, 1 << 20, &text, NULL, &err) == SB_OK) printf("%s:\n%s\n", cfg, text);
        free(text);
        free(cfg);
    }
    sb_safetensors *st = sb_st_open(path, &err);
    if (!st) cli_die("%s", err.msg);
    printf("%s: safetensors, %lld tensors\n", path, (long long)sb_st_n_tensors(st));
    size_t total = 0;
    for (int64_t i = 0; i < sb_st_n_tensors(st); i++) {
        sb_tensor t;
        if (sb_st_tensor(st, i, &t)) print_tensor(&t, &total);
    }
    printf("total tensor data: %.2f MiB\n", total / 1048576.0);
    sb_st_free(st);
    return 0;
}

int cmd_info(int argc, char **argv) {
    if (argc != 2 || cli_is(argv[1], "-h,--help")) {
        fputs("usage: sabio info MODEL\n"
              "  MODEL: a .gguf file, a .safetensors file, or a Hugging Face model folder\n",
              argc == 2 ? stdout : stderr);
        return argc == 2 ? 0 : 1;
    }
    const char *path = argv[1];
    size_t n = strlen(path);
    if (n > 5 && !strcmp(path + n - 5, ".gguf")) return info_gguf(path);
    if (sb_is_dir(path) || (n > 12 && !strcmp(path + n - 12, ".safetensors")) ||
        (n > 5 && !strcmp(path + n - 5, ".json")))
        return info_safetensors(path);
    return info_gguf(path); /* let the reader say what is wrong */
}
