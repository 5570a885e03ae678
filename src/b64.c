/* b64.c - RFC 4648 base64.
 *
 * Encoding is the hot path (every image of every answer): it uses OpenSSL's
 * EVP_EncodeBlock, which writes plain base64 without line breaks at about
 * five times libb64's speed (bench/b64_bench.c: 3.0 ms vs 0.6 ms per 1.5 MB
 * image; BENCHMARKS.md). libb64 remains the decoder, behind a check of the
 * alphabet, because its decoder silently skips characters it does not know;
 * its encoder is kept as b64_encode_libb64 for the benchmark and the tests,
 * fed at most 17 groups per call so that it never inserts the newline it
 * puts after every 72 characters. */
#include <b64/cdecode.h>
#include <b64/cencode.h>
#include <openssl/evp.h>
#include <limits.h>
#include <stdint.h>
#include <string.h>

#include "b64.h"

#define GROUPS_PER_CALL 17 /* libb64 breaks lines after 18 groups */
#define BYTES_PER_CALL (GROUPS_PER_CALL * 3)

static const char alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

size_t
b64_encoded_len(size_t n)
{
    if (n > (SIZE_MAX / 4) * 3 - 3)
        return 0;
    return (n + 2) / 3 * 4;
}

size_t
b64_encode(const unsigned char *src, size_t n, char *dst)
{
    size_t off = 0, out = 0;

    /* EVP_EncodeBlock takes an int and writes a NUL after its output, one
     * byte beyond what the caller reserved. So every slice but the last
     * (whose NUL the next slice overwrites) goes straight into dst, and the
     * last 1 to 3 bytes go through a small buffer. */
    while (n - off > 3) {
        size_t chunk = (n - off - 1) / 3 * 3;

        if (chunk > (size_t)3 << 27)
            chunk = (size_t)3 << 27;
        out += (size_t)EVP_EncodeBlock((unsigned char *)dst + out, src + off, (int)chunk);
        off += chunk;
    }
    if (off < n) {
        unsigned char last[5];
        int k = EVP_EncodeBlock(last, src + off, (int)(n - off));

        memcpy(dst + out, last, (size_t)k);
        out += (size_t)k;
    }
    return out;
}

size_t
b64_encode_libb64(const unsigned char *src, size_t n, char *dst)
{
    base64_encodestate st;
    size_t full = n / 3 * 3, off = 0, out = 0, rest;

    base64_init_encodestate(&st);
    while (off < full) {
        size_t chunk = full - off < BYTES_PER_CALL ? full - off : BYTES_PER_CALL;

        st.stepcount = 0;
        out += (size_t)base64_encode_block((const char *)src + off, (int)chunk,
                                           dst + out, &st);
        off += chunk;
    }
    rest = n - full;
    if (rest > 0) {
        unsigned v = (unsigned)src[full] << 16;

        if (rest == 2)
            v |= (unsigned)src[full + 1] << 8;
        dst[out++] = alphabet[(v >> 18) & 63];
        dst[out++] = alphabet[(v >> 12) & 63];
        dst[out++] = rest == 2 ? alphabet[(v >> 6) & 63] : '=';
        dst[out++] = '=';
    }
    return out;
}

static int
is_b64_char(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
           (c >= '0' && c <= '9') || c == '+' || c == '/';
}

long
b64_decode(const char *src, size_t n, unsigned char *dst)
{
    base64_decodestate st;
    size_t i, pad = 0, done = 0;
    long total = 0;

    if (n > (size_t)LONG_MAX / 3)
        return -1;
    while (pad < 2 && n - pad > 0 && src[n - pad - 1] == '=')
        pad++;
    if (pad > 0 && n % 4 != 0)
        return -1;
    n -= pad;
    if (n % 4 == 1)
        return -1;
    for (i = 0; i < n; i++)
        if (!is_b64_char((unsigned char)src[i]))
            return -1;
    base64_init_decodestate(&st);
    /* libb64 takes an int length; feed it in slices. */
    while (done < n) {
        size_t chunk = n - done > (1u << 30) ? (1u << 30) : n - done;

        chunk -= chunk % 4 == 0 || done + chunk == n ? 0 : chunk % 4;
        total += base64_decode_block(src + done, (int)chunk,
                                     (char *)dst + total, &st);
        done += chunk;
    }
    return total;
}
