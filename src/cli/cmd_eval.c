/*
 * cmd_eval.c - `sabio eval`: run base / RAG (and, with an adapter, LoRA /
 * RAG+LoRA) on a question set and write the report (rag/evaluate.h); and
 * `sabio eval --make-splits`.
 */
#include "cli/cli.h"
#include "model/model.h"
#include "rag/evaluate.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct eval_progress {
    double t0;
    int first_done;
    bool tty;
} eval_progress;

static void on_answer(const char *config, int done, int total, double f1, void *user) {
    eval_progress *p = user;
    if (p->first_done < 0) {
        p->first_done = done - 1;
        p->t0 = sb_time_sec();
    }
    double el = sb_time_sec() - p->t0;
    int ran = done - p->first_done;
    double rate = el > 0 ? ran / el : 0;
    double eta = rate > 0 ? (total - done) / rate : 0;
    if (p->tty)
        fprintf(stderr, "\r\033[K%d/%d answers, %.2f/s, ETA %.0fs (%s, F1 %.2f)", done, total, rate, eta, config, f1);
    else if (done % 20 == 0 || done == total)
        fprintf(stderr, "sabio: eval %d/%d answers, %.2f/s, ETA %.0fs\n", done, total, rate, eta);
}

/* A fixed sample: the questions in a seeded shuffled order, skip the first
 * `skip`, keep `count` (0: all). The kept ones go back to file order. */
static int take_sample(sb_eval_question *q, int n, int count, int skip, uint64_t seed) {
    if (!count && !skip) return n;
    int *order = sb_eval_shuffle(n, seed);
    char *keep = calloc((size_t)n, 1);
    if (!order || !keep) cli_die("out of memory");
    int k = 0;
    for (int i = skip; i < n && (!count || k < count); i++, k++) keep[order[i]] = 1;
    int m = 0;
    for (int i = 0; i < n; i++) {
        if (keep[i]) {
            sb_eval_question t = q[m];
            q[m++] = q[i];
            q[i] = t;
        }
    }
    free(order);
    free(keep);
    return m;
}

static char *join_args(int argc, char **argv) {
    sb_buf b = {0};
    sb_buf_puts(&b, "sabio eval");
    for (int i = 1; i < argc; i++) sb_buf_printf(&b, " %s", argv[i]);
    return b.data;
}

