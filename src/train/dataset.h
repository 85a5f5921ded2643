/*
 * dataset.h - fine-tuning data: JSONL in OpenAI's chat fine-tuning shape,
 * one example per line,
 *     {"messages": [{"role": "system"|"user"|"assistant", "content": "..."}, ...]}
 * or {"prompt": "...", "completion": "..."} (a user turn and the assistant's
 * answer), rendered with the model's chat template and tokenized; the loss
 * covers the assistant turns only (their content and end-of-turn marker).
 *
 * Lines that are not such an object are reported with their line number and
 * skipped; examples longer than max_len tokens are cut to max_len (counted in
 * n_truncated); examples left with no assistant token are dropped.
 */
#ifndef SB_DATASET_H
#define SB_DATASET_H

#include "base/base.h"
#include "text/chat.h"
#include "text/tokenizer.h"

typedef struct sb_dataset {
    int n;             /* examples */
    int32_t *tokens;   /* every example's tokens, one after another */
    int32_t *targets;  /* next token where it is an assistant token, else -1 */
    int64_t *offset;   /* (n + 1) start of example i in tokens */
    int64_t n_target_total;
    int n_lines;       /* non-blank lines read */
    int n_bad;         /* lines skipped as malformed */
    int n_truncated;   /* examples cut to max_len */
    int n_dropped;     /* examples with no assistant token left */
    char first_bad[512]; /* the first malformed line's message */
} sb_dataset;

/* Reads a JSONL file. tmpl: the template to render with when jinja (the
 * model's) is not recognised. NULL on error (unreadable file, no usable
 * example), message in err. */
sb_dataset *sb_dataset_load(const char *path, const sb_tokenizer *tok, const char *jinja, sb_chat_tmpl tmpl,
                            int max_len, sb_err *err);
/* The same from memory; name labels messages. tok NULL only parses (counts
 * lines, n_bad): for the fuzz target. */
sb_dataset *sb_dataset_from_text(const char *text, size_t len, const char *name, const sb_tokenizer *tok,
                                 const char *jinja, sb_chat_tmpl tmpl, int max_len, sb_err *err);
void sb_dataset_free(sb_dataset *d);
static inline int sb_dataset_len(const sb_dataset *d, int i) { return (int)(d->offset[i + 1] - d->offset[i]); }

/* Moves about frac of d's examples (chosen by seed) into a new dataset *val. */
sb_status sb_dataset_split(sb_dataset *d, double frac, uint64_t seed, sb_dataset **val, sb_err *err);

#endif
