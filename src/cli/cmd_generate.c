/*
 * cmd_generate.c - `sabio tokenize`, `sabio generate` and `sabio chat`.
 */
#include "cli/cli.h"
#include "model/generate.h"
#include "text/chat.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct gen_opts {
    const char *model, *prompt, *prompt_file, *system, *template_name;
    int n_predict, n_ctx, threads;
    bool escape, verbose, ignore_eos, raw_special, no_special, nf4, no_repack;
    const char *stop[16];
    int n_stop;
    sb_sampler_params sampling;
    cli_adapters lora; /* --lora, --lora-scaled */
} gen_opts;

static const char gen_help[] =
    "  -m, --model PATH        model: .gguf file or Hugging Face folder (required)\n"
    "  -n, --n-predict N       tokens to generate (default: -1 = until end of turn)\n"
    "  -c, --ctx-size N        context size in tokens (default 4096, at most the model's)\n"
    "  -t, --threads N         threads (default: all cores, at most 8)\n"
    "  -r, --reverse-prompt S  stop when S is generated (repeatable)\n"
    "  -e, --escape            process \\n, \\t, \\\\ escapes in the prompt\n"
    "  --ignore-eos            keep generating past end-of-text tokens\n"
    "  --verbose               print timings and token counts to stderr\n"
    "  --lora FILE             apply a LoRA adapter (PEFT folder or GGUF LoRA; repeatable)\n"
    "  --lora-scaled FILE S    apply a LoRA adapter scaled by S (repeatable)\n"
    "  --nf4                   quantize the linear weights to NF4 at load (QLoRA's 4-bit base)\n"
    CLI_REPACK_HELP;

static void unescape(char *s) {
    char *w = s;
    for (char *r = s; *r; r++) {
        if (*r == '\\' && r[1]) {
            r++;
            *w++ = *r == 'n' ? '\n' : *r == 't' ? '\t' : *r == 'r' ? '\r' : *r;
        } else {
            *w++ = *r;
        }
    }
    *w = 0;
}

/* Parses the options generate and chat share; returns false for an unknown one. */
static bool parse_common(int argc, char **argv, int *i, gen_opts *o) {
    const char *a = argv[*i];
    if (cli_is(a, "-m,--model")) o->model = cli_value(argc, argv, i);
    else if (cli_is(a, "-n,--n-predict")) o->n_predict = (int)cli_long(a, cli_value(argc, argv, i), -1, 1 << 24);
    else if (cli_is(a, "-c,--ctx-size")) o->n_ctx = (int)cli_long(a, cli_value(argc, argv, i), 0, 1 << 24);
    else if (cli_is(a, "-t,--threads")) o->threads = (int)cli_long(a, cli_value(argc, argv, i), 1, 256);
    else if (cli_is(a, "-r,--reverse-prompt,--stop")) {
        if (o->n_stop == 16) cli_die("at most 16 stop strings");
        o->stop[o->n_stop++] = cli_value(argc, argv, i);
    } else if (cli_is(a, "-e,--escape")) o->escape = true;
    else if (cli_is(a, "--ignore-eos")) o->ignore_eos = true;
    else if (cli_is(a, "--verbose,-v")) o->verbose = true;
    else if (cli_is(a, "--nf4")) o->nf4 = true;
    else if (cli_is(a, "-nr,--no-repack")) o->no_repack = true;
    else if (cli_parse_sampling(argc, argv, i, &o->sampling)) {}
    else if (cli_parse_lora(argc, argv, i, &o->lora)) {}
    else return false;
    return true;
}

static sb_model *open_model(const char *path, bool nf4, bool repack) {
    if (!path) cli_die("no model given (-m PATH)");
    sb_err err = {0};
    sb_model *m = sb_model_open(path, &err);
    if (!m) cli_die("%s", err.msg);
    if (nf4 && sb_model_quantize_nf4(m, 64, true, &err) != SB_OK) cli_die("%s: NF4: %s", path, err.msg);
    if (repack) cli_repack(m, path);
    if (!sb_model_tokenizer(m)) cli_die("%s: the model has no tokenizer", path);
    return m;
}

static int ctx_size(const sb_model *m, int want) {
    int train = sb_model_get_config(m)->n_ctx_train;
    if (want <= 0) want = 4096;
    if (train > 0 && want > train) want = train;
    return want;
}

static bool print_cb(const char *text, size_t len, void *user) {
    fwrite(text, 1, len, stdout);
    fflush(stdout);
    return true;
}

