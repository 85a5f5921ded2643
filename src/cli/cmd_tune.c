/*
 * cmd_tune.c - `sabio tune` (LoRA training), `sabio merge`, and the --lora /
 * --lora-scaled flags of generate and chat.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "model/model.h"
#include "text/chat.h"
#include "train/adapter.h"
#include "train/tune.h"

/* ------------------------------------------------------------ adapters -- */

bool cli_parse_lora(int argc, char **argv, int *i, cli_adapters *a) {
    const char *arg = argv[*i];
    if (!cli_is(arg, "--lora") && !cli_is(arg, "--lora-scaled")) return false;
    if (a->n == 8) cli_die("at most 8 adapters");
    a->path[a->n] = cli_value(argc, argv, i);
    a->scale[a->n] = 1.0f;
    if (cli_is(arg, "--lora-scaled")) {
        if (*i + 1 >= argc) cli_die("--lora-scaled FILE SCALE: no scale");
        a->scale[a->n] = (float)cli_double(arg, argv[++*i], -100, 100);
    }
    a->n++;
    return true;
}

static sb_lora *loaded[8];
static int n_loaded;

static void free_adapters(void) {
    for (int i = 0; i < n_loaded; i++) sb_lora_free(loaded[i]);
    n_loaded = 0;
}

static void load_adapters(const cli_adapters *a, const sb_model *m) {
    sb_err err = {0};
    for (int i = 0; i < a->n; i++) {
        sb_lora *l = sb_lora_load(m, a->path[i], &err);
        if (!l) cli_die("%s", err.msg);
        l->user_scale = a->scale[i];
        loaded[n_loaded++] = l;
    }
    if (n_loaded) atexit(free_adapters);
}

void cli_adapters_attach(const cli_adapters *a, const sb_model *m, sb_ctx *c) {
    if (a->n == 0) return;
    load_adapters(a, m);
    sb_err err = {0};
    if (sb_ctx_set_adapters(c, (const sb_lora *const *)loaded, n_loaded, &err) != SB_OK) cli_die("%s", err.msg);
}

/* ---------------------------------------------------------------- tune -- */

typedef struct progress_state {
    bool tty;
} progress_state;

static void fmt_eta(char *out, size_t n, double s) {
    if (s >= 3600) snprintf(out, n, "%dh%02dm", (int)(s / 3600), (int)fmod(s / 60, 60));
    else if (s >= 60) snprintf(out, n, "%dm%02ds", (int)(s / 60), (int)fmod(s, 60));
    else snprintf(out, n, "%.0fs", s);
}

static void on_step(const sb_step_log *s, int64_t total, double eta, void *user) {
    progress_state *p = user;
    char e[32], val[32] = "";
    if (s->step == 0) {
        fprintf(stderr, "step 0/%lld  val %.4f (before training)\n", (long long)total, (double)s->val_loss);
        return;
    }
    fmt_eta(e, sizeof e, eta);
    if (!isnan(s->val_loss)) snprintf(val, sizeof val, "  val %.4f", (double)s->val_loss);
    fprintf(stderr, "%sstep %lld/%lld  loss %.4f%s  lr %.2e  %.0f tok/s  %.2f s/step  ETA %s%s",
            p->tty ? "\r\033[K" : "", (long long)s->step, (long long)total, (double)s->loss, val, (double)s->lr,
            s->seconds > 0 ? (double)s->tokens / s->seconds : 0.0, s->seconds, e,
            p->tty && !(val[0] || s->step == total) ? "" : "\n");
    fflush(stderr);
}

