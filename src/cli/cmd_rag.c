/*
 * cmd_rag.c - the knowledge-store commands: `sabio ingest`, `sabio search`,
 * `sabio docs`.
 */
#include "cli/cli.h"
#include "model/model.h"
#include "rag/ask.h"
#include "rag/store.h"

#include <libgen.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define DEFAULT_ENCODER "models/all-MiniLM-L6-v2"

/* The encoder's identity recorded in a store: its folder's name. */
char *cli_model_id(const char *path) {
    char *copy = sb_strdup(path), *id;
    size_t n = strlen(copy);
    while (n > 1 && copy[n - 1] == '/') copy[--n] = 0;
    id = sb_strdup(basename(copy));
    free(copy);
    return id;
}

static sb_encoder *open_encoder(const char *path) {
    sb_err err = {0};
    sb_encoder *e = sb_encoder_open(path, &err);
    if (!e) cli_die("%s", err.msg);
    return e;
}

typedef struct progress {
    double t0;
    bool tty;
} progress;

static void on_file(const char *path, sb_status st, const char *msg, const sb_ingest_stats *s, int total, void *user) {
    progress *p = user;
    double el = sb_time_sec() - p->t0;
    double rate = el > 0 ? s->chunks_added / el : 0;
    double eta = s->files_seen ? el / s->files_seen * (total - s->files_seen) : 0;
    if (st != SB_OK) fprintf(stderr, "%ssabio: skipped: %s\n", p->tty ? "\r\033[K" : "", msg);
    if (p->tty)
        fprintf(stderr, "\r\033[Kfiles %d/%d, chunks %lld, %.1f chunks/s, ETA %.0fs", s->files_seen, total,
                (long long)s->chunks_added, rate, eta);
    else if (st == SB_OK)
        fprintf(stderr, "sabio: %d/%d %s (%lld chunks so far, %.1f chunks/s)\n", s->files_seen, total, path,
                (long long)s->chunks_added, rate);
}

int cmd_ingest(int argc, char **argv) {
    const char *store = NULL, *model = NULL;
    const char *paths[256];
    int n_paths = 0;
    sb_ingest_opts o = {.chunk = {200, 32}, .loader = {NULL, 1}};
    for (int i = 1; i < argc; i++) {
        if (cli_is(argv[i], "-h,--help")) {
            printf("usage: sabio ingest --store DIR [-m ENCODER] PATH...\n"
                   "Adds files and folders (txt, md, html, pdf, jsonl, csv) to the store: new files are added, changed\n"
                   "ones re-embedded, unchanged ones skipped, and files gone from an ingested folder removed.\n\n"
                   "  --store DIR          the store folder (created if needed), or postgres://USER@HOST/DB\n"
                   "  -m, --model DIR      embedding model (default: the store's, else %s)\n"
                   "  --chunk-tokens N     target chunk size in tokens (default 200)\n"
                   "  --overlap N          tokens repeated between chunks (default 32)\n"
                   "  --field NAME         JSONL: the field holding the text (default text)\n"
                   "  --csv-rows N         CSV: rows per record (default 1)\n",
                   DEFAULT_ENCODER);
            return 0;
        }
        if (cli_is(argv[i], "--store")) store = cli_value(argc, argv, &i);
        else if (cli_is(argv[i], "-m,--model")) model = cli_value(argc, argv, &i);
        else if (cli_is(argv[i], "--chunk-tokens")) o.chunk.target_tokens = (int)cli_long(argv[i], cli_value(argc, argv, &i), 16, 8192);
        else if (cli_is(argv[i], "--overlap")) o.chunk.overlap_tokens = (int)cli_long(argv[i], cli_value(argc, argv, &i), 0, 4096);
        else if (cli_is(argv[i], "--field")) o.loader.jsonl_field = cli_value(argc, argv, &i);
        else if (cli_is(argv[i], "--csv-rows")) o.loader.csv_rows_per_record = (int)cli_long(argv[i], cli_value(argc, argv, &i), 1, 1 << 20);
        else if (argv[i][0] == '-') cli_die("ingest: unknown option '%s'", argv[i]);
        else if (n_paths < 256) paths[n_paths++] = argv[i];
        else cli_die("ingest: at most 256 paths");
    }
    if (!store) cli_die("ingest: --store DIR is required");
    if (!n_paths) cli_die("ingest: nothing to ingest (give files or folders)");
    sb_err err = {0};
    sb_store *s = sb_store_open(store, true, &err);
    if (!s) cli_die("%s", err.msg);
    char *fallback = sb_store_model(s) ? sb_aprintf("models/%s", sb_store_model(s)) : NULL;
    const char *mpath = model ? model : fallback && sb_is_dir(fallback) ? fallback : DEFAULT_ENCODER;
    sb_encoder *enc = open_encoder(mpath);
    char *id = cli_model_id(mpath);
    if (sb_store_bind_model(s, id, sb_encoder_dim(enc), &err) != SB_OK) cli_die("%s", err.msg);
    progress p = {sb_time_sec(), isatty(2)};
    sb_ingest_stats st;
    sb_status rc = sb_store_ingest(s, enc, paths, n_paths, &o, &st, on_file, &p, &err);
    if (p.tty) fputc('\n', stderr);
    if (rc != SB_OK) cli_die("%s", err.msg);
    fprintf(stderr,
            "sabio: %d files: %d added, %d updated, %d unchanged, %d removed, %d failed; %lld chunks in %.1fs\n",
            st.files_seen, st.files_added, st.files_updated, st.files_unchanged, st.files_removed, st.files_failed,
            (long long)st.chunks_added, sb_time_sec() - p.t0);
    free(id);
    free(fallback);
    sb_encoder_free(enc);
    sb_store_close(s);
    return st.files_failed && st.files_failed == st.files_seen ? 1 : 0;
}

