/* comfy_ws.h - ComfyUI's websocket (/ws?clientId=...), read on its own thread.
 *
 * The only module that knows libwebsockets or pthreads. It keeps one
 * connection with one client id open for the life of the process, reconnects
 * with backoff whenever it drops (close, error, upgrade timeout, idle-ping
 * timeout), and hands every complete message to the libevent loop through
 * one pipe. The handler always runs on the main (libevent) thread. */
#ifndef SIDECAR_COMFY_WS_H
#define SIDECAR_COMFY_WS_H

#include <stddef.h>

struct event_base;
struct ws;

enum ws_kind {
    WS_UP,     /* upgrade done; data/len empty */
    WS_DOWN,   /* connection lost or attempt failed; data = reason text */
    WS_TEXT,   /* one complete text message (JSON), not NUL-terminated */
    WS_BINARY, /* one complete binary message */
};

/* Called on the main thread. data is borrowed: valid only during the call. */
typedef void (*ws_handler)(enum ws_kind kind, const unsigned char *data,
                           size_t len, void *arg);

struct ws_options {
    const char *address;   /* e.g. "127.0.0.1" */
    int port;              /* e.g. 8188 */
    const char *client_id; /* sent as ?clientId= */
    size_t max_message;    /* larger messages are dropped (logged); 0 = 64 MiB */
    int ping_interval_s;   /* idle seconds before lws sends a PING; 0 = 20 */
    int ping_timeout_s;    /* no answer for this long -> drop; 0 = 60 */
    /* Send {"type":"feature_flags","data":{"supports_preview_metadata":true}}
     * as the first message after every connect. */
    int announce_preview_metadata;
};

/* Create the context and start the thread; the first connect attempt starts
 * at once. Returns NULL (and logs why) on failure. Strings are copied. */
struct ws *ws_start(struct event_base *base, const struct ws_options *opt,
                    ws_handler handler, void *arg);

/* Drop the current connection (if any) and reconnect promptly. Used when the
 * main thread decides the socket is stale. Thread-safe. */
void ws_kick(struct ws *ws);

/* Stop the thread, close the connection politely, free everything. Messages
 * still queued in the pipe are discarded without calling the handler. */
void ws_stop(struct ws *ws);

#endif
