/*
 * loaders.c - turning files into sb_doc: plain text, Markdown (headings kept
 * as section paths), JSONL (one field per record) and CSV (header kept,
 * each record rendered as "column: value" lines).
 *
 * Input is checked before anything is stored: a file with NUL bytes or
 * mostly invalid UTF-8 is refused as binary; stray invalid bytes in an
 * otherwise good text become U+FFFD.
 */
#include "rag/doc.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <utf8proc.h>

#define MAX_DOC_BYTES (64u << 20)

void sb_doc_free(sb_doc *d) {
    if (!d) return;
    free(d->path);
    free(d->type);
    free(d->title);
    free(d->text);
    for (size_t i = 0; i < d->n_sections; i++) free(d->sections[i].label);
    free(d->sections);
    free(d->pages);
    memset(d, 0, sizeof *d);
}

static const char *ext_of(const char *path) {
    const char *slash = strrchr(path, '/'), *dot = strrchr(path, '.');
    return dot && (!slash || dot > slash) ? dot + 1 : "";
}

static const char *type_of(const char *path) {
    const char *e = ext_of(path);
    if (!strcasecmp(e, "txt") || !strcasecmp(e, "text")) return "txt";
    if (!strcasecmp(e, "md") || !strcasecmp(e, "markdown")) return "md";
    if (!strcasecmp(e, "jsonl") || !strcasecmp(e, "ndjson")) return "jsonl";
    if (!strcasecmp(e, "csv")) return "csv";
    if (!strcasecmp(e, "html") || !strcasecmp(e, "htm")) return "html";
    if (!strcasecmp(e, "pdf")) return "pdf";
    return NULL;
}

bool sb_doc_supported(const char *path) { return type_of(path) != NULL; }

/* Valid UTF-8 copy of raw (invalid bytes -> U+FFFD); refuses binary data. */
static sb_status clean_utf8(const char *path, const char *raw, size_t n, sb_buf *out, sb_err *err) {
    size_t bad = 0;
    for (size_t i = 0; i < n;) {
        utf8proc_int32_t c;
        utf8proc_ssize_t k = utf8proc_iterate((const utf8proc_uint8_t *)raw + i, (utf8proc_ssize_t)(n - i), &c);
        if (k > 0 && c == 0) return sb_err_set(err, SB_ERR_FORMAT, "%s: binary file (NUL byte at %zu)", path, i);
        if (k <= 0) {
            bad++;
            if (!sb_buf_append(out, "\xEF\xBF\xBD", 3)) goto nomem;
            i++;
        } else {
            if (!sb_buf_append(out, raw + i, (size_t)k)) goto nomem;
            i += (size_t)k;
        }
    }
    if (n && bad * 100 > n) return sb_err_set(err, SB_ERR_FORMAT, "%s: not UTF-8 text (%zu invalid bytes)", path, bad);
    if (!out->data && !sb_buf_append(out, "", 0)) goto nomem;
    return SB_OK;
nomem:
    return sb_err_set(err, SB_ERR_NOMEM, "%s: out of memory", path);
}

static bool add_section(sb_doc *d, size_t offset, const char *label) {
    sb_doc_mark *m = sb_realloc_array(d->sections, d->n_sections + 1, sizeof *m);
    if (!m) return false;
    d->sections = m;
    m[d->n_sections].offset = offset;
    m[d->n_sections].label = sb_strdup(label);
    if (!m[d->n_sections].label) return false;
    d->n_sections++;
    return true;
}