static void json_str(const char *s) {
    putchar('"');
    for (; s && *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') printf("\\%c", c);
        else if (c == '\n') fputs("\\n", stdout);
        else if (c == '\t') fputs("\\t", stdout);
        else if (c < 0x20) printf("\\u%04x", c);
        else putchar(c);
    }
    putchar('"');
}

/* YYYY-MM-DD (UTC midnight; end_of_day: its last second) or Unix seconds */
static int64_t parse_date(const char *flag, const char *v, bool end_of_day) {
    struct tm tm = {0};
    const char *end = strptime(v, "%Y-%m-%d", &tm);
    if (end && !*end) return (int64_t)timegm(&tm) + (end_of_day ? 86399 : 0);
    return cli_long(flag, v, 1, LONG_MAX);
}

int cmd_search(int argc, char **argv) {
    const char *store = NULL, *model = NULL, *query = NULL;
    int k = 5;
    bool json = false;
    sb_search_mode mode = SB_SEARCH_HYBRID;
    sb_search_opts o = {0};
    for (int i = 1; i < argc; i++) {
        if (cli_is(argv[i], "-h,--help")) {
            printf("usage: sabio search --store DIR [options] QUERY\n"
                   "  --mode hybrid|dense|bm25   retrieval (default hybrid: reciprocal-rank fusion)\n"
                   "  -k N                       how many chunks (default 5)\n"
                   "  -m, --model DIR            embedding model (default: the store's)\n"
                   "  --json                     one JSON object per hit\n"
                   "  --path GLOB                only documents whose path matches (*, ?, [..])\n"
                   "  --type TYPE                only documents of this type (txt, md, html, pdf, csv, jsonl)\n"
                   "  --since DATE, --until DATE only documents modified in that range (YYYY-MM-DD or Unix seconds)\n"
                   "  --keep-overlaps            keep chunks that overlap a better hit of the same document\n"
                   "  --exact                    dense by exact scan, never the HNSW index\n");
            return 0;
        }
        if (cli_is(argv[i], "--store")) store = cli_value(argc, argv, &i);
        else if (cli_is(argv[i], "-m,--model")) model = cli_value(argc, argv, &i);
        else if (cli_is(argv[i], "-k,--top-k")) k = (int)cli_long(argv[i], cli_value(argc, argv, &i), 1, 1000);
        else if (cli_is(argv[i], "--json")) json = true;
        else if (cli_is(argv[i], "--path")) o.path_glob = cli_value(argc, argv, &i);
        else if (cli_is(argv[i], "--type")) o.type = cli_value(argc, argv, &i);
        else if (cli_is(argv[i], "--since")) o.since = parse_date(argv[i], cli_value(argc, argv, &i), false);
        else if (cli_is(argv[i], "--until")) o.until = parse_date(argv[i], cli_value(argc, argv, &i), true);
        else if (cli_is(argv[i], "--keep-overlaps")) o.keep_overlaps = true;
        else if (cli_is(argv[i], "--exact")) o.exact = true;
        else if (cli_is(argv[i], "--mode")) {
            const char *m = cli_value(argc, argv, &i);
            if (!strcmp(m, "hybrid")) mode = SB_SEARCH_HYBRID;
            else if (!strcmp(m, "dense")) mode = SB_SEARCH_DENSE;
            else if (!strcmp(m, "bm25")) mode = SB_SEARCH_BM25;
            else cli_die("search: --mode must be hybrid, dense or bm25");
        } else if (argv[i][0] == '-') cli_die("search: unknown option '%s'", argv[i]);
        else query = argv[i];
    }
    if (!store) cli_die("search: --store DIR is required");
    if (!query) cli_die("search: no query");
    sb_err err = {0};
    sb_store *s = sb_store_open(store, false, &err);
    if (!s) cli_die("%s", err.msg);
    if (!sb_store_model(s)) cli_die("%s: the store is empty", sb_store_name(s));
    char *fallback = sb_aprintf("models/%s", sb_store_model(s));
    sb_encoder *enc = open_encoder(model ? model : fallback);
    char *id = cli_model_id(model ? model : fallback);
    if (sb_store_bind_model(s, id, sb_encoder_dim(enc), &err) != SB_OK) cli_die("%s", err.msg);
    sb_hit *hits;
    int n;
    o.mode = mode;
    o.k = k;
    if (sb_store_search_opts(s, enc, query, &o, &hits, &n, &err) != SB_OK) cli_die("%s", err.msg);
    for (int i = 0; i < n; i++) {
        sb_hit *h = &hits[i];
        if (json) {
            printf("{\"rank\": %d, \"score\": %.6g, \"path\": ", i + 1, h->score);
            json_str(h->path);
            printf(", \"section\": ");
            if (h->section) json_str(h->section);
            else fputs("null", stdout);
            printf(", \"line_start\": %d, \"line_end\": %d, \"page\": %d, \"text\": ", h->line_start, h->line_end,
                   h->page);
            json_str(h->text);
            puts("}");
        } else {
            printf("[%d] %.4f  %s:%d-%d%s%s%s\n", i + 1, h->score, h->path, h->line_start, h->line_end,
                   h->section ? "  (" : "", h->section ? h->section : "", h->section ? ")" : "");
            printf("    %.300s%s\n\n", h->text, strlen(h->text) > 300 ? "..." : "");
        }
    }
    sb_hits_free(hits, n);
    free(id);
    free(fallback);
    sb_encoder_free(enc);
    sb_store_close(s);
    return 0;
}

