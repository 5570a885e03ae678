/* fuzz_b64.c - base64 (src/b64.h).
 *
 * The input is used twice: as bytes to encode, and as text to decode.
 *   - b64_encode and b64_encode_libb64 write exactly b64_encoded_len(n)
 *     characters (into a buffer of exactly that size: ASan sees any extra
 *     byte, such as EVP_EncodeBlock's NUL), the same characters, only the
 *     alphabet plus trailing '=' padding; decoding them gives the input back;
 *   - b64_decode agrees with a reference decoder written from RFC 4648 and
 *     the header's contract (padding optional but, when present, completing
 *     a 4-character group; no whitespace; a lone trailing character is
 *     invalid): the same accept/reject decision, the same length, the same
 *     bytes; it never writes past n / 4 * 3 + 3 bytes;
 *   - an accepted text re-encodes to itself up to padding and to the unused
 *     low bits of its last character (reported in README.md). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "b64.h"
#include "fuzz_common.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    log_set_level(LOG_ERROR);
    return 0;
}

static int
val(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return -1;
}

/* Reference decoder: -1 or the decoded length. */
static long
ref_decode(const char *s, size_t n, unsigned char *out)
{
    size_t pad = 0, i, o = 0;
    uint32_t acc = 0;
    int bits = 0;

    while (pad < 2 && n > pad && s[n - pad - 1] == '=')
        pad++;
    if (pad > 0 && n % 4 != 0)
        return -1;
    n -= pad;
    if (n % 4 == 1)
        return -1;
    for (i = 0; i < n; i++) {
        int v = val((unsigned char)s[i]);
        if (v < 0)
            return -1;
        acc = acc << 6 | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (unsigned char)(acc >> bits);
            acc &= (1u << bits) - 1;
        }
    }
    return (long)o;
}

static void
check_encode(const uint8_t *data, size_t size)
{
    size_t elen = b64_encoded_len(size), i, n1, n2;
    /* Exactly elen bytes (1 for the empty input: malloc(0) may be NULL). */
    char *e1 = malloc(elen ? elen : 1), *e2 = malloc(elen ? elen : 1);
    unsigned char *back = malloc(elen / 4 * 3 + 3);
    long dl;

    FUZZ_CHECK(elen == (size + 2) / 3 * 4, "b64_encoded_len(%zu) = %zu", size, elen);
    n1 = b64_encode(data, size, e1);
    n2 = b64_encode_libb64(data, size, e2);
    FUZZ_CHECK(n1 == elen && n2 == elen, "encoded %zu / %zu chars, expected %zu", n1, n2,
               elen);
    FUZZ_CHECK(memcmp(e1, e2, elen) == 0, "b64_encode and b64_encode_libb64 disagree");
    for (i = 0; i < elen; i++)
        FUZZ_CHECK(val((unsigned char)e1[i]) >= 0 ||
                       (e1[i] == '=' && i >= elen - 2 && (i == elen - 1 || e1[elen - 1] == '=')),
                   "bad character 0x%02x at %zu", (unsigned char)e1[i], i);
    dl = b64_decode(e1, elen, back);
    FUZZ_CHECK(dl == (long)size && memcmp(back, data, size) == 0,
               "decode(encode(x)) != x (%ld bytes back of %zu)", dl, size);
    /* Without its padding too ("padding optional"). */
    while (elen > 0 && e1[elen - 1] == '=')
        elen--;
    dl = b64_decode(e1, elen, back);
    FUZZ_CHECK(dl == (long)size && memcmp(back, data, size) == 0,
               "decode(unpadded encode(x)) != x");
    free(e1);
    free(e2);
    free(back);
}

static void
check_decode(const uint8_t *data, size_t size)
{
    /* A copy of exactly size bytes, so that reading past n is caught. */
    char *src = malloc(size ? size : 1);
    size_t cap = size / 4 * 3 + 3;
    unsigned char *out = malloc(cap), *ref = malloc(cap);
    long got, want;

    memcpy(src, data, size);
    got = b64_decode(src, size, out);
    want = ref_decode(src, size, ref);
    FUZZ_CHECK(got == want, "b64_decode returned %ld, the reference %ld", got, want);
    if (got >= 0) {
        size_t elen = b64_encoded_len((size_t)got), m = size, i;
        char *re = malloc(elen ? elen : 1);

        FUZZ_CHECK((size_t)got <= cap, "decoded %ld bytes into %zu", got, cap);
        FUZZ_CHECK(memcmp(out, ref, (size_t)got) == 0, "decoded bytes differ");
        b64_encode(out, (size_t)got, re);
        while (m > 0 && src[m - 1] == '=')
            m--;
        while (elen > 0 && re[elen - 1] == '=')
            elen--;
        FUZZ_CHECK(m == elen, "re-encoding has %zu characters, the input %zu", elen, m);
        /* All but the last character are fixed; the last may differ only
         * in its unused low bits (non-canonical input is accepted). */
        for (i = 0; i + 1 < m; i++)
            FUZZ_CHECK(re[i] == src[i], "re-encoding differs at %zu", i);
        if (m > 0) {
            int mask = m % 4 == 2 ? 0x30 : m % 4 == 3 ? 0x3C : 0x3F;
            FUZZ_CHECK((val((unsigned char)re[m - 1]) & mask) ==
                           (val((unsigned char)src[m - 1]) & mask),
                       "last character decodes to other bits");
        }
        free(re);
    }
    free(src);
    free(out);
    free(ref);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    check_encode(data, size);
    check_decode(data, size);
    return 0;
}
