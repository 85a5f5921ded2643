/*
 * cmd_quantize.c - `sabio quantize IN OUT TYPE`: llama-quantize's file types
 * from a GGUF or a Hugging Face (safetensors) model.
 */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "model/model.h"

int cmd_quantize(int argc, char **argv) {
    const char *pos[3] = {0};
    int n_pos = 0, threads = 0;
    for (int i = 1; i < argc; i++) {
        if (cli_is(argv[i], "-h,--help")) {
            printf("usage: sabio quantize [-t N] MODEL OUT.gguf TYPE\n"
                   "Writes MODEL (a GGUF or a Hugging Face folder / .safetensors) as GGUF in TYPE:\n"
                   "F32 F16 BF16 Q8_0 Q4_0 Q4_1 Q5_0 Q5_1 Q4_K Q5_K Q6_K, or Q4_K_M. Per-tensor types as\n"
                   "llama-quantize chooses them (output.weight Q6_K for quantized types but Q8_0;\n"
                   "Q4_K_M: attn_qkv Q5_K, some ffn_down / attn_v Q6_K), norms F32.\n"
                   "  -t, --threads N   threads (default: all cores)\n");
            return 0;
        }
        if (cli_is(argv[i], "-t,--threads")) threads = (int)cli_long(argv[i], cli_value(argc, argv, &i), 1, 256);
        else if (argv[i][0] == '-') cli_die("quantize: unknown option '%s'", argv[i]);
        else if (n_pos < 3) pos[n_pos++] = argv[i];
        else cli_die("quantize: too many arguments");
    }
    if (n_pos != 3) cli_die("quantize: need MODEL, OUT.gguf and TYPE (sabio quantize --help)");
    sb_log_set_level(SB_LOG_INFO);
    sb_err err = {0};
    sb_model *m = sb_model_open(pos[0], &err);
    if (!m) cli_die("%s", err.msg);
    double t0 = sb_time_sec();
    if (sb_model_quantize(m, pos[1], pos[2], threads, &err) != SB_OK) cli_die("%s", err.msg);
    fprintf(stderr, "sabio: wrote %s (%s) in %.1f s\n", pos[1], pos[2], sb_time_sec() - t0);
    sb_model_free(m);
    return 0;
}