static const char tune_help[] =
    "usage: sabio tune -m MODEL --data TRAIN.jsonl [--val VAL.jsonl] -o OUTDIR [options]\n"
    "Trains a LoRA adapter on chat data: {\"messages\": [...]} or {\"prompt\", \"completion\"} lines,\n"
    "rendered with the model's chat template, loss on the assistant turns. Writes OUTDIR/\n"
    "adapter_config.json + adapter_model.safetensors (PEFT), adapter.gguf (llama.cpp LoRA),\n"
    "log.json (every step), loss.svg and checkpoint.bin.\n\n"
    "  -m, --model PATH        base model (.gguf or Hugging Face folder)\n"
    "  --data FILE             training JSONL\n"
    "  --val FILE              validation JSONL (default: --val-split of the data)\n"
    "  --val-split F           fraction of the data held out for validation (default 0 = none)\n"
    "  -o, --output DIR        output folder\n"
    "  -t, --threads N         threads (default 2)\n"
    "  -c, --ctx-size N        max tokens per example; longer ones are cut (default 512)\n"
    "  --seed N                seed of initialisation, order and dropout (default 0)\n"
    "  --lora-r N              rank (default 8)\n"
    "  --lora-alpha X          alpha (default 16)\n"
    "  --lora-dropout P        dropout on the adapter input (default 0.05)\n"
    "  --lora-targets LIST     modules, e.g. qkv_proj,o_proj (default all-linear)\n"
    "  --rslora                scale alpha / sqrt(r) instead of alpha / r\n"
    "  --lr X                  peak learning rate (default 2e-4)\n"
    "  --weight-decay X        AdamW weight decay (default 0)\n"
    "  --max-grad-norm X       clip the global gradient norm (default 1; 0 = off)\n"
    "  --epochs N              passes over the data (default 1)\n"
    "  --steps N               optimizer steps (overrides --epochs)\n"
    "  --batch N               sequences per micro-batch (default 4)\n"
    "  --grad-accum N          micro-batches per optimizer step (default 1)\n"
    "  --warmup N              linear warm-up steps (default 0)\n"
    "  --schedule S            cosine, linear or constant after warm-up (default cosine)\n"
    "  --grad-checkpoint       recompute each layer in the backward pass (less memory)\n"
    "  --bf16                  frozen-base products in BF16 (about 2x faster where the CPU has AVX-512 BF16,\n"
    "                          slower elsewhere; LoRA, attention, loss stay f32)\n"
    "  --qlora                 QLoRA: the frozen base's linear weights in NF4 with double quantization\n"
    "                          (blocks of 64, as bitsandbytes; a bitsandbytes 4-bit checkpoint is used as is)\n"
    "  --eval-every N          steps between validation losses (default: 10 per run)\n"
    "  --save-every N          steps between checkpoints (default: at each evaluation)\n"
    "  --resume                continue from OUTDIR/checkpoint.bin\n"
    "  --chat-template NAME    phi3, chatml or llama2 when the model's is not recognised\n";

static sb_dataset *load_data(const char *path, const sb_model *m, const char *tmpl_name, int max_len, bool report) {
    const sb_tokenizer *tok = sb_model_tokenizer(m);
    if (!tok) cli_die("the model has no tokenizer");
    const char *jinja = sb_tokenizer_chat_template(tok);
    sb_chat_tmpl t = tmpl_name ? sb_chat_from_name(tmpl_name) : SB_CHAT_UNKNOWN;
    if (tmpl_name && t == SB_CHAT_UNKNOWN) cli_die("unknown chat template '%s'", tmpl_name);
    if (t != SB_CHAT_UNKNOWN) jinja = NULL;
    else if (!jinja || sb_chat_detect(jinja) == SB_CHAT_UNKNOWN)
        t = !strcmp(sb_model_get_config(m)->arch, "phi3") ? SB_CHAT_PHI3 : SB_CHAT_CHATML;
    sb_err err = {0};
    sb_dataset *d = sb_dataset_load(path, tok, jinja, t, max_len, &err);
    if (!d) cli_die("%s", err.msg);
    if (report)
        fprintf(stderr, "sabio: %s: %d examples, %lld tokens (%lld trained) from %d lines; %d bad lines skipped%s%s; "
                    "%d cut to %d tokens; %d dropped\n",
            path, d->n, (long long)d->offset[d->n], (long long)d->n_target_total, d->n_lines, d->n_bad,
            d->n_bad ? ", first: " : "", d->first_bad, d->n_truncated, max_len, d->n_dropped);
    return d;
}

