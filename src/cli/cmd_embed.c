/*
 * cmd_embed.c - `sabio embed -m MODEL [FILE|-]`: one JSON array of floats per
 * input line.
 */
#include "cli/cli.h"
#include "model/encoder.h"

#include <stdlib.h>
#include <math.h>
#include <string.h>

int cmd_embed(int argc, char **argv) {
    const char *model = NULL, *file = NULL, *prompt = NULL, *prefix = "";
    bool normalize = false;
    int dim = 0, threads = 0;
    for (int i = 1; i < argc; i++) {
        if (cli_is(argv[i], "-h,--help")) {
            printf("usage: sabio embed -m MODEL [FILE|-] [options]\n"
                   "Embeds each line of FILE (default: standard input), printing one JSON array per line.\n\n"
                   "  -m, --model DIR      sentence-transformers / Hugging Face BERT folder\n"
                   "  -p, --prompt TEXT    embed TEXT instead of reading lines\n"
                   "  --normalize          L2-normalise (models whose pipeline normalises always are)\n"
                   "  --dim N              keep the first N dimensions (then normalise again if asked)\n"
                   "  --prefix TEXT        prepend TEXT to every input (e.g. bge's query instruction)\n"
                   "  -t, --threads N      threads (default: one per CPU)\n"
                   "Texts longer than the model's maximum are truncated to it.\n");
            return 0;
        }
        if (cli_is(argv[i], "-m,--model")) model = cli_value(argc, argv, &i);
        else if (cli_is(argv[i], "-p,--prompt")) prompt = cli_value(argc, argv, &i);
        else if (cli_is(argv[i], "--normalize")) normalize = true;
        else if (cli_is(argv[i], "--dim")) dim = (int)cli_long(argv[i], cli_value(argc, argv, &i), 1, 1 << 16);
        else if (cli_is(argv[i], "--prefix")) prefix = cli_value(argc, argv, &i);
        else if (cli_is(argv[i], "-t,--threads")) threads = (int)cli_long(argv[i], cli_value(argc, argv, &i), 1, 1024);
        else if (argv[i][0] != '-' || !strcmp(argv[i], "-")) file = argv[i];
        else cli_die("embed: unknown option '%s' (see sabio embed --help)", argv[i]);
    }
    if (!model) cli_die("embed: no model given (-m DIR)");
    sb_err err = {0};
    sb_encoder *enc = sb_encoder_open(model, &err);
    if (!enc) cli_die("%s", err.msg);
    if (threads) sb_encoder_set_threads(enc, threads);
    int D = sb_encoder_dim(enc), keep = dim && dim < D ? dim : D;
    FILE *in = NULL;
    if (!prompt) {
        in = !file || !strcmp(file, "-") ? stdin : fopen(file, "r");
        if (!in) cli_die("%s: cannot open", file);
    }
    enum { BATCH = 64 };
    char *texts[BATCH];
    float *v = malloc(sizeof(float) * (size_t)D * BATCH);
    char *line = NULL;
    size_t cap = 0;
    if (!v) cli_die("out of memory");
    for (bool eof = false; !eof;) {
        int n = 0;
        while (n < BATCH) {
            if (prompt) {
                texts[n++] = sb_aprintf("%s%s", prefix, prompt);
                eof = true;
                break;
            }
            ssize_t len = getline(&line, &cap, in);
            if (len < 0) {
                eof = true;
                break;
            }
            while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r')) line[--len] = 0;
            texts[n++] = sb_aprintf("%s%s", prefix, line);
        }
        for (int k = 0; k < n; k++)
            if (!texts[k]) cli_die("out of memory");
        if (n && sb_encoder_embed(enc, (const char *const *)texts, n, normalize, v, &err) != SB_OK)
            cli_die("%s", err.msg);
        for (int k = 0; k < n; k++) {
            float *x = v + (size_t)k * D;
            if (keep < D && normalize) {
                double ss = 0;
                for (int i = 0; i < keep; i++) ss += (double)x[i] * x[i];
                for (int i = 0; i < keep && ss > 0; i++) x[i] = (float)(x[i] / sqrt(ss));
            }
            putchar('[');
            for (int i = 0; i < keep; i++) printf(i ? ", %.7g" : "%.7g", x[i]);
            puts("]");
            free(texts[k]);
        }
    }
    free(line);
    free(v);
    if (in && in != stdin) fclose(in);
    sb_encoder_free(enc);
    return 0;
}