static void print_doc(const char *path, int64_t chunks, void *user) { printf("%6lld  %s\n", (long long)chunks, path); }

int cmd_docs(int argc, char **argv) {
    const char *store = NULL, *action = NULL, *target = NULL;
    for (int i = 1; i < argc; i++) {
        if (cli_is(argv[i], "-h,--help")) {
            printf("usage: sabio docs --store DIR list|stats|check|rm PATH\n"
                   "  check: bring the HNSW index up to date and verify it against the store\n");
            return 0;
        }
        if (cli_is(argv[i], "--store")) store = cli_value(argc, argv, &i);
        else if (!action) action = argv[i];
        else if (!target) target = argv[i];
        else cli_die("docs: too many arguments");
    }
    if (!store || !action) cli_die("docs: usage: sabio docs --store DIR list|stats|rm PATH");
    sb_err err = {0};
    sb_store *s = sb_store_open(store, false, &err);
    if (!s) cli_die("%s", err.msg);
    sb_status st = SB_OK;
    if (!strcmp(action, "list")) st = sb_store_list(s, print_doc, NULL, &err);
    else if (!strcmp(action, "stats")) {
        sb_store_stats ss = {0};
        st = sb_store_stats_get(s, &ss, &err);
        if (st == SB_OK)
            printf("documents %lld\nchunks %lld\nembedding model %s (%d dimensions)\n", (long long)ss.documents,
                   (long long)ss.chunks, sb_store_model(s) ? sb_store_model(s) : "(none)", ss.dim);
    } else if (!strcmp(action, "check")) {
        sb_index_report r = {0};
        st = sb_store_index_check(s, &r, &err);
        if (st == SB_OK)
            printf("index: %lld vectors (%lld tombstones), agrees with the store; %s, %lld added, %lld removed\n",
                   (long long)r.vectors, (long long)r.deleted, r.rebuilt ? "rebuilt" : "loaded", (long long)r.added,
                   (long long)r.removed);
    } else if (!strcmp(action, "rm")) {
        if (!target) cli_die("docs rm: which PATH?");
        st = sb_store_remove(s, target, &err);
    } else cli_die("docs: unknown action '%s' (list, stats, check, rm)", action);
    if (st != SB_OK) cli_die("%s", err.msg);
    sb_store_close(s);
    return 0;
}