int cmd_eval(int argc, char **argv) {
    const char *qpath = NULL, *store_dir = NULL, *model = NULL, *out = NULL, *configs = NULL,
               *embed = NULL, *split = "80,10,10";
    bool make_splits = false, by_doc = true;
    cli_adapters lora = {0};
    int n_ctx = 2048, threads = 0, sample = 0, skip = 0;
    bool repack = true;
    uint64_t sample_seed = 1;
    sb_eval_opts o = {.bootstrap = 2000, .seed = 1};
    o.ask = sb_ask_default_params();
    o.ask.k = 3;
    o.ask.answer_tokens = 64;
    /* An answer is one passage: stop at a blank line, for every configuration. */
    static const char *const stop[1] = {"\n\n"};
    o.ask.gen.stop = stop;
    o.ask.gen.n_stop = 1;
    for (int i = 1; i < argc; i++) {
        if (cli_is(argv[i], "-h,--help")) {
            printf("usage: sabio eval --questions Q.jsonl [--store DIR] -m MODEL [--lora A] -o OUT/ [options]\n"
                   "       sabio eval --make-splits --questions Q.jsonl -o OUT/ [--by doc|question] [--split 80,10,10]\n"
                   "Runs base and RAG (with --store), and LoRA and RAG+LoRA (with --lora), on the same questions with\n"
                   "the same decoding; writes OUT/report.md, report.json, timings.json, f1.svg. Finished answers are\n"
                   "kept in OUT/cache.jsonl: running again resumes.\n\n"
                   "  --questions FILE      JSONL: question, answer (string or array), optional doc and id\n"
                   "  --store DIR           knowledge store for the RAG configurations\n"
                   "  -m, --model PATH      the language model\n"
                   "  --lora FILE           a LoRA adapter (PEFT folder or GGUF LoRA) for the LoRA configurations\n"
                   "  -o, --output DIR      report folder\n"
                   "  --configs LIST        which to run, e.g. base,rag (default: all that the inputs allow)\n"
                   "  --sample N            a fixed sample of N questions (seeded shuffle, --sample-seed, default 1)\n"
                   "  --skip N              skip the first N of that shuffle (a disjoint tuning subset)\n"
                   "  -k N                  chunks retrieved (default 3)\n"
                   "  -n, --n-predict N     answer budget in tokens (default 64)\n"
                   "  -c, --ctx-size N      context (default 2048)\n"
                   "  -t, --threads N       threads\n"
                   "  --system TEXT         the RAG instruction (default: ask's)\n"
                   "  --answer-prefix TEXT  the RAG answer's given first words (default: ask's)\n"
                   "  --bootstrap N         bootstrap resamples (default 2000)\n"
                   "  --shard I/N           answer every N-th question from the I-th (0-based): run N processes on one OUT\n"
                   "  --partial             report on the questions answered so far (answers nothing)\n"
                   "  --data-changes often|rarely   for the recommendation (the Cookbook's first criterion)\n"
                   "  --make-splits         write OUT/train.jsonl, valid.jsonl, test.jsonl instead\n"
                   "  --by doc|question     split unit (default doc: no document in two splits)\n"
                   "  --split A,B,C         train, valid, test percent (default 80,10,10)\n"
                   CLI_REPACK_HELP "\n%s",
                   cli_sampling_help);
            return 0;
        }
        if (cli_is(argv[i], "--questions")) qpath = cli_value(argc, argv, &i);
        else if (cli_is(argv[i], "--store")) store_dir = cli_value(argc, argv, &i);
        else if (cli_is(argv[i], "-m,--model")) model = cli_value(argc, argv, &i);
        else if (cli_parse_lora(argc, argv, &i, &lora)) {
        } else if (cli_is(argv[i], "--adapter")) {
            if (lora.n == 8) cli_die("at most 8 adapters");
            lora.path[lora.n] = cli_value(argc, argv, &i);
            lora.scale[lora.n++] = 1.0f;
        }
        else if (cli_is(argv[i], "-o,--output")) out = cli_value(argc, argv, &i);
        else if (cli_is(argv[i], "-nr,--no-repack")) repack = false;
        else if (cli_is(argv[i], "--configs")) configs = cli_value(argc, argv, &i);
        else if (cli_is(argv[i], "--embed-model")) embed = cli_value(argc, argv, &i);
        else if (cli_is(argv[i], "--sample")) sample = (int)cli_long(argv[i], cli_value(argc, argv, &i), 1, 1 << 24);
        else if (cli_is(argv[i], "--skip")) skip = (int)cli_long(argv[i], cli_value(argc, argv, &i), 0, 1 << 24);
        else if (cli_is(argv[i], "--sample-seed")) sample_seed = (uint64_t)cli_long(argv[i], cli_value(argc, argv, &i), 0, 0x7fffffffffffffffL);
        else if (cli_is(argv[i], "-k")) o.ask.k = (int)cli_long(argv[i], cli_value(argc, argv, &i), 1, 100);
        else if (cli_is(argv[i], "-n,--n-predict")) o.ask.answer_tokens = (int)cli_long(argv[i], cli_value(argc, argv, &i), 1, 1 << 16);
        else if (cli_is(argv[i], "-c,--ctx-size")) n_ctx = (int)cli_long(argv[i], cli_value(argc, argv, &i), 256, 1 << 20);
        else if (cli_is(argv[i], "-t,--threads")) threads = (int)cli_long(argv[i], cli_value(argc, argv, &i), 1, 256);
        else if (cli_is(argv[i], "--system")) o.ask.system = cli_value(argc, argv, &i);
        else if (cli_is(argv[i], "--answer-prefix")) o.ask.answer_prefix = cli_value(argc, argv, &i);
        else if (cli_is(argv[i], "--bootstrap")) o.bootstrap = (int)cli_long(argv[i], cli_value(argc, argv, &i), 100, 1000000);
        else if (cli_is(argv[i], "--data-changes")) {
            o.data_changes = cli_value(argc, argv, &i);
            if (strcmp(o.data_changes, "often") && strcmp(o.data_changes, "rarely"))
                cli_die("eval: --data-changes must be often or rarely");
        } else if (cli_is(argv[i], "--shard")) {
            const char *v = cli_value(argc, argv, &i);
            if (sscanf(v, "%d/%d", &o.shard, &o.n_shards) != 2 || o.n_shards < 1 || o.shard < 0 || o.shard >= o.n_shards)
                cli_die("eval: --shard wants I/N with 0 <= I < N");
        } else if (cli_is(argv[i], "--partial")) o.partial = true;
        else if (cli_is(argv[i], "--make-splits")) make_splits = true;
        else if (cli_is(argv[i], "--by")) {
            const char *b = cli_value(argc, argv, &i);
            if (strcmp(b, "doc") && strcmp(b, "question")) cli_die("eval: --by must be doc or question");
            by_doc = !strcmp(b, "doc");
        } else if (cli_is(argv[i], "--split")) split = cli_value(argc, argv, &i);
        else if (cli_parse_sampling(argc, argv, &i, &o.ask.gen.sampling)) {
        } else cli_die("eval: unknown argument '%s' (see sabio eval --help)", argv[i]);
    }
    if (!qpath) cli_die("eval: --questions FILE is required");
    if (!out) cli_die("eval: -o DIR is required");
    sb_err err = {0};
    sb_eval_question *q;
    int n;
    if (sb_eval_load(qpath, &q, &n, &err) != SB_OK) cli_die("%s", err.msg);
    if (make_splits) {
        int pct[3], counts[3];
        if (sscanf(split, "%d,%d,%d", &pct[0], &pct[1], &pct[2]) != 3) cli_die("eval: --split wants A,B,C percent");
        if (sb_eval_make_splits(q, n, by_doc, pct, sample_seed, out, counts, &err) != SB_OK) cli_die("%s", err.msg);
        fprintf(stderr, "sabio: %d questions split by %s: train %d, valid %d, test %d in %s\n", n,
                by_doc ? "document" : "question", counts[0], counts[1], counts[2], out);
        sb_eval_questions_free(q, n);
        return 0;
    }
    if (!model) cli_die("eval: no model given (-m PATH)");
    if (skip >= n) cli_die("eval: --skip %d leaves none of the %d questions", skip, n);
    int n_all = n;
    n = take_sample(q, n, sample, skip, sample_seed);

    /* Which configurations. */
    const char *names[4] = {"base", "rag", "lora", "rag+lora"};
    bool want[4] = {true, store_dir != NULL, lora.n > 0, lora.n > 0 && store_dir != NULL};
    if (configs) {
        memset(want, 0, sizeof want);
        char *list = sb_strdup(configs), *save = NULL;
        for (char *t = strtok_r(list, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
            int c = -1;
            for (int j = 0; j < 4; j++)
                if (!strcmp(t, names[j])) c = j;
            if (c < 0) cli_die("eval: unknown configuration '%s' (base, rag, lora, rag+lora)", t);
            if ((c == 1 || c == 3) && !store_dir) cli_die("eval: configuration %s needs --store DIR", t);
            if (c >= 2 && !lora.n) cli_die("eval: configuration %s needs --lora FILE", t);
            want[c] = true;
        }
        free(list);
    }
    sb_model *m = sb_model_open(model, &err);
    if (!m) cli_die("%s", err.msg);
    if (repack) cli_repack(m, model);
    int train = sb_model_get_config(m)->n_ctx_train;
    if (train > 0 && n_ctx > train) n_ctx = train;
    sb_session *sess = sb_session_new(m, n_ctx, &err);
    if (!sess) cli_die("%s", err.msg);
    if (threads && sb_ctx_set_threads(sb_session_ctx(sess), threads, &err) != SB_OK) cli_die("%s", err.msg);
    /* The LoRA configurations: the same model, a second session with the
     * adapters attached (an adapter for another base model fails here). */
    sb_session *sess_lora = NULL;
    if (want[2] || want[3]) {
        if (!(sess_lora = sb_session_new(m, n_ctx, &err))) cli_die("%s", err.msg);
        if (threads && sb_ctx_set_threads(sb_session_ctx(sess_lora), threads, &err) != SB_OK) cli_die("%s", err.msg);
        cli_adapters_attach(&lora, m, sb_session_ctx(sess_lora));
    }
    char *adapters = lora.n ? sb_eval_adapter_id(lora.path, lora.scale, lora.n, &err) : NULL;
    if (lora.n && !adapters) cli_die("%s", err.msg);
    sb_eval_config cfg[4];
    int n_cfg = 0;
    for (int c = 0; c < 4; c++)
        if (want[c])
            cfg[n_cfg++] = (sb_eval_config){names[c], m, c >= 2 ? sess_lora : sess, c == 1 || c == 3,
                                            c >= 2 ? adapters : NULL};

    sb_store *store = NULL;
    sb_encoder *enc = NULL;
    char *emb = NULL;
    if (store_dir) {
        store = sb_store_open(store_dir, false, &err);
        if (!store) cli_die("%s", err.msg);
        if (!sb_store_model(store)) cli_die("%s: the store is empty (run sabio ingest first)", sb_store_name(store));
        emb = embed ? sb_strdup(embed) : sb_aprintf("models/%s", sb_store_model(store));
        enc = sb_encoder_open(emb, &err);
        if (!enc) cli_die("%s", err.msg);
        char *id = cli_model_id(emb);
        if (sb_store_bind_model(store, id, sb_encoder_dim(enc), &err) != SB_OK) cli_die("%s", err.msg);
        free(id);
    }
    o.out_dir = out;
    o.ask.gen.n_predict = o.ask.answer_tokens;
    char *cmdline = join_args(argc, argv);
    o.command = cmdline;
    fprintf(stderr, "sabio: eval %d of %d questions x %d configurations -> %s\n", n, n_all, n_cfg, out);
    eval_progress pr = {sb_time_sec(), -1, isatty(2)};
    int missing;
    sb_status st = sb_eval_run(q, n, cfg, n_cfg, store, enc, &o, on_answer, &pr, &missing, &err);
    if (pr.tty) fputc('\n', stderr);
    if (st != SB_OK) cli_die("%s", err.msg);
    if (o.partial) fprintf(stderr, "sabio: partial report in %s/report.md (%d answers still missing)\n", out, missing);
    else if (missing) fprintf(stderr, "sabio: shard %d/%d done; %d answers of other shards missing, no report yet\n", o.shard, o.n_shards, missing);
    else fprintf(stderr, "sabio: report in %s/report.md\n", out);
    free(cmdline);
    free(emb);
    sb_encoder_free(enc);
    sb_store_close(store);
    free(adapters);
    sb_session_free(sess_lora);
    sb_session_free(sess);
    sb_model_free(m);
    sb_eval_questions_free(q, n_all);
    return 0;
}