static void report(const gen_opts *o, const sb_gen_result *r) {
    if (!o->verbose) return;
    fprintf(stderr,
            "\nsabio: prompt %d tokens (%d from cache) in %.3f s (%.1f tok/s); "
            "generated %d tokens in %.3f s (%.1f tok/s); stop: %s\n",
            r->n_prompt, r->n_reused, r->t_prompt,
            r->t_prompt > 0 ? (r->n_prompt - r->n_reused) / r->t_prompt : 0, r->n_gen, r->t_gen,
            r->t_gen > 0 ? r->n_gen / r->t_gen : 0,
            (const char *[]){"end of text", "length", "stop string", "callback", "context full"}[r->stop]);
}

static sb_gen_params gen_params(const gen_opts *o) {
    return (sb_gen_params){.n_predict = o->n_predict,
                           .sampling = o->sampling,
                           .stop = o->stop,
                           .n_stop = o->n_stop,
                           .ignore_eos = o->ignore_eos};
}

static char *read_prompt_file(const char *path) {
    char *text = NULL;
    sb_err err = {0};
    if (!strcmp(path, "-")) {
        sb_buf b = {0};
        char chunk[4096];
        size_t n;
        while ((n = fread(chunk, 1, sizeof chunk, stdin)) > 0) sb_buf_append(&b, chunk, n);
        if (!b.data) sb_buf_append(&b, "", 0);
        return b.data;
    }
    if (sb_read_file(path, 64 << 20, &text, NULL, &err) != SB_OK) cli_die("%s", err.msg);
    return text;
}

int cmd_generate(int argc, char **argv) {
    gen_opts o = {.n_predict = -1, .sampling = sb_sampler_default_params()};
    for (int i = 1; i < argc; i++) {
        if (cli_is(argv[i], "-h,--help")) {
            printf("usage: sabio generate -m MODEL -p TEXT [options]\n"
                   "Continues TEXT (plain completion, no chat template).\n\n"
                   "  -p, --prompt TEXT       the prompt\n"
                   "  -f, --file PATH         read the prompt from a file (- for stdin)\n"
                   "  --special               parse special tokens written in the prompt\n"
                   "%s\n%s",
                   gen_help, cli_sampling_help);
            return 0;
        }
        if (parse_common(argc, argv, &i, &o)) continue;
        if (cli_is(argv[i], "-p,--prompt")) o.prompt = cli_value(argc, argv, &i);
        else if (cli_is(argv[i], "-f,--file")) o.prompt_file = cli_value(argc, argv, &i);
        else if (cli_is(argv[i], "--special")) o.raw_special = true;
        else cli_die("generate: unknown option '%s' (see sabio generate --help)", argv[i]);
    }
    if (!o.prompt && !o.prompt_file) cli_die("generate: no prompt (-p TEXT or -f FILE)");
    char *prompt = o.prompt_file ? read_prompt_file(o.prompt_file) : sb_strdup(o.prompt);
    if (o.escape) unescape(prompt);
    sb_model *m = open_model(o.model, o.nf4, !o.no_repack);
    const sb_tokenizer *tok = sb_model_tokenizer(m);
    sb_err err = {0};
    sb_tokens ids = {0};
    if (sb_tokenize(tok, prompt, strlen(prompt), true, o.raw_special, &ids, &err) != SB_OK)
        cli_die("%s", err.msg);
    sb_session *s = sb_session_new(m, ctx_size(m, o.n_ctx), &err);
    if (!s) cli_die("%s", err.msg);
    if (o.threads && sb_ctx_set_threads(sb_session_ctx(s), o.threads, &err) != SB_OK) cli_die("%s", err.msg);
    cli_adapters_attach(&o.lora, m, sb_session_ctx(s));
    fputs(prompt, stdout);
    fflush(stdout);
    sb_gen_params gp = gen_params(&o);
    sb_gen_result r;
    if (sb_session_generate(s, ids.ids, ids.n, &gp, print_cb, NULL, NULL, NULL, &r, &err) != SB_OK)
        cli_die("%s", err.msg);
    putchar('\n');
    report(&o, &r);
    sb_session_free(s);
    sb_tokens_free(&ids);
    sb_model_free(m);
    free(prompt);
    return 0;
}

/* Reads one line from stdin into a heap string without its newline; NULL at EOF. */
static char *read_line(void) {
    char *line = NULL;
    size_t cap = 0;
    ssize_t n = getline(&line, &cap, stdin);
    if (n < 0) {
        free(line);
        return NULL;
    }
    while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r')) line[--n] = 0;
    return line;
}