static bool stream_out(const char *text, size_t len, void *user) {
    fwrite(text, 1, len, stdout);
    fflush(stdout);
    return true;
}

static void print_answer(const sb_ask_result *r, bool json, bool verbose) {
    if (json) {
        printf("{\"answer\": ");
        json_str(r->answer);
        printf(", \"sources\": [");
        for (int i = 0; i < r->n_sources; i++) {
            sb_hit *h = &r->sources[i].hit;
            printf("%s{\"n\": %d, \"path\": ", i ? ", " : "", r->sources[i].n);
            json_str(h->path);
            printf(", \"line_start\": %d, \"line_end\": %d, \"page\": %d, \"score\": %.6g, \"cited\": %s}", h->line_start,
                   h->line_end, h->page, h->score, r->sources[i].cited ? "true" : "false");
        }
        printf("], \"invalid_citations\": [");
        for (int i = 0; i < r->n_invalid; i++) printf(i ? ", %d" : "%d", r->invalid[i]);
        printf("], \"dropped_sources\": %d, \"prompt_tokens\": %d, \"answer_tokens\": %d, \"prompt_seconds\": %.3f, "
               "\"answer_seconds\": %.3f}\n",
               r->n_dropped, r->prompt_tokens, r->gen.n_gen, r->gen.t_prompt, r->gen.t_gen);
    } else {
        printf("\n\nSources (* = cited):\n");
        for (int i = 0; i < r->n_sources; i++) {
            sb_hit *h = &r->sources[i].hit;
            printf("  [%d]%s %s, lines %d-%d", r->sources[i].n, r->sources[i].cited ? "*" : " ", h->path, h->line_start,
                   h->line_end);
            if (h->page) printf(", page %d", h->page);
            if (h->section) printf(" (%s)", h->section);
            putchar('\n');
        }
        for (int i = 0; i < r->n_invalid; i++)
            printf("  warning: the answer cites [%d], which is not one of the sources\n", r->invalid[i]);
        if (verbose)
            fprintf(stderr, "\nsabio: %d sources given, %d dropped for the context; prompt %d tokens in %.2fs, answer %d tokens in %.2fs\n",
                    r->n_sources, r->n_dropped, r->prompt_tokens, r->gen.t_prompt, r->gen.n_gen, r->gen.t_gen);
    }
}

/* Multi-turn: each question retrieves with the previous question in front
 * of it (a follow-up like "and how do I extend it?" names nothing by
 * itself), and the model sees the earlier turns (without their sources).
 * The last MAX_TURNS turns are kept. */