/* Markdown headings: "# A", "## B" -> sections "A", "A > B". */
static sb_status md_sections(sb_doc *d, sb_err *err) {
    char *stack[6] = {0};
    sb_status st = SB_OK;
    bool in_code = false;
    for (size_t off = 0; off < d->len && st == SB_OK;) {
        const char *line = d->text + off, *nl = memchr(line, '\n', d->len - off);
        size_t len = nl ? (size_t)(nl - line) : d->len - off;
        if (len >= 3 && !strncmp(line, "```", 3)) in_code = !in_code;
        int level = 0;
        while (!in_code && level < (int)len && level < 7 && line[level] == '#') level++;
        if (level >= 1 && level <= 6 && (size_t)level < len && line[level] == ' ') {
            const char *h = line + level + 1;
            size_t hl = len - (size_t)level - 1;
            while (hl && (h[hl - 1] == ' ' || h[hl - 1] == '#' || h[hl - 1] == '\r')) hl--;
            for (int k = level - 1; k < 6; k++) {
                free(stack[k]);
                stack[k] = NULL;
            }
            stack[level - 1] = sb_strndup(h, hl);
            sb_buf label = {0};
            for (int k = 0; k < level; k++) {
                if (!stack[k]) continue;
                if (label.len) sb_buf_puts(&label, " > ");
                sb_buf_puts(&label, stack[k]);
            }
            if (!label.data || !add_section(d, off, label.data)) st = sb_err_set(err, SB_ERR_NOMEM, "out of memory");
            if (!d->title && level == 1 && stack[0]) d->title = sb_strdup(stack[0]);
            sb_buf_free(&label);
        }
        off += len + 1;
    }
    for (int k = 0; k < 6; k++) free(stack[k]);
    return st;
}

/* JSONL: the chosen field of each record, records separated by a blank line. */
static sb_status load_jsonl(sb_doc *d, const char *raw, size_t n, const char *field, sb_err *err) {
    sb_buf out = {0};
    size_t lineno = 0;
    for (size_t off = 0; off < n;) {
        const char *line = raw + off, *nl = memchr(line, '\n', n - off);
        size_t len = nl ? (size_t)(nl - line) : n - off;
        off += len + 1;
        lineno++;
        while (len && (line[len - 1] == '\r' || line[len - 1] == ' ')) len--;
        if (!len) continue;
        json_error_t je;
        json_t *obj = json_loadb(line, len, 0, &je);
        const char *text = json_string_value(json_object_get(obj, field));
        if (!text) {
            json_decref(obj);
            sb_buf_free(&out);
            return sb_err_set(err, SB_ERR_FORMAT, "%s: line %zu: %s", d->path, lineno,
                              obj ? "no string field named by --field" : je.text);
        }
        char label[64];
        snprintf(label, sizeof label, "line %zu", lineno);
        bool ok = (!out.len || sb_buf_puts(&out, "\n\n")) && add_section(d, out.len, label) && sb_buf_puts(&out, text);
        json_decref(obj);
        if (!ok) {
            sb_buf_free(&out);
            return sb_err_set(err, SB_ERR_NOMEM, "out of memory");
        }
    }
    free(d->text);
    d->text = out.data ? out.data : sb_strdup("");
    d->len = out.len;
    return SB_OK;
}

/* One CSV field (RFC 4180 quoting) starting at *pos; advances past the
 * delimiter. Returns false at the end of the record. */
static bool csv_field(const char *s, size_t n, size_t *pos, sb_buf *f, bool *end_rec) {
    f->len = 0;
    sb_buf_append(f, "", 0);
    size_t i = *pos;
    if (i < n && s[i] == '"') {
        i++;
        while (i < n) {
            if (s[i] == '"' && i + 1 < n && s[i + 1] == '"') {
                sb_buf_append(f, "\"", 1);
                i += 2;
            } else if (s[i] == '"') {
                i++;
                break;
            } else {
                sb_buf_append(f, s + i++, 1);
            }
        }
    }
    while (i < n && s[i] != ',' && s[i] != '\n') {
        if (s[i] != '\r') sb_buf_append(f, s + i, 1);
        i++;
    }
    *end_rec = i >= n || s[i] == '\n';
    *pos = i < n ? i + 1 : n;
    return true;
}

