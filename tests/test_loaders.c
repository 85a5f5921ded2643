/*
 * test_loaders.c - document loaders on real files of each type
 * (tests/data/docs: a PDF written by tools/gen_doc_fixtures.py, a hand-written
 * HTML page) and on generated Markdown, JSONL and CSV: text, titles, section
 * paths, pages, and clear errors for corrupt or binary input. Then the
 * chunker's spans, lines and boundaries.
 */
#include "formats/gguf.h"
#include "rag/doc.h"
#include "test.h"

#include <unistd.h>

static const char *section_at(const sb_doc *d, size_t off) {
    const char *s = NULL;
    for (size_t i = 0; i < d->n_sections; i++)
        if (d->sections[i].offset <= off) s = d->sections[i].label;
    return s;
}

static void write_tmp(const char *path, const char *s, size_t n) {
    FILE *f = fopen(path, "wb");
    fwrite(s, 1, n, f);
    fclose(f);
}

int main(void) {
    sb_err e = {0};
    sb_doc d;
    /* PDF: two pages with known text */
    CHECK(sb_doc_load("tests/data/docs/report.pdf", NULL, &d, &e) == SB_OK, "%s", e.msg);
    if (d.text) {
        const char *p2 = strstr(d.text, "Page two: calibration");
        CHECK(strstr(d.text, "The centrifuge rotor was replaced on 3 May.") && p2, "pdf text: %s", d.text);
        CHECK(d.n_pages == 2 && p2 && d.pages[1] <= (size_t)(p2 - d.text) && d.pages[1] > 0, "pdf pages %zu",
              d.n_pages);
        sb_doc_free(&d);
    }
    CHECK(sb_doc_load("tests/data/docs/corrupt.pdf", NULL, &d, &e) != SB_OK && strstr(e.msg, "corrupt.pdf") &&
              strstr(e.msg, "PDF"),
          "corrupt pdf: %s", e.msg);
    /* HTML: visible text only, headings as sections, tables as rows */
    CHECK(sb_doc_load("tests/data/docs/page.html", NULL, &d, &e) == SB_OK, "%s", e.msg);
    if (d.text) {
        CHECK(d.title && !strcmp(d.title, "Lab handbook"), "html title: %s", d.title ? d.title : "(null)");
        CHECK(!strstr(d.text, "do not index") && !strstr(d.text, "color: red") && !strstr(d.text, "Enable scripts"),
              "html: hidden text leaked: %s", d.text);
        const char *g = strstr(d.text, "Wear goggles at all times near the laser bench.");
        CHECK(g != NULL, "html text: %s", d.text);
        CHECK(g && section_at(&d, (size_t)(g - d.text)) && !strcmp(section_at(&d, (size_t)(g - d.text)), "Lab handbook > Safety"),
              "html section of the goggles line");
        CHECK(strstr(d.text, "F1 | -80 C") && strstr(d.text, "Freezer | Temperature"), "html table rows: %s", d.text);
        sb_doc_free(&d);
    }
    /* Markdown, JSONL, CSV, binary */
    char md[] = "/tmp/sb_ld_XXXXXX.md", js[] = "/tmp/sb_ld_XXXXXX.jsonl", cs[] = "/tmp/sb_ld_XXXXXX.csv",
         bin[] = "/tmp/sb_ld_XXXXXX.txt";
    close(mkstemps(md, 3));
    close(mkstemps(js, 6));
    close(mkstemps(cs, 4));
    close(mkstemps(bin, 4));
    const char *mdt = "# Top\n\nintro\n\n```\n# not a heading\n```\n\n## Sub one\n\ntext one\n\n### Deep\n\ndeep text\n\n## Sub two\n\ntext two\n";
    write_tmp(md, mdt, strlen(mdt));
    CHECK(sb_doc_load(md, NULL, &d, &e) == SB_OK, "%s", e.msg);
    if (d.text) {
        const char *x = strstr(d.text, "deep text"), *y = strstr(d.text, "text two"), *z = strstr(d.text, "# not a heading");
        CHECK(x && !strcmp(section_at(&d, (size_t)(x - d.text)), "Top > Sub one > Deep"), "md deep section");
        CHECK(y && !strcmp(section_at(&d, (size_t)(y - d.text)), "Top > Sub two"), "md sibling section");
        CHECK(z && !strcmp(section_at(&d, (size_t)(z - d.text)), "Top"), "md code block is not a heading");
        CHECK(d.title && !strcmp(d.title, "Top"), "md title");
        sb_doc_free(&d);
    }
    const char *jst = "{\"text\": \"first record\", \"id\": 1}\n\n{\"text\": \"second record\"}\n";
    write_tmp(js, jst, strlen(jst));
    CHECK(sb_doc_load(js, NULL, &d, &e) == SB_OK && d.n_sections == 2 && strstr(d.text, "second record"), "jsonl: %s", e.msg);
    if (d.text) {
        CHECK(!strcmp(d.sections[1].label, "line 3"), "jsonl record label: %s", d.sections[1].label);
        sb_doc_free(&d);
    }
    sb_loader_opts lo = {"body", 1};
    CHECK(sb_doc_load(js, &lo, &d, &e) != SB_OK && strstr(e.msg, "line 1"), "jsonl missing field: %s", e.msg);
    const char *bad = "{\"text\": \"ok\"}\n{\"text\": broken\n";
    write_tmp(js, bad, strlen(bad));
    CHECK(sb_doc_load(js, NULL, &d, &e) != SB_OK && strstr(e.msg, "line 2"), "jsonl bad line: %s", e.msg);
    const char *cst = "name,notes\n\"Smith, J\",\"said \"\"hi\"\"\"\nLee,plain\n";
    write_tmp(cs, cst, strlen(cst));
    CHECK(sb_doc_load(cs, NULL, &d, &e) == SB_OK, "%s", e.msg);
    if (d.text) {
        CHECK(strstr(d.text, "name: Smith, J\nnotes: said \"hi\"") && strstr(d.text, "name: Lee"), "csv: %s", d.text);
        CHECK(d.n_sections == 2 && !strcmp(d.sections[1].label, "row 2"), "csv rows");
        sb_doc_free(&d);
    }
    const char garbage[] = "\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xfe";
    write_tmp(bin, garbage, sizeof garbage);
    CHECK(sb_doc_load(bin, NULL, &d, &e) != SB_OK && strstr(e.msg, "binary"), "binary: %s", e.msg);
    CHECK(sb_doc_load("/tmp/x.docx", NULL, &d, &e) == SB_ERR_UNSUPPORTED, "unsupported type");

    /* chunker: spans in range, boundaries, lines, sizes */
    char path[512];
    snprintf(path, sizeof path, "%s/vocab/ggml-vocab-bert-bge.gguf", test_assets());
    sb_gguf *g = sb_gguf_open(path, &e);
    sb_tokenizer *tok = g ? sb_tokenizer_from_gguf(g, &e) : NULL;
    CHECK(tok != NULL, "%s", e.msg);
    write_tmp(md, mdt, strlen(mdt));
    sb_buf big = {0};
    for (int i = 1; i <= 60; i++)
        sb_buf_printf(&big, "Sentence number %d talks about storage conditions and sample labels.%s", i,
                      i % 5 ? " " : "\n\n");
    write_tmp(bin, big.data, big.len);
    if (tok && sb_doc_load(bin, NULL, &d, &e) == SB_OK) {
        sb_chunk *ch;
        size_t n;
        sb_chunk_params p = {60, 12};
        CHECK(sb_chunk_doc(&d, tok, &p, &ch, &n, &e) == SB_OK && n >= 8, "chunks: %zu", n);
        bool ok = true, ends_well = true, overlap = false;
        for (size_t i = 0; i < n; i++) {
            ok &= ch[i].start < ch[i].end && ch[i].end <= d.len && ch[i].n_tokens <= 60;
            char last = d.text[ch[i].end - 1];
            ends_well &= last == '.' || i == n - 1;
            if (i) overlap |= ch[i].start < ch[i - 1].end;
        }
        CHECK(ok, "chunk spans and sizes");
        CHECK(ends_well, "chunks end at sentence ends");
        CHECK(overlap, "consecutive chunks overlap");
        CHECK(ch[0].line_start == 1 && ch[n - 1].line_end == 23, "lines %d..%d", ch[0].line_start, ch[n - 1].line_end);
        free(ch);
        sb_doc_free(&d);
    }
    if (tok && sb_doc_load(md, NULL, &d, &e) == SB_OK) {
        sb_chunk *ch;
        size_t n;
        sb_chunk_params p = {200, 20};
        CHECK(sb_chunk_doc(&d, tok, &p, &ch, &n, &e) == SB_OK, "%s", e.msg);
        /* no chunk crosses a section start */
        bool crosses = false;
        for (size_t i = 0; i < n; i++)
            for (size_t k = 0; k < d.n_sections; k++)
                crosses |= d.sections[k].offset > ch[i].start && d.sections[k].offset < ch[i].end;
        CHECK(!crosses && n == 4, "%zu chunks, crossing a section: %d", n, crosses);
        free(ch);
        sb_doc_free(&d);
    }
    sb_buf_free(&big);
    sb_tokenizer_free(tok);
    sb_gguf_free(g);
    unlink(md);
    unlink(js);
    unlink(cs);
    unlink(bin);
    return TEST_END();
}
