/* test_b64.c - base64: RFC 4648 vectors, no line breaks, round trips. */
#include <stdlib.h>

#include "b64.h"
#include "unit.h"

static void
test_vectors(void)
{
    static const char *const in[] = {"", "f", "fo", "foo", "foob", "fooba", "foobar"};
    static const char *const out[] = {"", "Zg==", "Zm8=", "Zm9v", "Zm9vYg==",
                                      "Zm9vYmE=", "Zm9vYmFy"};
    char buf[32];
    unsigned char dec[32];
    size_t i, n;

    for (i = 0; i < sizeof(in) / sizeof(in[0]); i++) {
        n = b64_encode((const unsigned char *)in[i], strlen(in[i]), buf);
        buf[n] = '\0';
        CHECK_STR(buf, out[i]);
        CHECK(n == b64_encoded_len(strlen(in[i])));
        CHECK(b64_decode(out[i], strlen(out[i]), dec) == (long)strlen(in[i]));
        CHECK(memcmp(dec, in[i], strlen(in[i])) == 0);
    }
end:;
}

static void
test_long_no_newlines(void)
{
    size_t sizes[] = {50, 51, 52, 53, 54, 55, 56, 57, 100, 1000, 100001};
    size_t k, i, n;
    unsigned char *src = NULL, *dec = NULL;
    char *enc = NULL;

    for (k = 0; k < sizeof(sizes) / sizeof(sizes[0]); k++) {
        size_t len = sizes[k];
        src = malloc(len);
        for (i = 0; i < len; i++)
            src[i] = (unsigned char)(i * 131 + 7);
        enc = malloc(b64_encoded_len(len) + 1);
        n = b64_encode(src, len, enc);
        CHECK(n == b64_encoded_len(len));
        CHECK(memchr(enc, '\n', n) == NULL);
        CHECK(memchr(enc, '\r', n) == NULL);
        dec = malloc(n / 4 * 3 + 3);
        CHECK(b64_decode(enc, n, dec) == (long)len);
        CHECK(memcmp(dec, src, len) == 0);
        {
            /* libb64's encoder (without its line breaks) agrees byte for byte. */
            char *enc2 = malloc(b64_encoded_len(len) + 1);
            size_t n2 = b64_encode_libb64(src, len, enc2);
            int same = n2 == n && memcmp(enc, enc2, n) == 0;
            free(enc2);
            CHECK(same);
        }
        free(src);
        free(enc);
        free(dec);
        src = dec = NULL;
        enc = NULL;
    }
end:
    free(src);
    free(enc);
    free(dec);
}

static void
test_decode_rejects(void)
{
    unsigned char dec[32];

    CHECK(b64_decode("Zm9v\n", 5, dec) == -1);
    CHECK(b64_decode("Zm9*", 4, dec) == -1);
    CHECK(b64_decode("Z", 1, dec) == -1);
    CHECK(b64_decode("Zg=", 3, dec) == -1);
    CHECK(b64_decode("Zg", 2, dec) == 1); /* padding is optional */
end:;
}

UNIT_TESTS(b64_tests) = {
    {"b64: RFC 4648 vectors", test_vectors},
    {"b64: long inputs have no line breaks and round-trip", test_long_no_newlines},
    {"b64: decode rejects bad input", test_decode_rejects},
    {NULL, NULL},
};
