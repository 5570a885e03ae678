/* fuzz_common.h - helpers shared by the libFuzzer harnesses in test/fuzz/.
 *
 * FUZZ_CHECK states an invariant: when it does not hold, the input and the
 * broken rule are printed and the process aborts, which libFuzzer (and the
 * replay in run.sh) reports as a crash with a stack. */
#ifndef SIDECAR_FUZZ_COMMON_H
#define SIDECAR_FUZZ_COMMON_H

#include <jansson.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"

#define FUZZ_CHECK(cond, ...)                                                  \
    do {                                                                       \
        if (!(cond)) {                                                         \
            fprintf(stderr, "\n*** fuzz invariant broken at %s:%d: %s\n    ",  \
                    __FILE__, __LINE__, #cond);                                \
            fprintf(stderr, __VA_ARGS__);                                      \
            fprintf(stderr, "\n");                                             \
            abort();                                                           \
        }                                                                      \
    } while (0)

/* 1 if s (NUL-terminated) is well-formed UTF-8, as jansson demands of every
 * string it puts in a document (json_pack "s" returns NULL otherwise). */
static inline int
fuzz_utf8_ok(const char *s)
{
    const unsigned char *p = (const unsigned char *)s;

    while (*p != 0) {
        unsigned c = *p, n, cp, i;

        if (c < 0x80) {
            p++;
            continue;
        }
        if (c >= 0xC2 && c <= 0xDF) {
            n = 1;
            cp = c & 0x1F;
        } else if (c >= 0xE0 && c <= 0xEF) {
            n = 2;
            cp = c & 0x0F;
        } else if (c >= 0xF0 && c <= 0xF4) {
            n = 3;
            cp = c & 0x07;
        } else {
            return 0;
        }
        for (i = 1; i <= n; i++) {
            if ((p[i] & 0xC0) != 0x80)
                return 0;
            cp = cp << 6 | (p[i] & 0x3F);
        }
        if ((n == 2 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) ||
            (n == 3 && (cp < 0x10000 || cp > 0x10FFFF)))
            return 0;
        p += n + 1;
    }
    return 1;
}

/* FUZZ_SKIP_KNOWN="utf8,emptyloc" turns off the checks behind findings that
 * are reported but not fixed yet (see README.md), to fuzz past them: "utf8"
 * the checks that error texts are valid UTF-8 (and so make a JSON body),
 * "emptyloc" the one that a request error has a non-empty location. Never
 * set by run.sh. */
static inline int
fuzz_known_skipped(const char *what)
{
    const char *s = getenv("FUZZ_SKIP_KNOWN");

    return s != NULL && strstr(s, what) != NULL;
}

static inline int
fuzz_check_utf8(void)
{
    static int v = -1;

    if (v < 0)
        v = !fuzz_known_skipped("utf8");
    return v;
}

/* The error body the API writes for a req_error (api.c reply_error): it
 * must exist, or the client gets a 4xx with an empty body. */
static inline int
fuzz_error_body_ok(const char *message, const char *location)
{
    json_t *b = json_pack("{s:s, s:s}", "error", message, "location", location);
    int ok = b != NULL;

    json_decref(b);
    return ok;
}

/* A short printable rendering of (possibly binary) bytes for messages. */
static inline const char *
fuzz_show(char *dst, size_t dstlen, const void *src, size_t n)
{
    return log_escape(dst, dstlen, (const char *)src, n);
}

/* The repository root: $FUZZ_REPO_ROOT, else two levels above the binary
 * (build/fuzz/<harness>), else the current directory. Returned path has no
 * trailing slash; probe names a file that must exist under it. */
static inline const char *
fuzz_repo_root(const char *probe)
{
    static char root[PATH_MAX];
    char path[PATH_MAX + 256], exe[PATH_MAX];
    const char *env = getenv("FUZZ_REPO_ROOT");
    ssize_t n;
    int up;

    if (env != NULL && *env != '\0') {
        snprintf(root, sizeof(root), "%s", env);
        return root;
    }
    n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    if (n > 0) {
        exe[n] = '\0';
        for (up = 0; up < 4; up++) {
            char *slash = strrchr(exe, '/');
            if (slash == NULL)
                break;
            *slash = '\0';
            snprintf(path, sizeof(path), "%s/%s", exe, probe);
            if (access(path, R_OK) == 0) {
                snprintf(root, sizeof(root), "%s", exe);
                return root;
            }
        }
    }
    snprintf(root, sizeof(root), ".");
    return root;
}

/* Deterministic 64-bit hash of the input (FNV-1a), to seed "random" values
 * so that a replayed input behaves exactly as when it was found. */
static inline uint64_t
fuzz_hash(const uint8_t *data, size_t size)
{
    uint64_t h = 1469598103934665603ULL;
    size_t i;

    for (i = 0; i < size; i++) {
        h ^= data[i];
        h *= 1099511628211ULL;
    }
    return h;
}

#endif