#define MAX_TURNS 3
static void ask_chat(sb_store *s, sb_encoder *enc, sb_session *sess, sb_model *m, const char *first,
                     const sb_ask_params *base, bool json, bool verbose) {
    char *turns[2 * MAX_TURNS] = {0}; /* question, answer, ... oldest first */
    int n_turns = 0;
    char *line = NULL;
    size_t cap = 0;
    bool tty = isatty(0);
    for (int k = 0;; k++) {
        const char *q = NULL;
        if (k == 0 && first) {
            q = first;
        } else {
            if (tty) fputs("> ", stderr);
            ssize_t len = getline(&line, &cap, stdin);
            if (len <= 0) break;
            line[strcspn(line, "\r\n")] = 0;
            if (!line[0]) break;
            q = line;
        }
        sb_ask_params p = *base;
        sb_chat_msg hist[2 * MAX_TURNS];
        for (int i = 0; i < 2 * n_turns; i++) hist[i] = (sb_chat_msg){i % 2 ? "assistant" : "user", turns[i]};
        p.history = hist;
        p.n_history = 2 * n_turns;
        char *query = n_turns ? sb_aprintf("%s %s", turns[2 * (n_turns - 1)], q) : NULL;
        p.query = query;
        sb_err err = {0};
        sb_ask_result r;
        if (sb_ask(s, enc, sess, m, q, &p, json ? NULL : stream_out, NULL, &r, &err) != SB_OK) cli_die("%s", err.msg);
        print_answer(&r, json, verbose);
        if (!json) putchar('\n');
        fflush(stdout);
        if (n_turns == MAX_TURNS) { /* forget the oldest turn */
            free(turns[0]);
            free(turns[1]);
            memmove(turns, turns + 2, sizeof turns - 2 * sizeof turns[0]);
            n_turns--;
        }
        turns[2 * n_turns] = sb_strdup(q);
        turns[2 * n_turns + 1] = sb_strdup(r.answer);
        n_turns++;
        sb_ask_result_free(&r);
        free(query);
    }
    for (int i = 0; i < 2 * n_turns; i++) free(turns[i]);
    free(line);
}

