/*
 * fuzz_config.c - libFuzzer driver for cfg_load: the JSON config file, the
 * HEPTAPOD_* environment and the flags, all carved from one input.
 *
 * Input: the config file's bytes up to the first NUL byte, then NUL-separated
 * items: an item "HEPTAPOD_NAME=value" is set in the environment, any other
 * item is the next element of argv (after "serve"). A non-empty file goes to
 * a memfd and is named by "--config=/proc/self/fd/N" as the first flag; a
 * --config flag or HEPTAPOD_CONFIG among the items is pointed at the same
 * memfd, so that no input makes the loader read another file. Every
 * HEPTAPOD_* setting is unset before and after each run.
 *
 * Oracle: cfg_load either returns CFG_HELP (exactly when --help or -h is
 * among the flags), or refuses with a message that opens with its source
 * (the file's path, the variable's name, the flag as written, or the
 * unexpected argument), or returns settings that are each within their
 * table bounds (integers in [min, max], strings within their length bounds,
 * enums among their choices, booleans 0 or 1, a non-empty model list of
 * non-empty paths, threads and max_connections resolved to >= 1).
 * `make fuzz` builds and runs it with fuzz/config.dict on a copy of
 * fuzz/corpus/config.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "config/config.h"
#include "fuzz/oracle.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_ITEMS 32

/* Unsets every setting's variable and the n names this run set. */
static void unset_all(char **names, int n)
{
    const cfg_setting *t = cfg_table();
    for (int i = 0; i < cfg_count(); i++)
        unsetenv(t[i].env);
    unsetenv("HEPTAPOD_CONFIG");
    for (int i = 0; i < n; i++)
        unsetenv(names[i]);
}

/* Whether a refusal opens with the source it concerns. */
static int names_source(const char *err, const char *path)
{
    static const char *const plain[] = {"--", "unexpected argument '", "unknown flag '"};
    size_t pl = strlen(path);
    if (path[0] && !strncmp(err, path, pl) && !strncmp(err + pl, ": ", 2)) return 1;
    for (size_t i = 0; i < sizeof plain / sizeof plain[0]; i++)
        if (!strncmp(err, plain[i], strlen(plain[i]))) return 1;
    const cfg_setting *t = cfg_table();
    for (int i = 0; i < cfg_count(); i++) {
        size_t el = strlen(t[i].env);
        if (!strncmp(err, t[i].env, el) && !strncmp(err + el, ": ", 2)) return 1;
    }
    return 0;
}

static int in_choices(const char *choices, const char *v)
{
    size_t n = strlen(v);
    for (const char *p = choices; p;) {
        const char *bar = strchr(p, '|');
        size_t len = bar ? (size_t)(bar - p) : strlen(p);
        if (len == n && !strncmp(p, v, n)) return 1;
        p = bar ? bar + 1 : NULL;
    }
    return 0;
}

/* Every loaded value within its row of the table. */
static void check_settings(const cfg_settings *s)
{
    const cfg_setting *t = cfg_table();
    for (int i = 0; i < cfg_count(); i++)
        FZ_CHECK(s->source[i] >= CFG_SRC_DEFAULT && s->source[i] <= CFG_SRC_FLAG, "%s source",
                 t[i].name);
        /* one check per table row, by its type */
#define X(name, type, def, min, max, choices, help)                                                \
    check_##type(#name, &s->name, min, max, choices);
#define check_CFG_INT(n, p, lo, hi, ch)                                                            \
    FZ_CHECK(*(p) >= (lo) && *(p) <= (hi), "%s = %lld outside %lld..%lld", n, (long long)*(p),     \
             (long long)(lo), (long long)(hi))
#define check_CFG_BOOL(n, p, lo, hi, ch) FZ_CHECK(*(p) == 0 || *(p) == 1, "%s = %d", n, *(p))
#define check_CFG_STRING(n, p, lo, hi, ch)                                                         \
    FZ_CHECK(*(p) && (int64_t)strlen(*(p)) >= (lo) &&                                              \
                 ((hi) == 0 || (int64_t)strlen(*(p)) <= (hi)),                                     \
             "%s length", n)
#define check_CFG_ENUM(n, p, lo, hi, ch)                                                           \
    FZ_CHECK(*(p) && in_choices(ch, *(p)), "%s = '%s'", n, *(p))
#define check_CFG_LIST(n, p, lo, hi, ch)                                                           \
    do {                                                                                           \
        FZ_CHECK(s->n_model >= 1 && *(p), "empty model list");                                     \
        for (int k = 0; k < s->n_model; k++)                                                       \
            FZ_CHECK((*(p))[k] && (*(p))[k][0], "model %d is empty", k);                           \
    } while (0)
    CFG_SETTINGS(X)
#undef X
    FZ_CHECK(s->threads >= 1, "threads not resolved");
    FZ_CHECK(s->max_connections >= 1, "max_connections not resolved");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int fd = -1;
    static char path[64], config_flag[80];
    static FILE *sink;
    if (fd < 0) {
        fd = memfd_create("heptapod.json", MFD_CLOEXEC);
        sink = fopen("/dev/null", "w");
        if (fd < 0 || !sink) abort();
        snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
        snprintf(config_flag, sizeof config_flag, "--config=%s", path);
    }
    unset_all(NULL, 0);

    /* Carve: the file, then NUL-separated items (a copy, NUL-terminated). */
    char *copy = malloc(size + 1);
    if (!copy) abort();
    memcpy(copy, data, size);
    copy[size] = '\0';
    size_t file_len = strnlen(copy, size);
    if (ftruncate(fd, 0) != 0 || (file_len && pwrite(fd, copy, file_len, 0) != (ssize_t)file_len))
        abort();
    char *argv[MAX_ITEMS + 3], *names[MAX_ITEMS + 2];
    int argc = 0, n_names = 0, help = 0;
    argv[argc++] = "serve";
    if (file_len) argv[argc++] = config_flag;
    for (size_t at = file_len + 1; at < size && argc + n_names < MAX_ITEMS + 2;) {
        char *item = copy + at;
        at += strlen(item) + 1;
        char *eq = strchr(item, '=');
        if (!strncmp(item, "HEPTAPOD_", 9) && eq && eq > item + 9) {
            *eq = '\0';
            names[n_names++] = item;
            setenv(item, strcmp(item, "HEPTAPOD_CONFIG") ? eq + 1 : path, 1);
            continue;
        }
        if (!strncmp(item, "--config", 8) && (item[8] == '\0' || item[8] == '='))
            item = config_flag;
        help |= !strcmp(item, "--help") || !strcmp(item, "-h");
        argv[argc++] = item;
    }
    argv[argc] = NULL;

    cfg_settings s;
    char err[512];
    int rc = cfg_load(&s, argc, argv, err, sizeof err);
    if (rc == CFG_HELP) {
        FZ_CHECK(help, "help without --help");
    } else if (rc == CFG_ERROR) {
        FZ_CHECK(!help, "--help refused");
        FZ_CHECK(err[0] && names_source(err, path), "refusal without its source: '%s'", err);
    } else {
        FZ_CHECK(rc == 0 && !help, "cfg_load returned %d", rc);
        check_settings(&s);
        cfg_print(sink, &s);
    }
    cfg_free(&s);
    unset_all(names, n_names);
    free(copy);
    return 0;
}
