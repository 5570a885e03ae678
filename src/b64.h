/* b64.h - base64 over libb64, as plain RFC 4648 text: no line breaks.
 * Pure functions: no I/O, no globals. */
#ifndef SIDECAR_B64_H
#define SIDECAR_B64_H

#include <stddef.h>

/* Exact length of the encoding of n bytes (with padding); 0 on overflow. */
size_t b64_encoded_len(size_t n);

/* Encode n bytes of src into dst, which must hold b64_encoded_len(n) bytes
 * (no NUL is written). Returns the number of characters written. */
size_t b64_encode(const unsigned char *src, size_t n, char *dst);

/* The same with libb64's encoder (slower; kept for comparison). */
size_t b64_encode_libb64(const unsigned char *src, size_t n, char *dst);

/* Decode standard base64 (padding optional, no whitespace allowed). dst must
 * hold n / 4 * 3 + 3 bytes. Returns the decoded length, or -1 if the input
 * is not valid base64. */
long b64_decode(const char *src, size_t n, unsigned char *dst);

#endif
