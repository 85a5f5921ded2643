/*
 * dataset.c - JSONL chat fine-tuning data (dataset.h): parse (jansson),
 * render with the chat template, tokenize, mark the assistant tokens.
 *
 * The assistant tokens are found by rendering prefixes: for assistant turn
 * k, the conversation up to k with the generation prompt, and up to and
 * including k; the tokens between the two lengths are turn k's. This needs
 * every prefix's tokens to be a prefix of the whole conversation's, which
 * the templates' special-token boundaries give; it is checked.
 */
#include "train/dataset.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/lora.h"

#define MAX_MSGS 256

/* One line into messages borrowed from root; false with why on a bad line. */
static bool parse_line(const char *line, size_t len, json_t **root, sb_chat_msg *msgs, size_t *n_msgs, char *why,
                       size_t wn) {
    json_error_t je;
    *root = json_loadb(line, len, JSON_REJECT_DUPLICATES, &je);
    *n_msgs = 0;
    if (!*root) {
        snprintf(why, wn, "invalid JSON at column %d: %s", je.column, je.text);
        return false;
    }
    if (!json_is_object(*root)) {
        snprintf(why, wn, "not a JSON object");
        return false;
    }
    json_t *m = json_object_get(*root, "messages");
    if (m) {
        if (!json_is_array(m) || json_array_size(m) == 0) {
            snprintf(why, wn, "'messages' is not a non-empty array");
            return false;
        }
        if (json_array_size(m) > MAX_MSGS) {
            snprintf(why, wn, "more than %d messages", MAX_MSGS);
            return false;
        }
        bool assistant = false;
        for (size_t i = 0; i < json_array_size(m); i++) {
            json_t *e = json_array_get(m, i);
            const char *role = json_string_value(json_object_get(e, "role"));
            const char *content = json_string_value(json_object_get(e, "content"));
            if (!json_is_object(e) || !role || !content) {
                snprintf(why, wn, "message %zu has no string 'role' and 'content'", i + 1);
                return false;
            }
            if (strcmp(role, "system") && strcmp(role, "user") && strcmp(role, "assistant")) {
                snprintf(why, wn, "message %zu has role '%.32s' (system, user or assistant)", i + 1, role);
                return false;
            }
            if (!strcmp(role, "system") && i > 0) {
                snprintf(why, wn, "message %zu: a system message must come first", i + 1);
                return false;
            }
            assistant |= !strcmp(role, "assistant");
            msgs[(*n_msgs)++] = (sb_chat_msg){role, content};
        }
        if (!assistant) {
            snprintf(why, wn, "no assistant message to learn from");
            return false;
        }
        return true;
    }
    const char *p = json_string_value(json_object_get(*root, "prompt"));
    const char *c = json_string_value(json_object_get(*root, "completion"));
    if (!p || !c) {
        snprintf(why, wn, "neither a 'messages' array nor 'prompt' and 'completion' strings");
        return false;
    }
    msgs[0] = (sb_chat_msg){"user", p};
    msgs[1] = (sb_chat_msg){"assistant", c};
    *n_msgs = 2;
    return true;
}

static char *render(const char *jinja, sb_chat_tmpl tmpl, const sb_chat_msg *msgs, size_t n, bool gen) {
    if (jinja && sb_chat_detect(jinja) != SB_CHAT_UNKNOWN) return sb_chat_apply_jinja(jinja, msgs, n, gen);
    return sb_chat_apply(tmpl, msgs, n, gen);
}

static sb_status tokenize_text(const sb_tokenizer *tok, const char *text, sb_tokens *out, sb_err *err) {
    out->n = 0;
    return sb_tokenize(tok, text, strlen(text), true, true, out, err);
}

/* Tokens of one conversation and the assistant mask (1 = learn). */
static sb_status encode(const sb_tokenizer *tok, const char *jinja, sb_chat_tmpl tmpl, const sb_chat_msg *msgs,
                        size_t n, sb_tokens *all, uint8_t **mask, char *why, size_t wn, sb_err *err) {
    sb_tokens part = {0};
    char *text = render(jinja, tmpl, msgs, n, false);
    sb_status st = SB_OK;
    if (!text) {
        snprintf(why, wn, "the chat template could not render it");
        return SB_ERR_INVALID;
    }
    if ((st = tokenize_text(tok, text, all, err)) != SB_OK) goto done;
    free(text);
    text = NULL;
    *mask = sb_calloc(all->n ? all->n : 1, 1);
    if (!*mask) {
        st = sb_err_set(err, SB_ERR_NOMEM, "out of memory");
        goto done;
    }
    for (size_t k = 0; k < n; k++) {
        if (strcmp(msgs[k].role, "assistant")) continue;
        size_t lo, hi;
        for (int pass = 0; pass < 2; pass++) {
            text = render(jinja, tmpl, msgs, pass ? k + 1 : k, !pass);
            if (!text || (st = tokenize_text(tok, text, &part, err)) != SB_OK) {
                if (st == SB_OK) st = SB_ERR_NOMEM;
                goto done;
            }
            free(text);
            text = NULL;
            if (part.n > all->n || memcmp(part.ids, all->ids, part.n * sizeof(int32_t))) {
                snprintf(why, wn, "turn %zu's tokens are not a prefix of the conversation's", k + 1);
                st = SB_ERR_INVALID;
                goto done;
            }
            if (pass) hi = part.n;
            else lo = part.n;
        }
        for (size_t i = lo; i < hi; i++) (*mask)[i] = 1;
    }
done:
    free(text);
    sb_tokens_free(&part);
    return st;
}

