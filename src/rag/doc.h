/*
 * doc.h - documents as the knowledge store sees them: text with source
 * positions, produced by the loaders and cut into chunks by the chunker.
 *
 * A document is one UTF-8 text. Structure is kept as byte offsets into it:
 * section headings (Markdown "#" lines, a CSV/JSONL record's label) and page
 * starts (PDF), so that every chunk can say where it came from (section path,
 * page, lines, characters).
 */
#ifndef SB_DOC_H
#define SB_DOC_H

#include "base/base.h"
#include "text/tokenizer.h"

typedef struct sb_doc_mark {
    size_t offset; /* byte offset in text where it starts */
    char *label;   /* section path ("Intro > Scope") or NULL for a page mark */
} sb_doc_mark;

typedef struct sb_doc {
    char *path;
    char *type;  /* "txt", "md", "jsonl", "csv", "html", "pdf" */
    char *title; /* may be NULL */
    char *text;
    size_t len;
    sb_doc_mark *sections; /* ascending offsets */
    size_t n_sections;
    size_t *pages; /* page start offsets (empty when the format has no pages) */
    size_t n_pages;
} sb_doc;

void sb_doc_free(sb_doc *d);

typedef struct sb_loader_opts {
    const char *jsonl_field; /* JSONL: the field holding the text (default "text") */
    int csv_rows_per_record; /* CSV: rows per record (default 1) */
} sb_loader_opts;

/* Loads a file by its extension (.txt .text .md .markdown .jsonl .csv .html .htm .pdf).
 * Files over 64 MiB, invalid UTF-8 beyond repair, or binary content are
 * errors naming the file. */
sb_status sb_doc_load(const char *path, const sb_loader_opts *opts, sb_doc *out, sb_err *err);
/* The same from bytes in memory; type is "txt", "md", "jsonl" or "csv" and
 * path only names the source. */
sb_status sb_doc_parse(const char *path, const char *type, const char *raw, size_t n, const sb_loader_opts *opts,
                       sb_doc *out, sb_err *err);
/* HTML (gumbo) and PDF (poppler) bodies into d (path and type already set). */
sb_status sb_doc_parse_html(sb_doc *d, const char *html, size_t n, sb_err *err);
sb_status sb_doc_parse_pdf(sb_doc *d, const char *raw, size_t n, sb_err *err);
/* True if sb_doc_load knows the file's extension. */
bool sb_doc_supported(const char *path);

typedef struct sb_chunk {
    size_t start, end;          /* byte span in the document text */
    int line_start, line_end;   /* 1-based, inclusive */
    int page;                   /* 1-based, 0 if the format has no pages */
    const char *section;        /* borrowed from the document, may be NULL */
    int n_tokens;
} sb_chunk;

typedef struct sb_chunk_params {
    int target_tokens;  /* aim for chunks of this many tokens (default 200) */
    int overlap_tokens; /* repeat about this many tokens of the previous chunk (default 32) */
} sb_chunk_params;

/* Cuts d into chunks of about target_tokens tokens of tok, ending at paragraph,
 * sentence or line boundaries where possible and never inside a UTF-8
 * character; a chunk never crosses a section or page start. *out is a heap
 * array of *n chunks. */
sb_status sb_chunk_doc(const sb_doc *d, const sb_tokenizer *tok, const sb_chunk_params *p, sb_chunk **out,
                       size_t *n, sb_err *err);

#endif
