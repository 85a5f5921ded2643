/*
 * loaders_rich.c - HTML (gumbo) and PDF (poppler) documents.
 *
 * HTML: the visible text of <body> (script, style, template, noscript and
 * comments dropped), block elements ending lines, table cells joined with
 * " | ", headings h1-h6 kept as section paths like Markdown's, <title> as the
 * title. PDF: the text of each page, each page start recorded so chunks know
 * their page; an unreadable or encrypted PDF is an error naming the file.
 */
#include "rag/doc.h"

#include <gumbo.h>
#include <poppler.h>
#include <stdlib.h>
#include <string.h>

/* ---- HTML ---- */

typedef struct html_ctx {
    sb_buf out;
    char *heads[6];
    sb_doc *d;
    bool ok;
} html_ctx;

static bool is_block(GumboTag t) {
    switch (t) {
    case GUMBO_TAG_P: case GUMBO_TAG_DIV: case GUMBO_TAG_LI: case GUMBO_TAG_UL: case GUMBO_TAG_OL:
    case GUMBO_TAG_TR: case GUMBO_TAG_TABLE: case GUMBO_TAG_BR: case GUMBO_TAG_SECTION: case GUMBO_TAG_ARTICLE:
    case GUMBO_TAG_HEADER: case GUMBO_TAG_FOOTER: case GUMBO_TAG_BLOCKQUOTE: case GUMBO_TAG_PRE: case GUMBO_TAG_DD:
    case GUMBO_TAG_DT: case GUMBO_TAG_H1: case GUMBO_TAG_H2: case GUMBO_TAG_H3: case GUMBO_TAG_H4: case GUMBO_TAG_H5:
    case GUMBO_TAG_H6: case GUMBO_TAG_HR: case GUMBO_TAG_CAPTION: case GUMBO_TAG_FIGCAPTION:
        return true;
    default: return false;
    }
}

static void end_line(html_ctx *c) {
    /* trim trailing spaces, end the line once */
    while (c->out.len && c->out.data[c->out.len - 1] == ' ') c->out.data[--c->out.len] = 0;
    if (c->out.len && c->out.data[c->out.len - 1] != '\n') c->ok &= sb_buf_puts(&c->out, "\n");
}

static void add_text(html_ctx *c, const char *s) {
    for (; *s; s++) {
        bool space = *s == ' ' || *s == '\n' || *s == '\t' || *s == '\r' || *s == '\f';
        if (space) {
            if (c->out.len && c->out.data[c->out.len - 1] != ' ' && c->out.data[c->out.len - 1] != '\n')
                c->ok &= sb_buf_puts(&c->out, " ");
        } else {
            c->ok &= sb_buf_append(&c->out, s, 1);
        }
    }
}

static void node_text(const GumboNode *n, sb_buf *b) {
    if (n->type == GUMBO_NODE_TEXT || n->type == GUMBO_NODE_WHITESPACE || n->type == GUMBO_NODE_CDATA) {
        sb_buf_puts(b, n->v.text.text);
    } else if (n->type == GUMBO_NODE_ELEMENT) {
        for (unsigned i = 0; i < n->v.element.children.length; i++) node_text(n->v.element.children.data[i], b);
    }
}

static void walk_html(html_ctx *c, const GumboNode *n, int depth) {
    if (depth > 256 || !c->ok) return;
    if (n->type == GUMBO_NODE_TEXT || n->type == GUMBO_NODE_CDATA || n->type == GUMBO_NODE_WHITESPACE) {
        add_text(c, n->v.text.text);
        return;
    }
    if (n->type != GUMBO_NODE_ELEMENT && n->type != GUMBO_NODE_TEMPLATE) return;
    GumboTag tag = n->v.element.tag;
    if (tag == GUMBO_TAG_SCRIPT || tag == GUMBO_TAG_STYLE || tag == GUMBO_TAG_NOSCRIPT || tag == GUMBO_TAG_TEMPLATE ||
        tag == GUMBO_TAG_HEAD)
        return;
    int level = tag >= GUMBO_TAG_H1 && tag <= GUMBO_TAG_H6 ? (int)(tag - GUMBO_TAG_H1) + 1 : 0;
    if (is_block(tag)) end_line(c);
    if (level) {
        sb_buf h = {0};
        node_text(n, &h);
        /* collapse whitespace in the heading */
        sb_buf clean = {0};
        for (size_t i = 0; h.data && i < h.len; i++) {
            bool sp = h.data[i] == ' ' || h.data[i] == '\n' || h.data[i] == '\t' || h.data[i] == '\r';
            if (sp && (!clean.len || clean.data[clean.len - 1] == ' ')) continue;
            sb_buf_append(&clean, sp ? " " : h.data + i, 1);
        }
        while (clean.len && clean.data[clean.len - 1] == ' ') clean.data[--clean.len] = 0;
        for (int k = level - 1; k < 6; k++) {
            free(c->heads[k]);
            c->heads[k] = NULL;
        }
        c->heads[level - 1] = clean.data ? clean.data : sb_strdup("");
        sb_buf label = {0};
        for (int k = 0; k < level; k++) {
            if (!c->heads[k] || !*c->heads[k]) continue;
            if (label.len) sb_buf_puts(&label, " > ");
            sb_buf_puts(&label, c->heads[k]);
        }
        if (label.data) {
            sb_doc_mark *m = sb_realloc_array(c->d->sections, c->d->n_sections + 1, sizeof *m);
            if (m) {
                c->d->sections = m;
                m[c->d->n_sections].offset = c->out.len;
                m[c->d->n_sections].label = label.data;
                c->d->n_sections++;
            } else {
                sb_buf_free(&label);
                c->ok = false;
            }
        }
        sb_buf_free(&h);
    }
    const GumboVector *ch = &n->v.element.children;
    for (unsigned i = 0; i < ch->length; i++) {
        const GumboNode *k = ch->data[i];
        if (tag == GUMBO_TAG_TR && i > 0 && k->type == GUMBO_NODE_ELEMENT &&
            (k->v.element.tag == GUMBO_TAG_TD || k->v.element.tag == GUMBO_TAG_TH))
            c->ok &= sb_buf_puts(&c->out, " | ");
        walk_html(c, k, depth + 1);
    }
    if (is_block(tag)) end_line(c);
    if (level) c->ok &= sb_buf_puts(&c->out, "\n"); /* a heading is its own paragraph */
}