int cmd_chat(int argc, char **argv) {
    gen_opts o = {.n_predict = -1, .sampling = sb_sampler_default_params()};
    for (int i = 1; i < argc; i++) {
        if (cli_is(argv[i], "-h,--help")) {
            printf("usage: sabio chat -m MODEL [options]\n"
                   "Interactive chat: type a message, Enter sends it; an empty line or\n"
                   "end of input (Ctrl-D) ends the chat. /reset starts over.\n\n"
                   "  -sys, --system TEXT     system message\n"
                   "  -p, --prompt TEXT       a first user message (then reads stdin)\n"
                   "  --chat-template NAME    phi3, chatml or llama2 (default: from the model)\n"
                   "%s\n%s",
                   gen_help, cli_sampling_help);
            return 0;
        }
        if (parse_common(argc, argv, &i, &o)) continue;
        if (cli_is(argv[i], "-sys,--system,--system-prompt")) o.system = cli_value(argc, argv, &i);
        else if (cli_is(argv[i], "-p,--prompt")) o.prompt = cli_value(argc, argv, &i);
        else if (cli_is(argv[i], "--chat-template")) o.template_name = cli_value(argc, argv, &i);
        else cli_die("chat: unknown option '%s' (see sabio chat --help)", argv[i]);
    }
    sb_model *m = open_model(o.model, o.nf4, !o.no_repack);
    const sb_tokenizer *tok = sb_model_tokenizer(m);
    sb_chat_tmpl tmpl = SB_CHAT_UNKNOWN;
    const char *model_jinja = NULL; /* rendered with the model's own defaults when recognised */
    if (o.template_name) {
        tmpl = sb_chat_from_name(o.template_name);
        if (tmpl == SB_CHAT_UNKNOWN)
            cli_die("unknown chat template '%s' (known: phi3, chatml, llama2)", o.template_name);
    } else {
        const char *jinja = sb_tokenizer_chat_template(tok);
        tmpl = jinja ? sb_chat_detect(jinja) : SB_CHAT_UNKNOWN;
        if (tmpl != SB_CHAT_UNKNOWN) model_jinja = jinja;
        if (tmpl == SB_CHAT_UNKNOWN) {
            const sb_model_config *cfg = sb_model_get_config(m);
            tmpl = !strcmp(cfg->arch, "phi3") ? SB_CHAT_PHI3 : SB_CHAT_CHATML;
            fprintf(stderr, "sabio: %s chat template not recognised; using %s (--chat-template to choose)\n",
                    jinja ? "the model's" : "no", sb_chat_name(tmpl));
        }
    }
    sb_err err = {0};
    sb_session *s = sb_session_new(m, ctx_size(m, o.n_ctx), &err);
    if (!s) cli_die("%s", err.msg);
    if (o.threads && sb_ctx_set_threads(sb_session_ctx(s), o.threads, &err) != SB_OK) cli_die("%s", err.msg);
    cli_adapters_attach(&o.lora, m, sb_session_ctx(s));

    /* The conversation; contents are heap strings owned here. */
    sb_chat_msg *msgs = NULL;
    size_t n_msgs = 0, cap = 0;
#define PUSH(r, c)                                                                          \
    do {                                                                                    \
        if (n_msgs == cap) {                                                                \
            cap = cap ? cap * 2 : 8;                                                        \
            msgs = sb_realloc_array(msgs, cap, sizeof *msgs);                               \
            if (!msgs) cli_die("out of memory");                                            \
        }                                                                                   \
        msgs[n_msgs++] = (sb_chat_msg){(r), (c)};                                           \
    } while (0)
    if (o.system) PUSH("system", sb_strdup(o.system));
    size_t n_fixed = n_msgs;
    bool interactive = isatty(0);
    char *first = o.prompt ? sb_strdup(o.prompt) : NULL;
    for (;;) {
        char *line = first;
        first = NULL;
        if (!line) {
            if (interactive) {
                fputs("> ", stdout);
                fflush(stdout);
            }
            line = read_line();
        }
        if (!line || !*line) {
            free(line);
            break;
        }
        if (!strcmp(line, "/reset")) {
            free(line);
            for (size_t k = n_fixed; k < n_msgs; k++) free((char *)msgs[k].content);
            n_msgs = n_fixed;
            sb_session_reset(s);
            continue;
        }
        if (o.escape) unescape(line);
        PUSH("user", line);
        char *text = model_jinja ? sb_chat_apply_jinja(model_jinja, msgs, n_msgs, true)
                                 : sb_chat_apply(tmpl, msgs, n_msgs, true);
        if (!text) cli_die("out of memory");
        sb_tokens ids = {0};
        /* BOS comes from the tokenizer, when the vocabulary wants one. */
        if (sb_tokenize(tok, text, strlen(text), true, true, &ids, &err) != SB_OK) cli_die("%s", err.msg);
        free(text);
        sb_gen_params gp = gen_params(&o);
        sb_buf reply = {0};
        sb_gen_result r;
        if (sb_session_generate(s, ids.ids, ids.n, &gp, print_cb, NULL, &reply, NULL, &r, &err) != SB_OK)
            cli_die("%s", err.msg);
        fputs("\n", stdout);
        fflush(stdout);
        report(&o, &r);
        PUSH("assistant", reply.data ? reply.data : sb_strdup(""));
        sb_tokens_free(&ids);
        if (r.stop == SB_STOP_CONTEXT) {
            fprintf(stderr, "sabio: the context is full; /reset to start over\n");
        }
    }
#undef PUSH
    for (size_t k = 0; k < n_msgs; k++) free((char *)msgs[k].content);
    free(msgs);
    sb_session_free(s);
    sb_model_free(m);
    return 0;
}

