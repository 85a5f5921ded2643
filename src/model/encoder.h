/*
 * encoder.h - BERT-family sentence encoders (all-MiniLM-L6-v2, bge-small,
 * ...): the embeddings RAG retrieves with.
 *
 * Sources: a Hugging Face / sentence-transformers folder (config.json,
 * model.safetensors, tokenizer.json or vocab.txt, modules.json,
 * 1_Pooling/config.json, sentence_bert_config.json) or a GGUF with the
 * `bert` architecture as llama.cpp writes it. Pooling (mean or CLS) and
 * normalisation follow what the folder declares; texts longer than the
 * model's maximum are truncated to it (max_seq_length of
 * sentence_bert_config.json, else max_position_embeddings), as
 * sentence-transformers does (a GGUF: bert.context_length; see
 * sb_encoder_set_max_tokens). Only uncased WordPiece vocabularies (the
 * normaliser sb_tokenize applies) are accepted. The matrix products take
 * bf16 inputs with f32 accumulation (tensor/gemm.h): for all-MiniLM-L6-v2
 * the embeddings keep cosine >= 0.9999 with sentence-transformers' f32 ones
 * (tests/test_encoder.c). Heads must be of even size.
 */
#ifndef SB_ENCODER_H
#define SB_ENCODER_H

#include "base/base.h"
#include "text/tokenizer.h"

typedef struct sb_encoder sb_encoder;

/* path: a folder (config.json, model.safetensors, tokenizer.json or
 * vocab.txt, optional sentence-transformers files) or a .gguf file. Errors
 * name the file and the field or tensor that is missing or wrong. */
sb_encoder *sb_encoder_open(const char *path, sb_err *err);
void sb_encoder_free(sb_encoder *e);
int sb_encoder_dim(const sb_encoder *e);
int sb_encoder_max_tokens(const sb_encoder *e);
const sb_tokenizer *sb_encoder_tokenizer(const sb_encoder *e);
/* Lowers the token limit (at least 3, at most the position table), e.g. to
 * sentence-transformers' max_seq_length for a GGUF, which does not record it. */
void sb_encoder_set_max_tokens(sb_encoder *e, int n);
/* Threads that sb_encoder_embed spreads its passes over (n <= 0: one per
 * online CPU, the default). */
void sb_encoder_set_threads(sb_encoder *e, int n);
/* The query prompt the model declares (config_sentence_transformers.json
 * "prompts": {"query": ...}), or NULL. */
const char *sb_encoder_query_prefix(const sb_encoder *e);
/* bge-*-en-v1.5's retrieval instruction for queries (its model card; its
 * files do not declare it). Prepend it to short queries, not to passages. */
#define SB_BGE_QUERY_PREFIX "Represent this sentence for searching relevant passages: "
/* Whether the model's pipeline ends with L2 normalisation (sentence-transformers' Normalize). */
bool sb_encoder_normalizes(const sb_encoder *e);

/* Embeds n texts into out (n * dim floats). normalize: L2-normalise each
 * vector (on top of what the model's pipeline does). */
sb_status sb_encoder_embed(sb_encoder *e, const char *const *texts, int n, bool normalize, float *out,
                           sb_err *err);

#endif