int cmd_tune(int argc, char **argv) {
    sb_tune_opts o = sb_tune_opts_default();
    const char *model = NULL, *data = NULL, *valp = NULL, *tmpl = NULL;
    double val_split = 0;
    bool qlora = false;
    sb_err err = {0};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (cli_is(a, "-h,--help")) {
            fputs(tune_help, stdout);
            return 0;
        }
        if (cli_is(a, "-m,--model")) model = cli_value(argc, argv, &i);
        else if (cli_is(a, "--data,--train-data")) data = cli_value(argc, argv, &i);
        else if (cli_is(a, "--val")) valp = cli_value(argc, argv, &i);
        else if (cli_is(a, "--val-split")) val_split = cli_double(a, cli_value(argc, argv, &i), 0, 0.9);
        else if (cli_is(a, "-o,--output")) o.out_dir = cli_value(argc, argv, &i);
        else if (cli_is(a, "-t,--threads")) o.threads = (int)cli_long(a, cli_value(argc, argv, &i), 1, 64);
        else if (cli_is(a, "-c,--ctx-size")) o.max_len = (int)cli_long(a, cli_value(argc, argv, &i), 2, 1 << 20);
        else if (cli_is(a, "-s,--seed")) o.seed = (uint64_t)cli_long(a, cli_value(argc, argv, &i), 0, 0x7fffffffffffffffL);
        else if (cli_is(a, "--lora-r")) o.lora.r = (int)cli_long(a, cli_value(argc, argv, &i), 1, 4096);
        else if (cli_is(a, "--lora-alpha")) o.lora.alpha = (float)cli_double(a, cli_value(argc, argv, &i), 1e-6, 1e6);
        else if (cli_is(a, "--lora-dropout")) o.lora.dropout = (float)cli_double(a, cli_value(argc, argv, &i), 0, 0.99);
        else if (cli_is(a, "--lora-targets")) {
            if (sb_lora_config_set_targets(&o.lora, cli_value(argc, argv, &i), &err) != SB_OK) cli_die("%s", err.msg);
        } else if (cli_is(a, "--rslora")) o.lora.rslora = true;
        else if (cli_is(a, "--lr")) o.lr = (float)cli_double(a, cli_value(argc, argv, &i), 1e-12, 10);
        else if (cli_is(a, "--weight-decay")) o.weight_decay = (float)cli_double(a, cli_value(argc, argv, &i), 0, 10);
        else if (cli_is(a, "--max-grad-norm")) o.max_grad_norm = (float)cli_double(a, cli_value(argc, argv, &i), 0, 1e9);
        else if (cli_is(a, "--epochs")) o.epochs = (int)cli_long(a, cli_value(argc, argv, &i), 1, 1 << 20);
        else if (cli_is(a, "--steps")) o.steps = cli_long(a, cli_value(argc, argv, &i), 1, 1L << 40);
        else if (cli_is(a, "--batch")) o.batch = (int)cli_long(a, cli_value(argc, argv, &i), 1, 4096);
        else if (cli_is(a, "--grad-accum")) o.grad_accum = (int)cli_long(a, cli_value(argc, argv, &i), 1, 1 << 16);
        else if (cli_is(a, "--warmup")) o.warmup = cli_long(a, cli_value(argc, argv, &i), 0, 1L << 40);
        else if (cli_is(a, "--schedule")) {
            const char *v = cli_value(argc, argv, &i);
            int s = sb_schedule_from_name(v);
            if (s < 0) cli_die("--schedule: '%s' is not cosine, linear or constant", v);
            o.schedule = (sb_schedule)s;
        } else if (cli_is(a, "--grad-checkpoint")) o.grad_checkpoint = true;
        else if (cli_is(a, "--bf16")) o.bf16 = true;
        else if (cli_is(a, "--qlora")) qlora = true;
        else if (cli_is(a, "--eval-every")) o.eval_every = cli_long(a, cli_value(argc, argv, &i), 1, 1L << 40);
        else if (cli_is(a, "--save-every")) o.save_every = cli_long(a, cli_value(argc, argv, &i), 1, 1L << 40);
        else if (cli_is(a, "--resume")) o.resume = true;
        else if (cli_is(a, "--chat-template")) tmpl = cli_value(argc, argv, &i);
        else cli_die("tune: unknown option '%s' (see sabio tune --help)", a);
    }
    if (!model || !data || !o.out_dir) cli_die("tune: -m MODEL, --data FILE and -o DIR are required");
    sb_dist dist;
    if (sb_dist_init(&dist, &err) != SB_OK) cli_die("tune: %s", err.msg);
    o.dist = &dist;
    if (dist.rank != 0) sb_log_set_level(SB_LOG_WARN); /* rank 0 reports */
    else if (dist.size > 1)
        fprintf(stderr, "sabio: %d ranks; each step's %d examples split across them\n", dist.size,
                o.batch * o.grad_accum);
    sb_model *m = sb_model_open(model, &err);
    if (!m) cli_die("%s", err.msg);
    if (qlora && sb_model_quantize_nf4(m, 64, true, &err) != SB_OK) cli_die("%s: NF4: %s", model, err.msg);
    sb_dataset *train = load_data(data, m, tmpl, o.max_len, dist.rank == 0), *val = NULL;
    if (valp) val = load_data(valp, m, tmpl, o.max_len, dist.rank == 0);
    else if (val_split > 0) {
        if (sb_dataset_split(train, val_split, o.seed, &val, &err) != SB_OK) cli_die("%s", err.msg);
        if (dist.rank == 0) fprintf(stderr, "sabio: %d training and %d validation examples\n", train->n, val->n);
    }
    progress_state ps = {isatty(2)};
    if (sb_tune(m, train, val, &o, on_step, &ps, &err) != SB_OK) cli_die("%s", err.msg);
    if (dist.rank == 0)
        fprintf(stderr, "sabio: adapter written to %s (adapter_model.safetensors, adapter.gguf, log.json, loss.svg)\n",
            o.out_dir);
    sb_dataset_free(train);
    sb_dataset_free(val);
    sb_model_free(m);
    sb_dist_finish(&dist);
    return 0;
}

