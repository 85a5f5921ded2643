/*
 * evaluate.c - the evaluation runner and its reports (evaluate.h).
 *
 * The cache is JSONL, one finished (configuration, question) per line,
 * appended and flushed as each answer completes; a line cut by a crash is
 * ignored on resume. Its first line fingerprints the question set and the
 * settings, so a cache from other questions or settings is refused rather
 * than mixed in; an answer made with an adapter names it (file name, scale,
 * content hash), so configurations may be run at different times into one
 * folder (base and RAG while the adapter trains), and answers of another
 * adapter are refused too. Reports are rewritten atomically from the cache.
 */
#include "rag/evaluate.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* One finished answer. */
typedef struct record {
    double em, f1, recall, cite_ok, support; /* recall, cite_ok, support < 0: not applicable */
    double seconds, t_gen;
    int n_gen;
    bool done;
} record;

static uint64_t fnv1a(uint64_t h, const void *p, size_t n) {
    for (size_t i = 0; i < n; i++) h = (h ^ ((const unsigned char *)p)[i]) * 0x100000001b3ull;
    return h;
}

#define FNV_START 0xcbf29ce484222325ull

/* FNV-1a over the questions and settings that decide the answers (not the
 * adapters: each answer line names its own, so configurations can be run
 * at different times into one folder). */
static uint64_t fingerprint(const sb_eval_question *q, int n, const sb_eval_opts *o) {
    uint64_t h = FNV_START;
    for (int i = 0; i < n; i++) {
        h = fnv1a(h, q[i].id, strlen(q[i].id) + 1);
        h = fnv1a(h, q[i].question, strlen(q[i].question) + 1);
    }
    const sb_ask_params *a = &o->ask;
    int ints[4] = {a->k, (int)a->mode, a->answer_tokens, a->gen.n_predict};
    h = fnv1a(h, ints, sizeof ints);
    h = fnv1a(h, &a->gen.sampling.temp, sizeof a->gen.sampling.temp);
    h = fnv1a(h, &a->gen.sampling.seed, sizeof a->gen.sampling.seed);
    if (a->system) h = fnv1a(h, a->system, strlen(a->system));
    if (a->answer_prefix) h = fnv1a(h, a->answer_prefix, strlen(a->answer_prefix) + 1);
    return h;
}

/* Hashes one file into h; a missing optional file leaves h as it is. */
static sb_status hash_file(const char *path, bool optional, uint64_t *h, size_t *len, sb_err *err) {
    if (optional && !sb_file_exists(path)) return SB_OK;
    sb_mmap m;
    sb_status st = sb_mmap_open(&m, path, err);
    if (st != SB_OK) return st;
    *h = fnv1a(*h, m.data ? m.data : "", m.size);
    *len += m.size;
    sb_mmap_close(&m);
    return SB_OK;
}

char *sb_eval_adapter_id(const char *const *paths, const float *scales, int n, sb_err *err) {
    sb_buf b = {0};
    for (int a = 0; a < n; a++) {
        uint64_t h = FNV_START;
        size_t len = 0;
        sb_status st;
        if (sb_is_dir(paths[a])) { /* a PEFT folder: its weights and its config (alpha, rank) */
            char *w = sb_path_join(paths[a], "adapter_model.safetensors");
            char *c = sb_path_join(paths[a], "adapter_config.json");
            st = w && c ? hash_file(w, false, &h, &len, err) : sb_err_set(err, SB_ERR_NOMEM, "out of memory");
            if (st == SB_OK) st = hash_file(c, true, &h, &len, err);
            free(w);
            free(c);
        } else { /* a file; a PEFT safetensors file is read with the config beside it */
            st = hash_file(paths[a], false, &h, &len, err);
            const char *slash = strrchr(paths[a], '/');
            char *dir = slash ? sb_strndup(paths[a], (size_t)(slash - paths[a])) : sb_strdup(".");
            char *c = dir ? sb_path_join(dir, "adapter_config.json") : NULL;
            if (st == SB_OK && !c) st = sb_err_set(err, SB_ERR_NOMEM, "out of memory");
            if (st == SB_OK && strstr(paths[a], ".safetensors")) st = hash_file(c, true, &h, &len, err);
            free(dir);
            free(c);
        }
        if (st != SB_OK) {
            sb_buf_free(&b);
            return NULL;
        }
        const char *base = strrchr(paths[a], '/');
        sb_buf_printf(&b, "%s%s*%g fnv1a64:%016llx:%zu", a ? "," : "", base && base[1] ? base + 1 : paths[a],
                      scales[a], (unsigned long long)h, len);
    }
    if (!b.data && !sb_buf_puts(&b, "")) sb_err_set(err, SB_ERR_NOMEM, "out of memory");
    return b.data;
}

static int config_index(const sb_eval_config *cfg, int n_cfg, const char *name) {
    for (int i = 0; i < n_cfg; i++)
        if (!strcmp(cfg[i].name, name)) return i;
    return -1;
}

static int question_index(const sb_eval_question *q, int n, const char *id) {
    for (int i = 0; i < n; i++)
        if (!strcmp(q[i].id, id)) return i;
    return -1;
}

