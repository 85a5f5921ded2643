/*
 * cmd_serve.c - `sabio serve`: options to sv_options, then the server
 * (src/serve). Flags are llama-server's where it has one.
 */
#include "cli/cli.h"
#include "serve/serve.h"

#include <stdlib.h>
#include <string.h>

int cmd_serve(int argc, char **argv) {
    sv_options o;
    sv_options_default(&o);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (cli_is(a, "-h,--help")) {
            printf("usage: sabio serve -m MODEL [--store [NAME=]DIR]... [options]\n"
                   "OpenAI-compatible HTTP server (chat/completions, completions, embeddings, models, health),\n"
                   "grounded answers from knowledge stores (/v1/rag/ask, or chat with {\"sabio\": {\"store\": NAME}})\n"
                   "and a web page at /.\n\n"
                   "  -m, --model PATH        the language model (.gguf or Hugging Face folder)\n"
                   "  --store [NAME=]DIR      a knowledge store: a folder or postgres://... (repeatable; NAME defaults\n"
                   "                          to the folder's or the database's name)\n"
                   "  --embed-model DIR       embedding model (default: the first store's)\n"
                   "  --host ADDR             address to bind (default 127.0.0.1)\n"
                   "  --port N                port (default 8080)\n"
                   "  -np, --parallel N       requests generating at once, one context each (default 4)\n"
                   "  -c, --ctx-size N        total context, split over the slots (default 2048 per slot)\n"
                   "  -t, --threads N         threads, shared by the busy slots (default: all cores, at most 8)\n"
                   "  --queue N               requests waiting for a slot before 503 (default 4 x slots)\n"
                   "  -n, --n-predict N       max_tokens when a request gives none (default 512)\n"
                   "  --max-tokens N          the largest max_tokens a request may ask (default 2048)\n"
                   "  --max-body BYTES        request body limit (default 1048576)\n"
                   "  -to, --timeout S        idle connection timeout in seconds (default 60)\n"
                   "  --max-connections N     open connections at most (default 64)\n"
                   "  --api-key KEY           require Authorization: Bearer KEY on /v1/ routes\n"
                   "  --chat-template NAME    phi3, chatml or llama2 (default: from the model)\n"
                   "  --verbose               log each request's timings to stderr\n"
                   "  -nr, --no-repack        keep the file's weight layout (default: repack Q4_0 for this CPU's kernels)\n");
            return 0;
        }
        if (cli_is(a, "-m,--model")) o.model = cli_value(argc, argv, &i);
        else if (cli_is(a, "--store")) {
            if (o.n_stores == SV_MAX_STORES) cli_die("serve: at most %d stores", SV_MAX_STORES);
            const char *v = cli_value(argc, argv, &i), *eq = strchr(v, '=');
            if (eq && strcspn(v, ":/") < (size_t)(eq - v)) eq = NULL; /* an '=' inside a postgres:// URL */
            if (eq && eq > v) {
                o.store_names[o.n_stores] = strndup(v, (size_t)(eq - v));
                o.store_dirs[o.n_stores] = eq + 1;
            } else {
                size_t n = strcspn(v, "?"); /* a URL's name: its database */
                while (n > 1 && v[n - 1] == '/') n--;
                const char *b = v + n;
                while (b > v && b[-1] != '/') b--;
                o.store_names[o.n_stores] = strndup(b, (size_t)(v + n - b));
                o.store_dirs[o.n_stores] = v;
            }
            o.n_stores++;
        } else if (cli_is(a, "--embed-model")) o.embed_model = cli_value(argc, argv, &i);
        else if (cli_is(a, "--host")) o.host = cli_value(argc, argv, &i);
        else if (cli_is(a, "--port")) o.port = (int)cli_long(a, cli_value(argc, argv, &i), 0, 65535);
        else if (cli_is(a, "-np,--parallel")) o.n_parallel = (int)cli_long(a, cli_value(argc, argv, &i), 1, 256);
        else if (cli_is(a, "-c,--ctx-size")) o.n_ctx = (int)cli_long(a, cli_value(argc, argv, &i), 64, 1 << 24);
        else if (cli_is(a, "-t,--threads")) o.threads = (int)cli_long(a, cli_value(argc, argv, &i), 1, 8);
        else if (cli_is(a, "--queue")) o.max_queue = (int)cli_long(a, cli_value(argc, argv, &i), 1, 1 << 16);
        else if (cli_is(a, "-n,--n-predict")) o.n_predict = (int)cli_long(a, cli_value(argc, argv, &i), 1, 1 << 20);
        else if (cli_is(a, "--max-tokens")) o.max_tokens = (int)cli_long(a, cli_value(argc, argv, &i), 1, 1 << 20);
        else if (cli_is(a, "--max-body")) o.max_body = (size_t)cli_long(a, cli_value(argc, argv, &i), 1024, 1L << 32);
        else if (cli_is(a, "-to,--timeout")) o.timeout = (int)cli_long(a, cli_value(argc, argv, &i), 1, 86400);
        else if (cli_is(a, "--max-connections")) o.max_conn = (int)cli_long(a, cli_value(argc, argv, &i), 1, 4096);
        else if (cli_is(a, "--api-key")) o.api_key = cli_value(argc, argv, &i);
        else if (cli_is(a, "--chat-template")) o.chat_template = cli_value(argc, argv, &i);
        else if (cli_is(a, "--verbose,-v")) o.verbose = 1;
        else if (cli_is(a, "-nr,--no-repack")) o.no_repack = 1;
        else cli_die("serve: unknown option '%s' (see sabio serve --help)", a);
    }
    if (!o.model) cli_die("serve: no model given (-m PATH)");
    if (o.n_predict > o.max_tokens) o.n_predict = o.max_tokens;
    int rc = sv_serve(&o);
    for (int i = 0; i < o.n_stores; i++) free((char *)o.store_names[i]);
    return rc;
}