/* --------------------------------------------------------------- merge -- */

int cmd_merge(int argc, char **argv) {
    const char *model = NULL, *out = NULL, *type_name = NULL;
    cli_adapters ad = {0};
    for (int i = 1; i < argc; i++) {
        if (cli_is(argv[i], "-h,--help")) {
            printf("usage: sabio merge -m MODEL --lora ADAPTER [--lora-scaled ADAPTER S ...] -o OUT.gguf|OUTDIR [--type T]\n"
                   "Writes MODEL with the adapters merged into its weights (W + scale B A): as GGUF when OUT\n"
                   "ends in .gguf (--type f32|f16|bf16|q8_0|..., default the model's main type), else as a\n"
                   "Hugging Face folder (model.safetensors, merged matrices f32; Hugging Face sources only).\n");
            return 0;
        }
        if (cli_is(argv[i], "-m,--model")) model = cli_value(argc, argv, &i);
        else if (cli_is(argv[i], "-o,--output")) out = cli_value(argc, argv, &i);
        else if (cli_is(argv[i], "--type,--outtype")) type_name = cli_value(argc, argv, &i);
        else if (cli_parse_lora(argc, argv, &i, &ad)) {}
        else cli_die("merge: unknown option '%s'", argv[i]);
    }
    if (!model || !out || ad.n == 0) cli_die("merge: -m MODEL, --lora ADAPTER and -o OUT are required");
    int type = -1;
    if (type_name && (type = sb_dtype_from_name(type_name)) < 0) cli_die("merge: unknown type '%s'", type_name);
    sb_err err = {0};
    sb_model *m = sb_model_open(model, &err);
    if (!m) cli_die("%s", err.msg);
    load_adapters(&ad, m);
    size_t ol = strlen(out);
    bool gguf = ol > 5 && !strcmp(out + ol - 5, ".gguf");
    if ((gguf ? sb_lora_merge_save_gguf(m, (const sb_lora *const *)loaded, n_loaded, out, type, &err)
              : sb_lora_merge_save_hf(m, (const sb_lora *const *)loaded, n_loaded, out, &err)) != SB_OK)
        cli_die("%s", err.msg);
    fprintf(stderr, "sabio: wrote %s\n", out);
    sb_model_free(m);
    return 0;
}
