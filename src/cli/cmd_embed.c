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
    int dim = 0;
    for (int i = 1; i < argc; i++) {
        if (cli_is(argv[i], "-h,--help")) {
            printf("usage: sabio embed -m MODEL [FILE|-] [options]\n"
                   "Embeds each line of FILE (default: standard input), printing one JSON array per line.\n\n"
                   "  -m, --model DIR      sentence-transformers / Hugging Face BERT folder\n"
                   "  -p, --prompt TEXT    embed TEXT instead of reading lines\n"
                   "  --normalize          L2-normalise (models whose pipeline normalises always are)\n"
                   "  --dim N              keep the first N dimensions (then normalise again if asked)\n"
                   "  --prefix TEXT        prepend TEXT to every input (e.g. bge's query instruction)\n"
                   "Texts longer than the model's maximum are truncated to it.\n");
            return 0;
        }
        if (cli_is(argv[i], "-m,--model")) model = cli_value(argc, argv, &i);
        else if (cli_is(argv[i], "-p,--prompt")) prompt = cli_value(argc, argv, &i);
        else if (cli_is(argv[i], "--normalize")) normalize = true;
        else if (cli_is(argv[i], "--dim")) dim = (int)cli_long(argv[i], cli_value(argc, argv, &i), 1, 1 << 16);
        else if (cli_is(argv[i], "--prefix")) prefix = cli_value(argc, argv, &i);
        else if (argv[i][0] != '-' || !strcmp(argv[i], "-")) file = argv[i];
        else cli_die("embed: unknown option '%s' (see sabio embed --help)", argv[i]);
    }
    if (!model) cli_die("embed: no model given (-m DIR)");
    sb_err err = {0};
    sb_encoder *enc = sb_encoder_open(model, &err);
    if (!enc) cli_die("%s", err.msg);
    int D = sb_encoder_dim(enc), keep = dim && dim < D ? dim : D;
    FILE *in = NULL;
    if (!prompt) {
        in = !file || !strcmp(file, "-") ? stdin : fopen(file, "r");
        if (!in) cli_die("%s: cannot open", file);
    }
    float *v = malloc(sizeof(float) * (size_t)D);
    char *line = NULL;
    size_t cap = 0;
    for (;;) {
        char *text;
        if (prompt) {
            text = sb_aprintf("%s%s", prefix, prompt);
        } else {
            ssize_t n = getline(&line, &cap, in);
            if (n < 0) break;
            while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r')) line[--n] = 0;
            text = sb_aprintf("%s%s", prefix, line);
        }
        if (!text || !v) cli_die("out of memory");
        const char *texts[1] = {text};
        if (sb_encoder_embed(enc, texts, 1, normalize, v, &err) != SB_OK) cli_die("%s", err.msg);
        if (keep < D && normalize) {
            double ss = 0;
            for (int i = 0; i < keep; i++) ss += (double)v[i] * v[i];
            for (int i = 0; i < keep && ss > 0; i++) v[i] = (float)(v[i] / sqrt(ss));
        }
        putchar('[');
        for (int i = 0; i < keep; i++) printf(i ? ", %.7g" : "%.7g", v[i]);
        puts("]");
        free(text);
        if (prompt) break;
    }
    free(line);
    free(v);
    if (in && in != stdin) fclose(in);
    sb_encoder_free(enc);
    return 0;
}