int cmd_ask(int argc, char **argv) {
    const char *store = NULL, *model = NULL, *embed = NULL, *question = NULL, *tmpl = NULL;
    bool json = false, verbose = false, chat = false, repack = true;
    int n_ctx = 4096, threads = 0;
    sb_ask_params p = sb_ask_default_params();
    cli_adapters lora = {0};
    for (int i = 1; i < argc; i++) {
        if (cli_is(argv[i], "-h,--help")) {
            printf("usage: sabio ask --store DIR -m MODEL [options] QUESTION\n"
                   "       sabio ask --chat --store DIR -m MODEL [options] [FIRST QUESTION]\n"
                   "Answers from the store's documents, citing them as [n], then lists the sources.\n\n"
                   "  --store DIR            the knowledge store (see sabio ingest)\n"
                   "  -m, --model PATH       the language model (.gguf or Hugging Face folder)\n"
                   "  --embed-model DIR      embedding model (default: the store's)\n"
                   "  -k N                   chunks to retrieve (default 6)\n"
                   "  --mode hybrid|dense|bm25\n"
                   "  -n, --n-predict N      answer budget in tokens (default 256)\n"
                   "  -c, --ctx-size N       context size (default 4096, at most the model's)\n"
                   "  -t, --threads N        threads (default: all cores, at most 8)\n"
                   "  --system TEXT          replace the instruction to answer from the sources\n"
                   "  --answer-prefix TEXT   the answer's first words (default \"According to source [\"; \"\" for none)\n"
                   "  --chat-template NAME   phi3, chatml or llama2 (default: from the model)\n"
                   "  --json                 one JSON object: answer, sources, citations, timings\n"
                   "  --chat                 a conversation: questions from stdin, one a line (empty line ends);\n"
                   "                         follow-ups retrieve with the previous question and see earlier turns\n"
                   "  --verbose              report dropped sources and timings\n"
                   "  --lora FILE            apply a LoRA adapter (--lora-scaled FILE S to scale it)\n"
                   CLI_REPACK_HELP "\n%s",
                   cli_sampling_help);
            return 0;
        }
        if (cli_is(argv[i], "--store")) store = cli_value(argc, argv, &i);
        else if (cli_is(argv[i], "-m,--model")) model = cli_value(argc, argv, &i);
        else if (cli_is(argv[i], "--embed-model")) embed = cli_value(argc, argv, &i);
        else if (cli_is(argv[i], "-k,--top-k-chunks")) p.k = (int)cli_long(argv[i], cli_value(argc, argv, &i), 1, 100);
        else if (cli_is(argv[i], "-n,--n-predict")) p.answer_tokens = (int)cli_long(argv[i], cli_value(argc, argv, &i), 1, 1 << 16);
        else if (cli_is(argv[i], "-c,--ctx-size")) n_ctx = (int)cli_long(argv[i], cli_value(argc, argv, &i), 256, 1 << 20);
        else if (cli_is(argv[i], "--system")) p.system = cli_value(argc, argv, &i);
        else if (cli_is(argv[i], "--answer-prefix")) p.answer_prefix = cli_value(argc, argv, &i);
        else if (cli_is(argv[i], "-t,--threads")) threads = (int)cli_long(argv[i], cli_value(argc, argv, &i), 1, 256);
        else if (cli_is(argv[i], "--chat-template")) tmpl = cli_value(argc, argv, &i);
        else if (cli_is(argv[i], "--json")) json = true;
        else if (cli_is(argv[i], "--chat")) chat = true;
        else if (cli_is(argv[i], "-nr,--no-repack")) repack = false;
        else if (cli_is(argv[i], "--verbose,-v")) verbose = true;
        else if (cli_is(argv[i], "--mode")) {
            const char *m = cli_value(argc, argv, &i);
            p.mode = !strcmp(m, "dense") ? SB_SEARCH_DENSE : !strcmp(m, "bm25") ? SB_SEARCH_BM25 : SB_SEARCH_HYBRID;
        } else if (cli_parse_sampling(argc, argv, &i, &p.gen.sampling)) {
        } else if (cli_parse_lora(argc, argv, &i, &lora)) {
        } else if (argv[i][0] == '-') cli_die("ask: unknown option '%s' (see sabio ask --help)", argv[i]);
        else question = argv[i];
    }
    if (!store) cli_die("ask: --store DIR is required");
    if (!model) cli_die("ask: no model given (-m PATH)");
    if (!chat && (!question || !*question)) cli_die("ask: no question");
    if (tmpl && (p.tmpl = sb_chat_from_name(tmpl)) == SB_CHAT_UNKNOWN)
        cli_die("unknown chat template '%s' (known: phi3, chatml, llama2)", tmpl);
    p.gen.n_predict = p.answer_tokens;
    sb_err err = {0};
    sb_store *s = sb_store_open(store, false, &err);
    if (!s) cli_die("%s", err.msg);
    if (!sb_store_model(s)) cli_die("%s: the store is empty (run sabio ingest first)", sb_store_name(s));
    char *fallback = sb_aprintf("models/%s", sb_store_model(s));
    sb_encoder *enc = open_encoder(embed ? embed : fallback);
    char *id = cli_model_id(embed ? embed : fallback);
    if (sb_store_bind_model(s, id, sb_encoder_dim(enc), &err) != SB_OK) cli_die("%s", err.msg);
    sb_model *m = sb_model_open(model, &err);
    if (!m) cli_die("%s", err.msg);
    if (repack) cli_repack(m, model);
    int train = sb_model_get_config(m)->n_ctx_train;
    if (train > 0 && n_ctx > train) n_ctx = train;
    sb_session *sess = sb_session_new(m, n_ctx, &err);
    if (!sess) cli_die("%s", err.msg);
    if (threads && sb_ctx_set_threads(sb_session_ctx(sess), threads, &err) != SB_OK) cli_die("%s", err.msg);
    cli_adapters_attach(&lora, m, sb_session_ctx(sess));
    sb_ask_result r;
    if (!chat) {
        if (sb_ask(s, enc, sess, m, question, &p, json ? NULL : stream_out, NULL, &r, &err) != SB_OK) cli_die("%s", err.msg);
        print_answer(&r, json, verbose);
        sb_ask_result_free(&r);
    } else {
        ask_chat(s, enc, sess, m, question, &p, json, verbose);
    }
    sb_session_free(sess);
    sb_model_free(m);
    free(id);
    free(fallback);
    sb_encoder_free(enc);
    sb_store_close(s);
    return 0;
}
