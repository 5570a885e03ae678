/* log.c - the one place that writes log lines (see log.h).
 *
 * Owns the minimum level and the stderr sink. Lines are assembled in a stack
 * buffer and written with a single write(2) so that lines from the lws thread
 * and the main thread never interleave mid-line. */
#include <event2/event.h>
#include <libwebsockets.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "utf8.h"

enum log_level log_min_level = LOG_INFO;
static int json_lines;

static const char *const level_names[] = {"DEBUG", "INFO", "WARN", "ERROR"};

int
log_level_parse(const char *name, enum log_level *out)
{
    if (strcasecmp(name, "debug") == 0 || strcasecmp(name, "trace") == 0)
        *out = LOG_DEBUG;
    else if (strcasecmp(name, "info") == 0)
        *out = LOG_INFO;
    else if (strcasecmp(name, "warn") == 0 || strcasecmp(name, "warning") == 0)
        *out = LOG_WARN;
    else if (strcasecmp(name, "error") == 0 || strcasecmp(name, "fatal") == 0)
        *out = LOG_ERROR;
    else
        return -1;
    return 0;
}

void
log_set_level(enum log_level level)
{
    log_min_level = level;
}

void
log_set_json(int on)
{
    json_lines = on;
}

/* Append src as the inside of a JSON string. Returns the new length. */
static size_t
json_append(char *dst, size_t n, size_t cap, const char *src, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    size_t i = 0;

    while (i < len && n + 8 < cap) {
        unsigned char c = (unsigned char)src[i];
        size_t k;

        if (c == '"' || c == '\\') {
            dst[n++] = '\\';
            dst[n++] = (char)c;
            i++;
        } else if (c == '\n') {
            dst[n++] = '\\';
            dst[n++] = 'n';
            i++;
        } else if (c < 0x20 || c == 0x7f) {
            n += (size_t)snprintf(dst + n, cap - n, "\\u00%c%c", hex[c >> 4], hex[c & 15]);
            i++;
        } else if ((k = utf8_len((const unsigned char *)src + i, len - i)) == 0) {
            memcpy(dst + n, "\\ufffd", 6);
            n += 6;
            i++;
        } else {
            memcpy(dst + n, src + i, k);
            n += k;
            i += k;
        }
    }
    return n;
}

void
log_write(enum log_level level, const char *req, const char *fmt, ...)
{
    char line[4096];
    struct timespec ts;
    struct tm tm;
    size_t n;
    int r;
    va_list ap;

    if (level < LOG_DEBUG || level > LOG_ERROR)
        level = LOG_ERROR;
    if (json_lines) {
        char msg[4096], ts_buf[40];
        static const char *const lower[] = {"debug", "info", "warn", "error"};

        va_start(ap, fmt);
        r = vsnprintf(msg, sizeof(msg), fmt, ap);
        va_end(ap);
        clock_gettime(CLOCK_REALTIME, &ts);
        gmtime_r(&ts.tv_sec, &tm);
        n = strftime(ts_buf, sizeof(ts_buf), "%Y-%m-%dT%H:%M:%S", &tm);
        snprintf(ts_buf + n, sizeof(ts_buf) - n, ".%03ldZ", ts.tv_nsec / 1000000L);
        n = (size_t)snprintf(line, sizeof(line), "{\"time\":\"%s\",\"level\":\"%s\",\"msg\":\"",
                             ts_buf, lower[level]);
        n = json_append(line, n, sizeof(line) - 64 - (req != NULL ? 2 * strlen(req) : 0), msg,
                        r < 0 ? 0 : (size_t)r < sizeof(msg) ? (size_t)r : sizeof(msg) - 1);
        line[n++] = '"';
        if (req != NULL) {
            memcpy(line + n, ",\"req\":\"", 8);
            n += 8;
            n = json_append(line, n, sizeof(line) - 4, req, strlen(req));
            line[n++] = '"';
        }
        line[n++] = '}';
        line[n++] = '\n';
        if (write(STDERR_FILENO, line, n) < 0)
            return;
        return;
    }
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    n = strftime(line, sizeof(line), "%Y-%m-%dT%H:%M:%S", &tm);
    r = snprintf(line + n, sizeof(line) - n, ".%03ldZ %-5s ",
                 ts.tv_nsec / 1000000L, level_names[level]);
    if (r > 0)
        n += (size_t)r;
    if (req != NULL && n < sizeof(line)) {
        r = snprintf(line + n, sizeof(line) - n, "[req=%s] ", req);
        if (r > 0)
            n += (size_t)r;
    }
    if (n < sizeof(line)) {
        va_start(ap, fmt);
        r = vsnprintf(line + n, sizeof(line) - n, fmt, ap);
        va_end(ap);
        if (r > 0)
            n += (size_t)r;
    }
    if (n >= sizeof(line) - 1) {
        n = sizeof(line) - 1;
        memcpy(line + n - 3, "...", 3);
    }
    line[n++] = '\n';
    /* A short write to stderr is not worth a retry loop: logging must never
     * block or fail the caller. */
    if (write(STDERR_FILENO, line, n) < 0)
        return;
}

const char *
log_escape(char *dst, size_t dstlen, const char *src, size_t srclen)
{
    static const char hex[] = "0123456789abcdef";
    size_t i, o = 0;

    if (dstlen == 0)
        return dst;
    for (i = 0; i < srclen && src[i] != '\0'; i++) {
        unsigned char c = (unsigned char)src[i];
        char esc[5];
        size_t k = 0;

        if (c == '\n') {
            esc[k++] = '\\';
            esc[k++] = 'n';
        } else if (c == '\r') {
            esc[k++] = '\\';
            esc[k++] = 'r';
        } else if (c == '\t') {
            esc[k++] = '\\';
            esc[k++] = 't';
        } else if (c == '"' || c == '\\') {
            esc[k++] = '\\';
            esc[k++] = (char)c;
        } else if (c < 0x20 || c == 0x7f) {
            esc[k++] = '\\';
            esc[k++] = 'x';
            esc[k++] = hex[c >> 4];
            esc[k++] = hex[c & 15];
        } else {
            esc[k++] = (char)c;
        }
        if (o + k + 4 > dstlen) {
            if (dstlen >= 4) {
                o = o < dstlen - 4 ? o : dstlen - 4;
                memcpy(dst + o, "...", 3);
                o += 3;
            }
            break;
        }
        memcpy(dst + o, esc, k);
        o += k;
    }
    dst[o < dstlen ? o : dstlen - 1] = '\0';
    return dst;
}

static void
libevent_log(int severity, const char *msg)
{
    enum log_level l = severity >= EVENT_LOG_ERR    ? LOG_ERROR
                       : severity >= EVENT_LOG_WARN ? LOG_WARN
                       : severity >= EVENT_LOG_MSG  ? LOG_INFO
                                                    : LOG_DEBUG;
    LOG_AT(l, NULL, "libevent: %s", msg);
}

static void
lws_log(int level, const char *line)
{
    /* lws warns on every failed reconnect attempt; comfy_ws.c already
     * reports those once, so its warnings are debug detail here. */
    enum log_level l = (level & LLL_ERR) ? LOG_WARN : LOG_DEBUG;
    size_t len = strlen(line);
    char buf[512];

    /* lws lines end in a newline and start with their own timestamp. */
    while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
        len--;
    LOG_AT(l, NULL, "lws: %s", log_escape(buf, sizeof(buf), line, len));
}

void
log_hook_libraries(void)
{
    event_set_log_callback(libevent_log);
    lws_set_log_level(LLL_ERR | LLL_WARN, lws_log);
}
