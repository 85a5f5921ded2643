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
 * sentence-transformers does.
 */
#ifndef SB_ENCODER_H
#define SB_ENCODER_H

#include "base/base.h"
#include "text/tokenizer.h"

typedef struct sb_encoder sb_encoder;

sb_encoder *sb_encoder_open(const char *path, sb_err *err);
void sb_encoder_free(sb_encoder *e);
int sb_encoder_dim(const sb_encoder *e);
int sb_encoder_max_tokens(const sb_encoder *e);
const sb_tokenizer *sb_encoder_tokenizer(const sb_encoder *e);
/* Whether the model's pipeline ends with L2 normalisation (sentence-transformers' Normalize). */
bool sb_encoder_normalizes(const sb_encoder *e);

/* Embeds n texts into out (n * dim floats). normalize: L2-normalise each
 * vector (on top of what the model's pipeline does). */
sb_status sb_encoder_embed(sb_encoder *e, const char *const *texts, int n, bool normalize, float *out,
                           sb_err *err);

#endif
