/* util.h - small helpers with no better home: ids, clocks, allocation that
 * aborts on exhaustion (for small internal objects only; anything sized by a
 * peer is bounded and checked where it is read). */
#ifndef SIDECAR_UTIL_H
#define SIDECAR_UTIL_H

#include <stddef.h>
#include <stdint.h>

/* Random UUID v4, "xxxxxxxx-xxxx-4xxx-yxxx-xxxxxxxxxxxx" + NUL (37 bytes). */
void util_uuid4(char out[37]);

/* Milliseconds: wall clock since the epoch, and a monotonic clock. */
int64_t util_epoch_ms(void);
double util_mono_ms(void);

/* ISO 8601 UTC with milliseconds, e.g. 2026-11-27T05:00:00.000Z. */
void util_iso_time(int64_t epoch_ms, char *buf, size_t len);

void *xmalloc(size_t n);
void *xcalloc(size_t n, size_t size);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);

#endif