sb_status sb_doc_parse_html(sb_doc *d, const char *html, size_t n, sb_err *err) {
    GumboOutput *g = gumbo_parse_with_options(&kGumboDefaultOptions, html, n);
    if (!g) return sb_err_set(err, SB_ERR_FORMAT, "%s: cannot parse HTML", d->path);
    html_ctx c = {.d = d, .ok = true};
    sb_buf_append(&c.out, "", 0);
    /* <title> */
    const GumboNode *root = g->root;
    for (unsigned i = 0; i < root->v.element.children.length && !d->title; i++) {
        const GumboNode *k = root->v.element.children.data[i];
        if (k->type != GUMBO_NODE_ELEMENT || k->v.element.tag != GUMBO_TAG_HEAD) continue;
        for (unsigned j = 0; j < k->v.element.children.length; j++) {
            const GumboNode *t = k->v.element.children.data[j];
            if (t->type == GUMBO_NODE_ELEMENT && t->v.element.tag == GUMBO_TAG_TITLE) {
                sb_buf b = {0};
                node_text(t, &b);
                d->title = b.data;
                break;
            }
        }
    }
    walk_html(&c, root, 0);
    for (int k = 0; k < 6; k++) free(c.heads[k]);
    gumbo_destroy_output(&kGumboDefaultOptions, g);
    if (!c.ok) {
        sb_buf_free(&c.out);
        return sb_err_set(err, SB_ERR_NOMEM, "%s: out of memory", d->path);
    }
    free(d->text);
    d->text = c.out.data;
    d->len = c.out.len;
    return SB_OK;
}

/* ---- PDF ---- */

sb_status sb_doc_parse_pdf(sb_doc *d, const char *raw, size_t n, sb_err *err) {
    GError *ge = NULL;
    GBytes *bytes = g_bytes_new(raw, n);
    PopplerDocument *pdf = poppler_document_new_from_bytes(bytes, NULL, &ge);
    g_bytes_unref(bytes);
    if (!pdf) {
        sb_status st = sb_err_set(err, SB_ERR_FORMAT, "%s: cannot read the PDF: %s", d->path,
                                  ge && ge->message ? ge->message : "unknown error");
        if (ge) g_error_free(ge);
        return st;
    }
    int pages = poppler_document_get_n_pages(pdf);
    sb_buf out = {0};
    sb_buf_append(&out, "", 0);
    d->pages = calloc((size_t)(pages > 0 ? pages : 1), sizeof *d->pages);
    bool ok = d->pages != NULL;
    for (int i = 0; ok && i < pages; i++) {
        PopplerPage *p = poppler_document_get_page(pdf, i);
        if (out.len && out.data[out.len - 1] != '\n') ok &= sb_buf_puts(&out, "\n");
        if (out.len) ok &= sb_buf_puts(&out, "\n");
        d->pages[d->n_pages++] = out.len;
        char *text = p ? poppler_page_get_text(p) : NULL;
        if (text) ok &= sb_buf_puts(&out, text);
        g_free(text);
        if (p) g_object_unref(p);
    }
    char *title = poppler_document_get_title(pdf);
    if (title && *title) d->title = sb_strdup(title);
    g_free(title);
    g_object_unref(pdf);
    if (!ok) {
        sb_buf_free(&out);
        return sb_err_set(err, SB_ERR_NOMEM, "%s: out of memory", d->path);
    }
    free(d->text);
    d->text = out.data;
    d->len = out.len;
    return SB_OK;
}