sb_dataset *sb_dataset_from_text(const char *text, size_t len, const char *name, const sb_tokenizer *tok,
                                 const char *jinja, sb_chat_tmpl tmpl, int max_len, sb_err *err) {
    sb_dataset *d = sb_calloc(1, sizeof *d);
    sb_chat_msg *msgs = sb_calloc(MAX_MSGS, sizeof *msgs);
    size_t cap_ex = 64, cap_tok = 4096, n_tok = 0;
    if (d) {
        d->offset = sb_calloc(cap_ex + 1, sizeof(int64_t));
        d->tokens = sb_calloc(cap_tok, sizeof(int32_t));
        d->targets = sb_calloc(cap_tok, sizeof(int32_t));
    }
    if (!d || !msgs || !d->offset || !d->tokens || !d->targets) goto nomem;
    if (max_len < 2) max_len = 2;
    int line_no = 0;
    for (size_t pos = 0; pos < len;) {
        const char *line = text + pos;
        const char *nl = memchr(line, '\n', len - pos);
        size_t ll = nl ? (size_t)(nl - line) : len - pos;
        pos += ll + (nl ? 1 : 0);
        line_no++;
        size_t b = 0;
        while (b < ll && (line[b] == ' ' || line[b] == '\t' || line[b] == '\r')) b++;
        if (b == ll) continue; /* blank */
        d->n_lines++;
        json_t *root = NULL;
        size_t n_msgs = 0;
        char why[256];
        sb_tokens all = {0};
        uint8_t *mask = NULL;
        bool ok = parse_line(line, ll, &root, msgs, &n_msgs, why, sizeof why);
        if (ok && tok) {
            sb_err e2 = {0};
            sb_status st = encode(tok, jinja, tmpl, msgs, n_msgs, &all, &mask, why, sizeof why, &e2);
            if (st == SB_ERR_NOMEM) {
                json_decref(root);
                sb_tokens_free(&all);
                free(mask);
                goto nomem;
            }
            if (st != SB_OK) {
                ok = false;
                if (e2.msg[0]) snprintf(why, sizeof why, "%.250s", e2.msg);
            }
        }
        json_decref(root);
        if (!ok) {
            if (d->n_bad++ == 0) snprintf(d->first_bad, sizeof d->first_bad, "%s:%d: %s", name, line_no, why);
            if (d->n_bad <= 10) sb_log(SB_LOG_WARN, "%s:%d: skipped: %s", name, line_no, why);
            sb_tokens_free(&all);
            free(mask);
            continue;
        }
        if (!tok) continue;
        size_t n = all.n;
        if (n > (size_t)max_len) {
            n = (size_t)max_len;
            d->n_truncated++;
        }
        int n_t = 0;
        for (size_t i = 0; i + 1 < n; i++) n_t += mask[i + 1];
        if (n_t == 0) {
            d->n_dropped++;
            sb_log(SB_LOG_WARN, "%s:%d: dropped: no assistant token within %d tokens", name, line_no, max_len);
            sb_tokens_free(&all);
            free(mask);
            continue;
        }
        if (d->n == (int)cap_ex) {
            int64_t *o = sb_realloc_array(d->offset, cap_ex * 2 + 1, sizeof(int64_t));
            if (!o) goto nomem_ex;
            d->offset = o, cap_ex *= 2;
        }
        if (n_tok + n > cap_tok) {
            size_t nc = (n_tok + n) * 2;
            int32_t *t1 = sb_realloc_array(d->tokens, nc, sizeof(int32_t));
            if (t1) d->tokens = t1;
            int32_t *t2 = t1 ? sb_realloc_array(d->targets, nc, sizeof(int32_t)) : NULL;
            if (!t2) goto nomem_ex;
            d->targets = t2, cap_tok = nc;
        }
        for (size_t i = 0; i < n; i++) {
            d->tokens[n_tok + i] = all.ids[i];
            d->targets[n_tok + i] = i + 1 < n && mask[i + 1] ? all.ids[i + 1] : -1;
        }
        d->offset[d->n] = (int64_t)n_tok;
        n_tok += n;
        d->offset[++d->n] = (int64_t)n_tok;
        d->n_target_total += n_t;
        sb_tokens_free(&all);
        free(mask);
        continue;
    nomem_ex:
        sb_tokens_free(&all);
        free(mask);
        goto nomem;
    }
    free(msgs);
    if (tok && d->n == 0) {
        sb_err_set(err, SB_ERR_INVALID, "%s: no usable example in %d lines%s%s", name, d->n_lines,
                   d->n_bad ? "; first problem: " : "", d->first_bad);
        sb_dataset_free(d);
        return NULL;
    }
    return d;
nomem:
    free(msgs);
    sb_dataset_free(d);
    sb_err_set(err, SB_ERR_NOMEM, "%s: out of memory", name);
    return NULL;
}

