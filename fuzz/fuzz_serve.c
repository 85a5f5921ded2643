/* fuzz_serve.c - libFuzzer target for the server's request bodies: the first
 * byte picks the route (chat, completion, RAG ask, embeddings), the rest is
 * the body. Parsed requests are walked and error messages rendered as JSON. */
#include "serve/request.h"

#include <stdlib.h>
#include <string.h>

static volatile size_t sink;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!size) return 0;
    const sv_limits lim = {.max_tokens = 2048, .max_messages = 64, .max_inputs = 64};
    const char *body = (const char *)data + 1;
    size_t len = size - 1;
    sv_error e;
    int route = data[0] % 4;
    if (route == 3) {
        sv_embed_req r;
        if (sv_parse_embeddings(body, len, &lim, &r, &e)) {
            for (int i = 0; i < r.n_inputs; i++) sink += strlen(r.inputs[i]);
            char *b = sv_base64(body, len);
            sink += b ? strlen(b) : 0;
            free(b);
            sv_embed_req_free(&r);
            return 0;
        }
    } else {
        sv_gen_req r;
        bool ok = route == 0 ? sv_parse_chat(body, len, &lim, &r, &e)
                  : route == 1 ? sv_parse_completion(body, len, &lim, &r, &e)
                               : sv_parse_rag_ask(body, len, &lim, &r, &e);
        if (ok) {
            for (int i = 0; i < r.n_msgs; i++) sink += strlen(r.msgs[i].role) + strlen(r.msgs[i].content);
            for (int i = 0; i < r.n_stop; i++) sink += strlen(r.stop[i]);
            if (r.prompt) sink += strlen(r.prompt);
            if (r.question) sink += strlen(r.question);
            if (r.store) sink += strlen(r.store);
            sv_gen_req_free(&r);
            return 0;
        }
    }
    char *j = sv_error_json(&e);
    if (!j || e.status < 400) abort(); /* a refusal always has a status and a body */
    sink += strlen(j);
    free(j);
    return 0;
}
