/*
 * cli.h - shared pieces of the `sabio` command: option parsing helpers and
 * fatal-error reporting. The commands are thin callers of libsabio.
 */
#ifndef SB_CLI_H
#define SB_CLI_H

#include "base/base.h"
#include "model/sample.h"
#include "model/model.h"

#include <stdio.h>

/* Prints "sabio: <message>" to stderr and exits 1. */
void cli_die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

/* Argument cursor: cli_value() returns the value of the option at argv[*i]
 * ("--temp 0.5" or "--temp=0.5"), advancing *i; dies with a message if absent. */
const char *cli_value(int argc, char **argv, int *i);
/* True if argv[*i] is the option named by any of the names ("-n", "--n-predict"). */
bool cli_is(const char *arg, const char *names);
long cli_long(const char *opt, const char *v, long lo, long hi);
double cli_double(const char *opt, const char *v, double lo, double hi);

/* Sampling and generation flags common to generate, chat and (later) ask:
 * --temp --top-k --top-p --min-p --repeat-penalty --repeat-last-n -s/--seed.
 * Returns true if argv[*i] was one of them (consuming its value). */
bool cli_parse_sampling(int argc, char **argv, int *i, sb_sampler_params *p);
extern const char cli_sampling_help[];

/* LoRA adapters given with --lora FILE / --lora-scaled FILE SCALE (llama.cpp's
 * flags); loaded and attached to a context, freed at exit. */
typedef struct cli_adapters {
    const char *path[8];
    float scale[8];
    int n;
} cli_adapters;
bool cli_parse_lora(int argc, char **argv, int *i, cli_adapters *a);
struct sb_model;
struct sb_ctx;
void cli_adapters_attach(const cli_adapters *a, const struct sb_model *m, struct sb_ctx *c);

int cmd_info(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);
int cmd_generate(int argc, char **argv);
int cmd_chat(int argc, char **argv);
int cmd_convert(int argc, char **argv);
int cmd_quantize(int argc, char **argv);
int cmd_embed(int argc, char **argv);
int cmd_ingest(int argc, char **argv);
int cmd_search(int argc, char **argv);
int cmd_docs(int argc, char **argv);
int cmd_ask(int argc, char **argv);
int cmd_tune(int argc, char **argv);
int cmd_merge(int argc, char **argv);
int cmd_serve(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_pull(int argc, char **argv);

/* -nr, --no-repack (llama.cpp's name): the inference commands repack the
 * model's weights for this CPU (sb_model_repack) unless it is given. */
#define CLI_REPACK_HELP "  -nr, --no-repack       keep the file's weight layout (default: repack Q4_0 for this CPU's kernels)\n"
/* sb_model_repack, dying with a message naming path on error. */
void cli_repack(sb_model *m, const char *path);

/* The identity of an embedding model recorded in a store: its folder's name. */
char *cli_model_id(const char *path);

#endif