static sb_status load_csv(sb_doc *d, const char *raw, size_t n, int rows_per_record, sb_err *err) {
    sb_buf out = {0}, f = {0};
    char **header = NULL;
    size_t n_header = 0, pos = 0, row = 0;
    bool end;
    /* header */
    while (pos < n) {
        csv_field(raw, n, &pos, &f, &end);
        char **h = sb_realloc_array(header, n_header + 1, sizeof *h);
        if (!h) break;
        header = h;
        header[n_header++] = sb_strdup(f.data ? f.data : "");
        if (end) break;
    }
    while (pos < n) {
        row++;
        if ((row - 1) % (size_t)rows_per_record == 0) {
            char label[64];
            snprintf(label, sizeof label, "row %zu", row);
            if (out.len) sb_buf_puts(&out, "\n\n");
            add_section(d, out.len, label);
        }
        size_t col = 0;
        do {
            csv_field(raw, n, &pos, &f, &end);
            if (f.len) sb_buf_printf(&out, "%s: %s\n", col < n_header ? header[col] : "column", f.data);
            col++;
        } while (!end && pos < n);
    }
    for (size_t i = 0; i < n_header; i++) free(header[i]);
    free(header);
    sb_buf_free(&f);
    free(d->text);
    d->text = out.data ? out.data : sb_strdup("");
    d->len = out.len;
    return d->text ? SB_OK : sb_err_set(err, SB_ERR_NOMEM, "out of memory");
}

sb_status sb_doc_load(const char *path, const sb_loader_opts *opts, sb_doc *d, sb_err *err) {
    memset(d, 0, sizeof *d);
    const char *type = type_of(path);
    if (!type) return sb_err_set(err, SB_ERR_UNSUPPORTED, "%s: unsupported file type '.%s'", path, ext_of(path));
    char *raw = NULL;
    size_t n = 0;
    sb_status st = sb_read_file(path, MAX_DOC_BYTES, &raw, &n, err);
    if (st != SB_OK) return st;
    st = sb_doc_parse(path, type, raw, n, opts, d, err);
    free(raw);
    return st;
}

sb_status sb_doc_parse(const char *path, const char *type, const char *raw, size_t n, const sb_loader_opts *opts,
                       sb_doc *d, sb_err *err) {
    memset(d, 0, sizeof *d);
    sb_buf clean = {0};
    sb_status st;
    if (!strcmp(type, "pdf")) {
        if (!(d->path = sb_strdup(path)) || !(d->type = sb_strdup(type))) {
            sb_doc_free(d);
            return sb_err_set(err, SB_ERR_NOMEM, "out of memory");
        }
        if ((st = sb_doc_parse_pdf(d, raw, n, err)) != SB_OK) {
            sb_doc_free(d);
            return st;
        }
        /* poppler gives UTF-8; make sure nothing else slips through */
        if ((st = clean_utf8(path, d->text, d->len, &clean, err)) != SB_OK) {
            sb_buf_free(&clean);
            sb_doc_free(d);
            return st;
        }
        free(d->text);
        d->text = clean.data;
        d->len = clean.len;
        return SB_OK;
    }
    st = clean_utf8(path, raw, n, &clean, err);
    if (st != SB_OK) {
        sb_buf_free(&clean);
        return st;
    }
    d->path = sb_strdup(path);
    d->type = sb_strdup(type);
    d->text = clean.data;
    d->len = clean.len;
    if (!d->path || !d->type) st = sb_err_set(err, SB_ERR_NOMEM, "out of memory");
    else if (!strcmp(type, "md")) st = md_sections(d, err);
    else if (!strcmp(type, "html")) st = sb_doc_parse_html(d, clean.data, clean.len, err);
    else if (!strcmp(type, "jsonl"))
        st = load_jsonl(d, clean.data, clean.len, opts && opts->jsonl_field ? opts->jsonl_field : "text", err);
    else if (!strcmp(type, "csv"))
        st = load_csv(d, clean.data, clean.len, opts && opts->csv_rows_per_record > 0 ? opts->csv_rows_per_record : 1,
                      err);
    if (st == SB_OK && !d->title) {
        /* the first non-empty line, as a title */
        const char *s = d->text;
        while (*s == '\n' || *s == ' ' || *s == '\r' || *s == '\t') s++;
        size_t l = strcspn(s, "\r\n");
        if (l > 200) {
            l = 200;
            while (l && ((unsigned char)s[l] & 0xC0) == 0x80) l--; /* not inside a character */
        }
        if (l) d->title = sb_strndup(s, l);
    }
    if (st != SB_OK) sb_doc_free(d);
    return st;
}
