/* log.h - levelled, one-line-per-event logging for comfy-sidecar.
 *
 * Every line: "<ISO8601 time> <LEVEL> [req=<id>] message". The level check
 * happens before any formatting, so disabled levels cost one comparison.
 * Untrusted text (anything that came from a client or from ComfyUI) must go
 * through log_escape() or the "%s" of a LOG_* call with log_esc(). */
#ifndef SIDECAR_LOG_H
#define SIDECAR_LOG_H

#include <stddef.h>

enum log_level { LOG_DEBUG = 0, LOG_INFO = 1, LOG_WARN = 2, LOG_ERROR = 3 };

extern enum log_level log_min_level;

/* Parse "debug", "info", "warn"/"warning", "error" (any case). Returns -1
 * on an unknown name. */
int log_level_parse(const char *name, enum log_level *out);

void log_set_level(enum log_level level);

/* 1: one JSON object per line ({"time","level","msg","req"?}) for log
 * shippers; 0: text (the default). */
void log_set_json(int on);

/* Write one line. req may be NULL. Thread-safe (one write(2) per line). */
void log_write(enum log_level level, const char *req, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Copy src into dst (size dstlen, always NUL-terminated) with control
 * characters, quotes and backslashes escaped; truncates with "...". Returns
 * dst so it can be used inline in a LOG_* argument list. */
const char *log_escape(char *dst, size_t dstlen, const char *src, size_t srclen);

/* Route libevent's and libwebsockets' internal messages into our log. */
void log_hook_libraries(void);

#define LOG_AT(lvl, req, ...)                                                  \
    do {                                                                       \
        if ((lvl) >= log_min_level)                                            \
            log_write((lvl), (req), __VA_ARGS__);                              \
    } while (0)

#define log_debug(...) LOG_AT(LOG_DEBUG, NULL, __VA_ARGS__)
#define log_info(...) LOG_AT(LOG_INFO, NULL, __VA_ARGS__)
#define log_warn(...) LOG_AT(LOG_WARN, NULL, __VA_ARGS__)
#define log_error(...) LOG_AT(LOG_ERROR, NULL, __VA_ARGS__)

/* Variants carrying a request id (the client's `id`). */
#define rlog_debug(req, ...) LOG_AT(LOG_DEBUG, (req), __VA_ARGS__)
#define rlog_info(req, ...) LOG_AT(LOG_INFO, (req), __VA_ARGS__)
#define rlog_warn(req, ...) LOG_AT(LOG_WARN, (req), __VA_ARGS__)
#define rlog_error(req, ...) LOG_AT(LOG_ERROR, (req), __VA_ARGS__)

#endif