static double num(json_t *o, const char *k) {
    json_t *v = json_object_get(o, k);
    return json_is_number(v) ? json_number_value(v) : -1;
}

/* Loads the cache into rec[cfg * n + question]. A cache with another
 * fingerprint is an error naming it. */
static sb_status load_cache(const char *path, uint64_t fp, const sb_eval_question *q, int n,
                            const sb_eval_config *cfg, int n_cfg, record *rec, int *n_done, sb_err *err) {
    *n_done = 0;
    FILE *f = fopen(path, "r");
    if (!f) return errno == ENOENT ? SB_OK : sb_err_set(err, SB_ERR_IO, "%s: %s", path, strerror(errno));
    char *line = NULL;
    size_t cap = 0;
    int ln = 0;
    sb_status st = SB_OK;
    while (getline(&line, &cap, f) > 0) {
        json_t *o = json_loads(line, 0, NULL);
        ln++;
        if (!o) continue; /* a line cut by a crash */
        if (ln == 1) {
            const char *h = json_string_value(json_object_get(o, "fingerprint"));
            char want[17];
            snprintf(want, sizeof want, "%016llx", (unsigned long long)fp);
            if (!h || strcmp(h, want))
                st = sb_err_set(err, SB_ERR_INVALID,
                                "%s was made from other questions or settings (fingerprint %s, now %s): remove it or "
                                "choose another output folder",
                                path, h ? h : "none", want);
            json_decref(o);
            if (st != SB_OK) break;
            continue;
        }
        int c = config_index(cfg, n_cfg, json_string_value(json_object_get(o, "config")) ?: "");
        int i = question_index(q, n, json_string_value(json_object_get(o, "id")) ?: "");
        const char *had = json_string_value(json_object_get(o, "adapter"));
        if (c >= 0 && i >= 0 && (cfg[c].adapter || had) && (!cfg[c].adapter || !had || strcmp(had, cfg[c].adapter))) {
            st = sb_err_set(err, SB_ERR_INVALID,
                            "%s:%d: %s was answered with adapter %s, now %s: remove its lines or choose another "
                            "output folder",
                            path, ln, cfg[c].name, had ? had : "none", cfg[c].adapter ? cfg[c].adapter : "none");
            json_decref(o);
            break;
        }
        if (c >= 0 && i >= 0 && !rec[c * n + i].done) {
            record *r = &rec[c * n + i];
            r->em = num(o, "em");
            r->f1 = num(o, "f1");
            r->recall = num(o, "context_recall");
            r->cite_ok = num(o, "citations_ok");
            r->support = num(o, "support");
            r->seconds = num(o, "seconds");
            r->t_gen = num(o, "gen_seconds");
            r->n_gen = (int)num(o, "gen_tokens");
            r->done = true;
            ++*n_done;
        }
        json_decref(o);
    }
    free(line);
    fclose(f);
    return st;
}

static sb_status append_line(FILE *f, json_t *o, const char *path, sb_err *err) {
    char *s = json_dumps(o, JSON_COMPACT);
    bool ok = s && fprintf(f, "%s\n", s) > 0 && fflush(f) == 0;
    free(s);
    return ok ? SB_OK : sb_err_set(err, SB_ERR_IO, "%s: cannot write: %s", path, strerror(errno));
}

static const char *base_name(const char *p) {
    const char *s = strrchr(p, '/');
    return s ? s + 1 : p;
}

typedef struct doclist {
    char **names;
    int n, cap;
} doclist;

static void add_doc(const char *path, int64_t chunks, void *user) {
    doclist *d = user;
    if (d->n == d->cap) {
        int nc = d->cap ? d->cap * 2 : 64;
        char **g = sb_realloc_array(d->names, (size_t)nc, sizeof *g);
        if (!g) return;
        d->names = g;
        d->cap = nc;
    }
    d->names[d->n++] = sb_strdup(base_name(path));
}

/* Every question naming a doc must name one the store holds (by file name). */
static sb_status check_docs(sb_store *store, const sb_eval_question *q, int n, sb_err *err) {
    doclist d = {0};
    sb_status st = sb_store_list(store, add_doc, &d, err);
    for (int i = 0; st == SB_OK && i < n; i++) {
        if (!q[i].doc) continue;
        bool found = false;
        for (int j = 0; j < d.n && !found; j++) found = d.names[j] && !strcmp(d.names[j], base_name(q[i].doc));
        if (!found)
            st = sb_err_set(err, SB_ERR_NOT_FOUND, "question %s names doc '%s', which the store does not hold",
                            q[i].id, q[i].doc);
    }
    for (int j = 0; j < d.n; j++) free(d.names[j]);
    free(d.names);
    return st;
}