sb_dataset *sb_dataset_load(const char *path, const sb_tokenizer *tok, const char *jinja, sb_chat_tmpl tmpl,
                            int max_len, sb_err *err) {
    char *text = NULL;
    size_t len = 0;
    if (sb_read_file(path, 0, &text, &len, err) != SB_OK) return NULL;
    sb_dataset *d = sb_dataset_from_text(text, len, path, tok, jinja, tmpl, max_len, err);
    free(text);
    return d;
}

void sb_dataset_free(sb_dataset *d) {
    if (!d) return;
    free(d->tokens);
    free(d->targets);
    free(d->offset);
    free(d);
}

/* A new dataset of the examples of d whose pick[i] == want. */
static sb_dataset *subset(const sb_dataset *d, const uint8_t *pick, uint8_t want) {
    sb_dataset *o = sb_calloc(1, sizeof *o);
    size_t nt = 0;
    int ne = 0;
    for (int i = 0; i < d->n; i++)
        if (pick[i] == want) nt += (size_t)sb_dataset_len(d, i), ne++;
    if (!o || !(o->offset = sb_calloc((size_t)ne + 1, sizeof(int64_t))) ||
        !(o->tokens = sb_calloc(nt ? nt : 1, sizeof(int32_t))) || !(o->targets = sb_calloc(nt ? nt : 1, sizeof(int32_t)))) {
        sb_dataset_free(o);
        return NULL;
    }
    size_t at = 0;
    for (int i = 0; i < d->n; i++) {
        if (pick[i] != want) continue;
        size_t n = (size_t)sb_dataset_len(d, i);
        memcpy(o->tokens + at, d->tokens + d->offset[i], n * sizeof(int32_t));
        memcpy(o->targets + at, d->targets + d->offset[i], n * sizeof(int32_t));
        for (size_t k = 0; k < n; k++) o->n_target_total += o->targets[at + k] >= 0;
        o->offset[o->n] = (int64_t)at;
        at += n;
        o->offset[++o->n] = (int64_t)at;
    }
    return o;
}

sb_status sb_dataset_split(sb_dataset *d, double frac, uint64_t seed, sb_dataset **val, sb_err *err) {
    *val = NULL;
    if (!(frac > 0 && frac < 1)) return sb_err_set(err, SB_ERR_RANGE, "validation fraction %g is not in (0, 1)", frac);
    uint8_t *pick = sb_calloc((size_t)d->n, 1);
    if (!pick) return sb_err_set(err, SB_ERR_NOMEM, "out of memory");
    int nv = 0;
    for (int i = 0; i < d->n; i++) nv += pick[i] = sb_rng_unit(sb_rng_at(seed ^ 0x5EEDull, (uint64_t)i)) < frac;
    if (nv == 0 || nv == d->n) pick[0] = !pick[0], nv += pick[0] ? 1 : -1; /* both sides non-empty */
    if (d->n < 2 || nv == 0 || nv == d->n) {
        free(pick);
        return sb_err_set(err, SB_ERR_INVALID, "%d examples cannot be split into training and validation", d->n);
    }
    sb_dataset *v = subset(d, pick, 1), *t = subset(d, pick, 0);
    free(pick);
    if (!v || !t) {
        sb_dataset_free(v), sb_dataset_free(t);
        return sb_err_set(err, SB_ERR_NOMEM, "out of memory");
    }
    /* d becomes the training part */
    free(d->tokens), free(d->targets), free(d->offset);
    d->tokens = t->tokens, d->targets = t->targets, d->offset = t->offset, d->n = t->n;
    d->n_target_total = t->n_target_total;
    free(t);
    *val = v;
    return SB_OK;
}
