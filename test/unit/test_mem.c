/* test_mem.c - mem_trim() drops clean library pages and nothing else; the
 * GnuTLS hook is exported where GnuTLS's constructor can find it. */
#include <dlfcn.h>
#include <jansson.h>
#include <stdlib.h>

#include "b64.h"
#include "mem.h"
#include "unit.h"

static long
status_kb(const char *field)
{
    char line[256];
    size_t n = strlen(field);
    long kb = -1;
    FILE *f = fopen("/proc/self/status", "r");

    if (f == NULL)
        return -1;
    while (fgets(line, sizeof(line), f) != NULL)
        if (strncmp(line, field, n) == 0 && line[n] == ':')
            kb = atol(line + n + 1);
    fclose(f);
    return kb;
}

/* Written at run time: lives in a writable segment the trim must keep. */
static char written[64];
/* Relocated pointers: RELRO, which the trim must keep too. */
static const char *const relocated[] = {"Zg==", "Zm8=", "Zm9v"};

static void
test_trim_keeps_working(void)
{
    static const char *const plain[] = {"f", "fo", "foo"};
    long before, after;
    size_t dropped, i, n;
    char buf[16], *s = NULL;
    json_t *j = NULL;

    snprintf(written, sizeof(written), "written %d", 42);
    before = status_kb("RssFile");
    dropped = mem_trim("unit test");
    after = status_kb("RssFile");
    /* libcurl's and libwebsockets' libraries alone map several MB of code. */
    CHECK(dropped > (1u << 20));
    CHECK(before > 0 && after > 0);
    CHECK(after < before - 512);
    /* Everything still runs and reads the same bytes: libc, OpenSSL (base64),
     * jansson, our own code, relocated tables and written data. */
    CHECK_STR(written, "written 42");
    for (i = 0; i < 3; i++) {
        n = b64_encode((const unsigned char *)plain[i], strlen(plain[i]), buf);
        buf[n] = '\0';
        CHECK_STR(buf, relocated[i]);
    }
    j = json_pack("{s:s, s:i}", "a", relocated[2], "b", 7);
    CHECK(j != NULL);
    s = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);
    CHECK_STR(s, "{\"a\":\"Zm9v\",\"b\":7}");
    /* A second trim right away finds the pages mapped again by the above. */
    CHECK(mem_trim("unit test again") > 0);
    CHECK_STR(written, "written 42");
end:
    free(s);
    json_decref(j);
}

static void
test_gnutls_hook_exported(void)
{
    int (*skip)(void) = (int (*)(void))dlsym(RTLD_DEFAULT, "_gnutls_global_init_skip");

    CHECK(skip != NULL);
    CHECK(skip() == 1);
end:;
}

UNIT_TESTS(mem_tests) = {
    {"mem: trim drops clean library pages, code and data still right", test_trim_keeps_working},
    {"mem: GnuTLS's skip hook is exported", test_gnutls_hook_exported},
    {NULL, NULL},
};