/* Answers one question in one configuration and scores it. */
static sb_status run_one(const sb_eval_question *q, const sb_eval_config *c, sb_store *store, sb_encoder *enc,
                         const sb_eval_opts *o, record *r, char **answer, sb_err *err) {
    sb_ask_result res;
    double t0 = sb_time_sec();
    sb_session_reset(c->session);
    sb_status st = sb_ask(c->rag ? store : NULL, enc, c->session, c->model, q->question, &o->ask, NULL, NULL, &res, err);
    if (st != SB_OK) return sb_err_prefix(err, "question %s (%s)", q->id, c->name);
    const char *const *refs = (const char *const *)q->answers;
    /* Scored: what the model wrote, without the citation markers (which no
     * reference contains). A given prefix ending in "[" ("According to
     * source [") is dropped with the number and "]" the model closed it with. */
    const char *said = res.answer + res.prefix_len;
    if (res.prefix_len && res.answer[res.prefix_len - 1] == '[') {
        const char *end = said + strspn(said, "0123456789, ");
        if (*end == ']') said = end + 1 + strspn(end + 1, ", ");
    }
    char *plain = sb_eval_strip_citations(said);
    if (!plain) {
        sb_ask_result_free(&res);
        return sb_err_set(err, SB_ERR_NOMEM, "out of memory");
    }
    const char *text = plain;
    r->em = sb_eval_exact_max(text, refs, q->n_answers);
    r->f1 = sb_eval_f1_max(text, refs, q->n_answers);
    r->recall = r->cite_ok = r->support = -1;
    if (c->rag) {
        sb_buf ctx = {0};
        for (int i = 0; i < res.n_sources; i++) {
            sb_buf_puts(&ctx, res.sources[i].hit.text);
            sb_buf_puts(&ctx, "\n");
        }
        const char *ct = ctx.data ? ctx.data : "";
        r->recall = sb_eval_context_recall(ct, refs, q->n_answers);
        r->cite_ok = sb_eval_citations_ok(res.answer, res.n_sources);
        r->support = sb_eval_support(text, ct);
        sb_buf_free(&ctx);
    }
    r->seconds = sb_time_sec() - t0;
    r->t_gen = res.gen.t_gen;
    r->n_gen = res.gen.n_gen;
    r->done = true;
    *answer = sb_eval_valid_utf8(res.answer); /* the cache is JSON */
    free(plain);
    sb_ask_result_free(&res);
    return SB_OK;
}

/* ---- reports ---- */

typedef struct summary {
    int n;
    double em, f1, recall, cite_ok, support; /* means; < 0: not applicable */
    double f1_lo, f1_hi;                     /* 95% CI of the mean F1 */
    double p50, p95, tps;
} summary;

static double mean_of(const record *r, int n, size_t off) {
    double s = 0;
    int k = 0;
    for (int i = 0; i < n; i++) {
        double v = *(const double *)((const char *)&r[i] + off);
        if (v >= 0) {
            s += v;
            k++;
        }
    }
    return k ? s / k : -1;
}

static sb_status summarize(const record *r, int n, const sb_eval_opts *o, summary *s, sb_err *err) {
    memset(s, 0, sizeof *s);
    s->n = n;
    s->em = mean_of(r, n, offsetof(record, em));
    s->f1 = mean_of(r, n, offsetof(record, f1));
    s->recall = mean_of(r, n, offsetof(record, recall));
    s->cite_ok = mean_of(r, n, offsetof(record, cite_ok));
    s->support = mean_of(r, n, offsetof(record, support));
    double *f1 = sb_calloc((size_t)n, sizeof *f1), *zero = sb_calloc((size_t)n, sizeof *zero),
           *lat = sb_calloc((size_t)n, sizeof *lat);
    sb_status st = f1 && zero && lat ? SB_OK : sb_err_set(err, SB_ERR_NOMEM, "out of memory");
    double gen_t = 0, gen_n = 0;
    for (int i = 0; st == SB_OK && i < n; i++) {
        f1[i] = r[i].f1;
        lat[i] = r[i].seconds;
        gen_t += r[i].t_gen;
        gen_n += r[i].n_gen;
    }
    double d;
    if (st == SB_OK) st = sb_eval_bootstrap_diff(f1, zero, n, o->bootstrap, o->seed, &d, &s->f1_lo, &s->f1_hi, err);
    if (st == SB_OK) {
        s->p50 = sb_eval_percentile(lat, n, 50);
        s->p95 = sb_eval_percentile(lat, n, 95);
        s->tps = gen_t > 0 ? gen_n / gen_t : 0;
    }
    free(f1);
    free(zero);
    free(lat);
    return st;
}

typedef struct comparison {
    int a, b; /* configuration indexes: F1(a) - F1(b) */
    double diff, lo, hi;
} comparison;

static json_t *opt_num(double v) { return v < 0 ? json_null() : json_real(round(v * 1e6) / 1e6); }
static json_t *r6(double v) { return json_real(round(v * 1e6) / 1e6); }