int cmd_tokenize(int argc, char **argv) {
    const char *model = NULL, *text = NULL;
    bool special = false, ids_only = false, bos = false;
    for (int i = 1; i < argc; i++) {
        if (cli_is(argv[i], "-h,--help")) {
            printf("usage: sabio tokenize -m MODEL [-p] TEXT [--special] [--bos] [--ids]\n"
                   "  --special   parse special tokens written in TEXT (e.g. <|user|>)\n"
                   "  --bos       add the BOS token if the model uses one\n"
                   "  --ids       print only the ids, as a JSON array\n");
            return 0;
        }
        if (cli_is(argv[i], "-m,--model")) model = cli_value(argc, argv, &i);
        else if (cli_is(argv[i], "-p,--prompt")) text = cli_value(argc, argv, &i);
        else if (cli_is(argv[i], "--special")) special = true;
        else if (cli_is(argv[i], "--bos")) bos = true;
        else if (cli_is(argv[i], "--ids")) ids_only = true;
        else if (argv[i][0] != '-' && !text) text = argv[i];
        else cli_die("tokenize: unknown option '%s'", argv[i]);
    }
    if (!text) cli_die("tokenize: no text given");
    sb_model *m = open_model(model, false, false);
    const sb_tokenizer *tok = sb_model_tokenizer(m);
    sb_tokens ids = {0};
    sb_err err = {0};
    if (sb_tokenize(tok, text, strlen(text), bos, special, &ids, &err) != SB_OK) cli_die("%s", err.msg);
    if (ids_only) putchar('[');
    for (size_t i = 0; i < ids.n; i++) {
        if (ids_only) {
            printf(i ? ", %d" : "%d", ids.ids[i]);
            continue;
        }
        char piece[256];
        size_t n = sb_token_to_piece(tok, ids.ids[i], true, piece, sizeof piece);
        if (n > sizeof piece) n = sizeof piece;
        printf("%6d -> '%.*s'\n", ids.ids[i], (int)n, piece);
    }
    if (ids_only) puts("]");
    sb_tokens_free(&ids);
    sb_model_free(m);
    return 0;
}

int cmd_convert(int argc, char **argv) {
    const char *in = NULL, *out = NULL, *type_name = "f16";
    for (int i = 1; i < argc; i++) {
        if (cli_is(argv[i], "-h,--help")) {
            printf("usage: sabio convert MODEL OUT.gguf [--type f32|f16|bf16|q8_0]\n"
                   "       sabio convert MODEL OUTDIR --type nf4\n"
                   "Writes MODEL (a Hugging Face folder or a GGUF) as a GGUF file with llama.cpp's\n"
                   "names and keys; matrices in the given type (default f16), norms in f32.\n"
                   "--type nf4: a Hugging Face folder in bitsandbytes' 4-bit layout (NF4, double\n"
                   "quantization, blocks of 64), which transformers loads in 4-bit and sabio as NF4.\n");
            return 0;
        }
        if (cli_is(argv[i], "--type,--outtype")) type_name = cli_value(argc, argv, &i);
        else if (argv[i][0] == '-') cli_die("convert: unknown option '%s'", argv[i]);
        else if (!in) in = argv[i];
        else if (!out) out = argv[i];
        else cli_die("convert: too many arguments");
    }
    if (!in || !out) cli_die("convert: need MODEL and OUT.gguf");
    int type = sb_dtype_from_name(type_name);
    if (type < 0) cli_die("convert: unknown type '%s'", type_name);
    sb_err err = {0};
    sb_model *m = sb_model_open(in, &err);
    if (!m) cli_die("%s", err.msg);
    if (type == SB_NF4) {
        if (sb_model_quantize_nf4(m, 64, true, &err) != SB_OK || sb_model_save_nf4(m, out, &err) != SB_OK)
            cli_die("%s", err.msg);
    } else if (sb_model_save_gguf(m, out, type, &err) != SB_OK) {
        cli_die("%s", err.msg);
    }
    fprintf(stderr, "sabio: wrote %s\n", out);
    sb_model_free(m);
    return 0;
}