static sb_status write_json(const char *dir, const char *name, json_t *o, sb_err *err) {
    char *path = sb_path_join(dir, name);
    char *s = json_dumps(o, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    sb_status st = path && s ? sb_write_file_atomic(path, s, strlen(s), err) : sb_err_set(err, SB_ERR_NOMEM, "out of memory");
    free(s);
    free(path);
    return st;
}

static void svg_text(sb_buf *b, const char *s) {
    for (; *s; s++) {
        if (*s == '<') sb_buf_puts(b, "&lt;");
        else if (*s == '>') sb_buf_puts(b, "&gt;");
        else if (*s == '&') sb_buf_puts(b, "&amp;");
        else sb_buf_append(b, s, 1);
    }
}

/* Bars with 95% CI whiskers on a 0..1 axis, one per configuration; plain
 * SVG 1.1 that browsers and rsvg render alike. */
char *sb_eval_chart_svg(const sb_eval_bar *bars, int n, const char *title) {
    static const char *colors[] = {"#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860"};
    const int W = 640, H = 400, L = 60, R = 20, T = 50, B = 60;
    double pw = W - L - R, ph = H - T - B;
    sb_buf b = {0};
    sb_buf_printf(&b,
                  "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
                  "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\" "
                  "font-family=\"sans-serif\">\n<rect width=\"%d\" height=\"%d\" fill=\"white\"/>\n",
                  W, H, W, H, W, H);
    sb_buf_printf(&b, "<text x=\"%d\" y=\"28\" font-size=\"16\" text-anchor=\"middle\">", W / 2);
    svg_text(&b, title);
    sb_buf_puts(&b, "</text>\n");
    for (int t = 0; t <= 5; t++) { /* axis: 0, 0.2, ... 1 */
        double y = T + ph - ph * t / 5.0;
        sb_buf_printf(&b, "<line x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\" stroke=\"#dddddd\"/>\n", L, y, W - R, y);
        sb_buf_printf(&b, "<text x=\"%d\" y=\"%.1f\" font-size=\"12\" text-anchor=\"end\">%.1f</text>\n", L - 6, y + 4,
                      t / 5.0);
    }
    double slot = pw / (n > 0 ? n : 1), bw = slot * 0.6, y0 = T + ph;
    for (int i = 0; i < n; i++) {
        double x = L + slot * i + (slot - bw) / 2, h = ph * fmax(0, fmin(1, bars[i].value));
        sb_buf_printf(&b, "<rect class=\"bar\" x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"%s\"/>\n", x,
                      y0 - h, bw, h, colors[i % 6]);
        double cx = x + bw / 2, ylo = y0 - ph * fmax(0, fmin(1, bars[i].lo)), yhi = y0 - ph * fmax(0, fmin(1, bars[i].hi));
        sb_buf_printf(&b,
                      "<g stroke=\"black\" stroke-width=\"1.5\"><line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\"/>"
                      "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\"/><line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" "
                      "y2=\"%.1f\"/></g>\n",
                      cx, ylo, cx, yhi, cx - 8, ylo, cx + 8, ylo, cx - 8, yhi, cx + 8, yhi);
        sb_buf_printf(&b, "<text x=\"%.1f\" y=\"%.1f\" font-size=\"12\" text-anchor=\"middle\">%.3f</text>\n", cx,
                      yhi - 6, bars[i].value);
        sb_buf_printf(&b, "<text x=\"%.1f\" y=\"%d\" font-size=\"14\" text-anchor=\"middle\">", cx, H - B + 22);
        svg_text(&b, bars[i].label);
        sb_buf_puts(&b, "</text>\n");
    }
    sb_buf_printf(&b, "<line x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\" stroke=\"black\"/>\n", L, y0, W - R, y0);
    sb_buf_puts(&b, "</svg>\n");
    return b.data;
}

static char *chart(const sb_eval_config *cfg, int n_cfg, const summary *s, int n_q, int n_set) {
    sb_eval_bar *bars = sb_calloc((size_t)n_cfg, sizeof *bars);
    char *title = n_q < n_set ? sb_aprintf("Token F1 per configuration (partial: %d of %d questions, whiskers: 95%% CI)",
                                           n_q, n_set)
                              : sb_aprintf("Token F1 per configuration (%d questions, whiskers: 95%% CI)", n_q);
    char *svg = NULL;
    if (bars && title) {
        for (int i = 0; i < n_cfg; i++) bars[i] = (sb_eval_bar){cfg[i].name, s[i].f1, s[i].f1_lo, s[i].f1_hi};
        svg = sb_eval_chart_svg(bars, n_cfg, title);
    }
    free(bars);
    free(title);
    return svg;
}

int sb_eval_recommend(int best, const double *gain_lo, int n_cfg) {
    for (int c = 0; c < best && c < n_cfg; c++)
        if (gain_lo[c] <= 0) return c;
    return best;
}

static void md_cell(sb_buf *b, double v) {
    if (v < 0) sb_buf_puts(b, " | n/a");
    else sb_buf_printf(b, " | %.3f", v);
}

static char *markdown(const sb_eval_config *cfg, int n_cfg, const summary *s, const comparison *cmp, int n_cmp,
                      int n_q, int n_set, const sb_eval_opts *o) {
    sb_buf b = {0};
    sb_buf_puts(&b, "# Evaluation report\n\n");
    if (n_q < n_set)
        sb_buf_printf(&b, "> **Partial report**: %d of the %d questions are answered in every configuration; run the "
                          "command again without --partial to finish.\n\n", n_q, n_set);
    sb_buf_printf(&b, "%d questions, %d configurations, same decoding (temperature %g, seed "
                      "%llu, answer budget %d tokens), %d chunks retrieved for RAG.\n\n",
                  n_q, n_cfg, o->ask.gen.sampling.temp, (unsigned long long)o->ask.gen.sampling.seed,
                  o->ask.answer_tokens, o->ask.k);
    if (o->command) sb_buf_printf(&b, "Command: `%s`\n\n", o->command);
    sb_buf_puts(&b, "| configuration | EM | F1 (95% CI) | context recall | citations valid | support | latency p50 / p95 "
                    "(s) | tokens/s |\n|---|---|---|---|---|---|---|---|\n");
    for (int i = 0; i < n_cfg; i++) {
        sb_buf_printf(&b, "| %s | %.3f | %.3f (%.3f-%.3f)", cfg[i].name, s[i].em, s[i].f1, s[i].f1_lo, s[i].f1_hi);
        md_cell(&b, s[i].recall);
        md_cell(&b, s[i].cite_ok);
        md_cell(&b, s[i].support);
        sb_buf_printf(&b, " | %.2f / %.2f | %.1f |\n", s[i].p50, s[i].p95, s[i].tps);
    }
    sb_buf_puts(&b, "\nEM and F1: SQuAD v1.1 normalisation, best over the reference answers, citation markers removed. "
                    "Context recall: a reference appears (as normalised words) in the sources given to the model. "
                    "Citations valid: the answer cites at least one source and every [n] names a given source. "
                    "Support (faithfulness proxy): share of the answer's words found in the sources. Latency and "
                    "tokens/s depend on the machine and its load (timings.json).\n\n");
    if (n_cmp) {
        sb_buf_puts(&b, "## F1 differences (paired bootstrap, 95% CI)\n\n| comparison | difference | 95% CI | "
                        "significant |\n|---|---|---|---|\n");
        for (int i = 0; i < n_cmp; i++)
            sb_buf_printf(&b, "| %s - %s | %+.3f | %+.3f to %+.3f | %s |\n", cfg[cmp[i].a].name, cfg[cmp[i].b].name,
                          cmp[i].diff, cmp[i].lo, cmp[i].hi, cmp[i].lo > 0 || cmp[i].hi < 0 ? "yes" : "no");
        sb_buf_puts(&b, "\n");
    }
    /* The recommendation: the best F1, then the simplest configuration the
     * best does not beat with confidence, and whether the data says more. */
    int best = 0;
    for (int i = 1; i < n_cfg; i++)
        if (s[i].f1 > s[best].f1) best = i;
    sb_buf_printf(&b, "## Recommendation\n\n**%s** has the highest F1 (%.3f, 95%% CI %.3f-%.3f).", cfg[best].name,
                  s[best].f1, s[best].f1_lo, s[best].f1_hi);
    double *gain_lo = sb_calloc((size_t)n_cfg, sizeof *gain_lo); /* lower CI bound of F1(best) - F1(c) */
    for (int i = 0; i < n_cmp; i++) {
        if (cmp[i].a != best && cmp[i].b != best) continue;
        int other = cmp[i].a == best ? cmp[i].b : cmp[i].a;
        double d = cmp[i].a == best ? cmp[i].diff : -cmp[i].diff;
        double lo = cmp[i].a == best ? cmp[i].lo : -cmp[i].hi, hi = cmp[i].a == best ? cmp[i].hi : -cmp[i].lo;
        if (gain_lo) gain_lo[other] = lo;
        sb_buf_printf(&b, " Against %s: %+.3f (%+.3f to %+.3f), %s.", cfg[other].name, d, lo, hi,
                      lo > 0 ? "a real gain" : "not distinguishable on these questions");
    }
    int rec = gain_lo ? sb_eval_recommend(best, gain_lo, n_cfg) : best;
    free(gain_lo);
    if (rec != best)
        sb_buf_printf(&b, "\n\n**Recommended: %s**, the simplest configuration that the best does not beat with "
                          "confidence (in the order base, rag, lora, rag+lora: nothing, a store, a training run, "
                          "both to maintain); the extra F1 of %s (%+.3f) is within the noise of %d questions.",
                      cfg[rec].name, cfg[best].name, s[best].f1 - s[rec].f1, n_q);
    else
        sb_buf_printf(&b, "\n\n**Recommended: %s**: it beats every simpler configuration with confidence.",
                      cfg[rec].name);
    bool rec_rag = cfg[rec].rag, rec_lora = strstr(cfg[rec].name, "lora") != NULL;
    sb_buf_puts(&b, "\n\nThe Phi-3 Cookbook's criteria: data that changes often calls for RAG (a fine-tuned model "
                    "goes stale, a store is re-ingested); stable terminology and style call for fine-tuning; business "
                    "flows that need both call for RAG + LoRA. ");
    if (!o->data_changes)
        sb_buf_puts(&b, "How often your data changes was not given (`--data-changes often|rarely`).");
    else if (!strcmp(o->data_changes, "often"))
        sb_buf_printf(&b, "Your data changes often: %s",
                      rec_rag && rec_lora ? "the measurement supports retrieval; the adapter will need retraining as "
                                            "the data changes, the store only re-ingesting."
                      : rec_rag           ? "the measurement agrees with choosing RAG."
                                          : "the measurement favours a configuration without retrieval, but a "
                                            "fine-tuned model will need retraining as the data changes; prefer "
                                            "RAG unless the gap is real.");
    else
        sb_buf_printf(&b, "Your data changes rarely: %s",
                      rec_lora ? "fine-tuning is a durable choice and the measurement supports it."
                               : "fine-tuning would stay valid, but the measurement does not show it helping here.");
    sb_buf_puts(&b, "\n\n![F1 per configuration](f1.svg)\n");
    return b.data;
}

/* Reports over n questions (of n_set in the question set). */
static sb_status write_reports(const sb_eval_question *q, int n, int n_set, const sb_eval_config *cfg, int n_cfg,
                               const record *rec, const sb_eval_opts *o, sb_err *err) {
    summary *s = sb_calloc((size_t)n_cfg, sizeof *s);
    comparison *cmp = sb_calloc((size_t)n_cfg * n_cfg, sizeof *cmp);
    double *fa = sb_calloc((size_t)n, sizeof *fa), *fb = sb_calloc((size_t)n, sizeof *fb);
    if (!s || !cmp || !fa || !fb) {
        free(s);
        free(cmp);
        free(fa);
        free(fb);
        return sb_err_set(err, SB_ERR_NOMEM, "out of memory");
    }
    sb_status st = SB_OK;
    for (int c = 0; st == SB_OK && c < n_cfg; c++) st = summarize(rec + (size_t)c * n, n, o, &s[c], err);
    int n_cmp = 0;
    for (int a = 1; st == SB_OK && a < n_cfg; a++)
        for (int b = 0; st == SB_OK && b < a; b++) {
            for (int i = 0; i < n; i++) {
                fa[i] = rec[(size_t)a * n + i].f1;
                fb[i] = rec[(size_t)b * n + i].f1;
            }
            comparison *c = &cmp[n_cmp++];
            c->a = a;
            c->b = b;
            st = sb_eval_bootstrap_diff(fa, fb, n, o->bootstrap, o->seed, &c->diff, &c->lo, &c->hi, err);
        }
    json_t *rep = json_object(), *cfgs = json_object(), *diffs = json_array(), *tim = json_object();
    for (int c = 0; st == SB_OK && c < n_cfg; c++) {
        json_t *j = json_object();
        json_object_set_new(j, "questions", json_integer(s[c].n));
        json_object_set_new(j, "rag", json_boolean(cfg[c].rag));
        json_object_set_new(j, "exact_match", r6(s[c].em));
        json_object_set_new(j, "f1", r6(s[c].f1));
        json_object_set_new(j, "f1_ci95", json_pack("[oo]", r6(s[c].f1_lo), r6(s[c].f1_hi)));
        json_object_set_new(j, "context_recall", opt_num(s[c].recall));
        json_object_set_new(j, "citations_valid", opt_num(s[c].cite_ok));
        json_object_set_new(j, "support", opt_num(s[c].support));
        json_object_set_new(cfgs, cfg[c].name, j);
        json_object_set_new(tim, cfg[c].name,
                            json_pack("{s:o,s:o,s:o}", "latency_p50_s", r6(s[c].p50), "latency_p95_s", r6(s[c].p95),
                                      "tokens_per_s", r6(s[c].tps)));
    }
    for (int i = 0; st == SB_OK && i < n_cmp; i++)
        json_array_append_new(diffs, json_pack("{s:s,s:s,s:o,s:[oo]}", "a", cfg[cmp[i].a].name, "b",
                                               cfg[cmp[i].b].name, "f1_diff", r6(cmp[i].diff), "ci95",
                                               r6(cmp[i].lo), r6(cmp[i].hi)));
    json_object_set_new(rep, "questions", json_integer(n));
    json_object_set_new(rep, "question_set", json_integer(n_set));
    json_object_set_new(rep, "seed", json_integer((json_int_t)o->ask.gen.sampling.seed));
    json_object_set_new(rep, "bootstrap", json_integer(o->bootstrap));
    json_object_set_new(rep, "configurations", cfgs);
    json_object_set_new(rep, "f1_differences", diffs);
    if (st == SB_OK) st = write_json(o->out_dir, "report.json", rep, err);
    if (st == SB_OK) st = write_json(o->out_dir, "timings.json", tim, err);
    json_decref(rep);
    json_decref(tim);
    char *svg = st == SB_OK ? chart(cfg, n_cfg, s, n, n_set) : NULL;
    char *md = st == SB_OK ? markdown(cfg, n_cfg, s, cmp, n_cmp, n, n_set, o) : NULL;
    char *p_svg = sb_path_join(o->out_dir, "f1.svg"), *p_md = sb_path_join(o->out_dir, "report.md");
    if (st == SB_OK && (!svg || !md || !p_svg || !p_md)) st = sb_err_set(err, SB_ERR_NOMEM, "out of memory");
    if (st == SB_OK) st = sb_write_file_atomic(p_svg, svg, strlen(svg), err);
    if (st == SB_OK) st = sb_write_file_atomic(p_md, md, strlen(md), err);
    free(svg);
    free(md);
    free(p_svg);
    free(p_md);
    free(s);
    free(cmp);
    free(fa);
    free(fb);
    return st;
}

/* ---- the run ---- */

static sb_status ensure_dir(const char *dir, sb_err *err) {
    if (mkdir(dir, 0777) != 0 && errno != EEXIST) return sb_err_set(err, SB_ERR_IO, "%s: %s", dir, strerror(errno));
    if (!sb_is_dir(dir)) return sb_err_set(err, SB_ERR_IO, "%s: not a folder", dir);
    return SB_OK;
}

sb_status sb_eval_run(const sb_eval_question *q, int n, const sb_eval_config *cfg, int n_cfg, sb_store *store,
                      sb_encoder *enc, const sb_eval_opts *o, sb_eval_progress cb, void *user, int *n_missing,
                      sb_err *err) {
    if (n_missing) *n_missing = 0;
    if (n <= 0 || n_cfg <= 0) return sb_err_set(err, SB_ERR_INVALID, "nothing to evaluate");
    for (int c = 0; c < n_cfg; c++)
        if (cfg[c].rag && (!store || !enc))
            return sb_err_set(err, SB_ERR_INVALID, "configuration %s needs a store (--store DIR)", cfg[c].name);
    for (int i = 0; i < n; i++)
        for (int j = 0; j < i; j++)
            if (!strcmp(q[i].id, q[j].id)) return sb_err_set(err, SB_ERR_FORMAT, "question id %s appears twice", q[i].id);
    sb_status st = store ? check_docs(store, q, n, err) : SB_OK;
    if (st == SB_OK) st = ensure_dir(o->out_dir, err);
    if (st != SB_OK) return st;
    record *rec = sb_calloc((size_t)n * n_cfg, sizeof *rec);
    char *cpath = sb_path_join(o->out_dir, "cache.jsonl");
    if (!rec || !cpath) {
        free(rec);
        free(cpath);
        return sb_err_set(err, SB_ERR_NOMEM, "out of memory");
    }
    uint64_t fp = fingerprint(q, n, o);
    int done = 0;
    st = load_cache(cpath, fp, q, n, cfg, n_cfg, rec, &done, err);
    FILE *f = st == SB_OK ? fopen(cpath, "a") : NULL;
    if (st == SB_OK && !f) st = sb_err_set(err, SB_ERR_IO, "%s: %s", cpath, strerror(errno));
    if (f) setvbuf(f, NULL, _IOFBF, 1 << 16); /* one write() per line: shards share the file */
    if (st == SB_OK && ftell(f) == 0) {
        char h[17];
        snprintf(h, sizeof h, "%016llx", (unsigned long long)fp);
        json_t *hdr = json_pack("{s:s,s:i}", "fingerprint", h, "questions", n);
        st = append_line(f, hdr, cpath, err);
        json_decref(hdr);
    }
    /* Question-major order: an interrupted run has every configuration on
     * the same prefix of the questions. */
    int shards = o->n_shards > 1 ? o->n_shards : 1;
    for (int i = 0; st == SB_OK && !o->partial && i < n; i++)
        for (int c = 0; st == SB_OK && c < n_cfg; c++) {
            record *r = &rec[(size_t)c * n + i];
            if (r->done || i % shards != o->shard) continue;
            char *answer = NULL;
            st = run_one(&q[i], &cfg[c], store, enc, o, r, &answer, err);
            if (st != SB_OK) break;
            if (!answer) {
                st = sb_err_set(err, SB_ERR_NOMEM, "out of memory");
                break;
            }
            json_t *line = json_pack("{s:s,s:s,s:s,s:f,s:f,s:o,s:o,s:o,s:f,s:f,s:i}", "config", cfg[c].name, "id",
                                     q[i].id, "answer", answer, "em", r->em, "f1", r->f1, "context_recall",
                                     opt_num(r->recall), "citations_ok", opt_num(r->cite_ok), "support",
                                     opt_num(r->support), "seconds", r->seconds, "gen_seconds", r->t_gen,
                                     "gen_tokens", r->n_gen);
            if (line && cfg[c].adapter) json_object_set_new(line, "adapter", json_string(cfg[c].adapter));
            free(answer);
            st = line ? append_line(f, line, cpath, err)
                      : sb_err_set(err, SB_ERR_INVALID, "question %s (%s): cannot record the answer in %s", q[i].id,
                                   cfg[c].name, cpath);
            json_decref(line);
            if (cb) cb(cfg[c].name, ++done, n * n_cfg, r->f1, user);
        }
    if (f) fclose(f);
    if (st == SB_OK && shards > 1 && !o->partial) { /* what the other shards have written meanwhile */
        memset(rec, 0, (size_t)n * n_cfg * sizeof *rec);
        st = load_cache(cpath, fp, q, n, cfg, n_cfg, rec, &done, err);
    }
    int missing = n * n_cfg - done;
    if (n_missing) *n_missing = missing;
    if (st == SB_OK && !missing) {
        st = write_reports(q, n, n, cfg, n_cfg, rec, o, err);
    } else if (st == SB_OK && o->partial) { /* the questions answered in every configuration */
        record *sub = sb_calloc((size_t)n * n_cfg, sizeof *sub);
        int m = 0;
        for (int i = 0; sub && i < n; i++) {
            bool all = true;
            for (int c = 0; c < n_cfg; c++) all = all && rec[(size_t)c * n + i].done;
            if (!all) continue;
            for (int c = 0; c < n_cfg; c++) sub[(size_t)c * n + m] = rec[(size_t)c * n + i];
            m++;
        }
        /* compact the configurations' rows to stride m */
        for (int c = 1; sub && c < n_cfg; c++) memmove(sub + (size_t)c * m, sub + (size_t)c * n, (size_t)m * sizeof *sub);
        if (!sub) st = sb_err_set(err, SB_ERR_NOMEM, "out of memory");
        else if (!m) st = sb_err_set(err, SB_ERR_INVALID, "no question is answered in every configuration yet");
        else st = write_reports(q, m, n, cfg, n_cfg, sub, o, err);
        free(sub);
    }
    free(rec);
    free(cpath);
    return st;
}

/* ---- splits ---- */

static sb_status write_split(const char *dir, const char *name, const sb_eval_question *q, const int *which, int n,
                             int part, sb_err *err) {
    sb_buf b = {0};
    bool ok = true;
    for (int i = 0; i < n && ok; i++) {
        if (which[i] != part) continue;
        json_t *a = json_array();
        for (int j = 0; j < q[i].n_answers; j++) json_array_append_new(a, json_string(q[i].answers[j]));
        json_t *o = json_pack("{s:s,s:s,s:o}", "id", q[i].id, "question", q[i].question, "answer",
                              q[i].n_answers == 1 ? json_string(q[i].answers[0]) : json_incref(a));
        if (o && q[i].doc) json_object_set_new(o, "doc", json_string(q[i].doc));
        char *s = o ? json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
        ok = s && sb_buf_puts(&b, s) && sb_buf_puts(&b, "\n");
        free(s);
        json_decref(o);
        json_decref(a);
    }
    char *path = sb_path_join(dir, name);
    sb_status st = ok && path ? sb_write_file_atomic(path, b.data ? b.data : "", b.len, err)
                              : sb_err_set(err, SB_ERR_NOMEM, "out of memory");
    free(path);
    sb_buf_free(&b);
    return st;
}

sb_status sb_eval_make_splits(const sb_eval_question *q, int n, bool by_doc, const int pct[3], uint64_t seed,
                              const char *out_dir, int counts[3], sb_err *err) {
    if (pct[0] < 0 || pct[1] < 0 || pct[2] < 0 || pct[0] + pct[1] + pct[2] != 100)
        return sb_err_set(err, SB_ERR_INVALID, "split shares %d/%d/%d do not add up to 100", pct[0], pct[1], pct[2]);
    /* Units: questions, or documents (each question's unit is its doc). */
    int *unit = sb_calloc((size_t)n, sizeof *unit), *which = sb_calloc((size_t)n, sizeof *which);
    int n_units = 0;
    sb_status st = unit && which ? SB_OK : sb_err_set(err, SB_ERR_NOMEM, "out of memory");
    for (int i = 0; st == SB_OK && i < n; i++) {
        if (!by_doc) {
            unit[i] = n_units++;
            continue;
        }
        if (!q[i].doc) {
            st = sb_err_set(err, SB_ERR_FORMAT, "question %s has no \"doc\": cannot split by document", q[i].id);
            break;
        }
        unit[i] = -1;
        for (int j = 0; j < i && unit[i] < 0; j++)
            if (!strcmp(q[j].doc, q[i].doc)) unit[i] = unit[j];
        if (unit[i] < 0) unit[i] = n_units++;
    }
    int *order = st == SB_OK ? sb_eval_shuffle(n_units, seed) : NULL, *part = NULL;
    if (st == SB_OK && (!order || !(part = sb_calloc((size_t)n_units, sizeof *part))))
        st = sb_err_set(err, SB_ERR_NOMEM, "out of memory");
    if (st == SB_OK) {
        /* Units in shuffled order fill test first, then valid, then train, each
         * up to its share of the questions. */
        int *size = sb_calloc((size_t)n_units, sizeof *size);
        if (!size) st = sb_err_set(err, SB_ERR_NOMEM, "out of memory");
        for (int i = 0; st == SB_OK && i < n; i++) size[unit[i]]++;
        int filled = 0, p = 2;
        double target = n * pct[2] / 100.0;
        for (int k = 0; st == SB_OK && k < n_units; k++) {
            while (p > 0 && filled >= target) {
                p--;
                target += n * pct[p] / 100.0;
            }
            part[order[k]] = p;
            filled += size[order[k]];
        }
        free(size);
    }
    counts[0] = counts[1] = counts[2] = 0;
    for (int i = 0; st == SB_OK && i < n; i++) counts[which[i] = part[unit[i]]]++;
    if (st == SB_OK) st = ensure_dir(out_dir, err);
    static const char *names[3] = {"train.jsonl", "valid.jsonl", "test.jsonl"};
    for (int p = 0; st == SB_OK && p < 3; p++) st = write_split(out_dir, names[p], q, which, n, p, err);
    free(unit);
    free(which);
    free(order);
    free(part);
    return st;
}
