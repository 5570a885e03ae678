/* comfy_ws.c - ComfyUI's websocket on a libwebsockets thread (see comfy_ws.h).
 *
 * Owns the lws context, the thread that services it, the connection with its
 * reconnect backoff, and the pipe that carries complete messages (and UP/DOWN
 * events) as pointers to the libevent loop. Every lws call except
 * lws_cancel_service() happens on the lws thread once it runs; the main
 * thread talks to it only through the atomic stop/kick flags plus
 * lws_cancel_service(). */
#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <libwebsockets.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "comfy_ws.h"
#include "log.h"

#define WS_DEFAULT_MAX_MESSAGE ((size_t)64 * 1024 * 1024)
#define WS_DEFAULT_PING_S 20
#define WS_DEFAULT_PING_TIMEOUT_S 60
#define WS_RX_BUFFER 65536
#define WS_BATCH 256
/* How long ws_stop waits for the polite close before giving up on it. */
#define WS_STOP_DEADLINE_US (2 * LWS_US_PER_SEC)

static const char ws_feature_flags[] =
    "{\"type\":\"feature_flags\","
    "\"data\":{\"supports_preview_metadata\":true}}";

static const uint32_t ws_backoff_ms[] = {250, 500, 1000, 2000, 4000};

/* One pipe item. The pointer crosses the pipe; the receiver frees it. */
struct ws_msg {
    enum ws_kind kind;
    size_t len;
    unsigned char data[];
};

struct ws {
    /* Set by ws_start, read-only afterwards (both threads). */
    struct event_base *base;
    ws_handler handler;
    void *arg;
    char *address;
    char *host; /* "addr:port" for the Host header */
    char *path;
    int port;
    size_t max_message;
    int announce;
    lws_retry_bo_t retry;
    struct lws_context *ctx;
    int pipe_r, pipe_w;

    /* Cross-thread requests from main to the lws thread. */
    atomic_int stop;
    atomic_int kick;

    /* lws thread only. */
    struct lws *wsi;
    lws_sorted_usec_list_t sul_connect;
    lws_sorted_usec_list_t sul_deadline;
    uint16_t tries;
    int established;
    int want_flags;     /* feature_flags still to send on this connection */
    int want_close;     /* close politely at the next WRITEABLE */
    int kicked;         /* this connection is being dropped by ws_kick */
    int stopping;       /* stop seen on this thread, deadline armed */
    int deadline_hit;
    unsigned overs;     /* connection_over() calls, to spot sync failures */
    int quiet;          /* failures since the last UP: log repeats at debug */
    unsigned failed;    /* failed attempts since the last UP */
    char reason[160];   /* why the current connection ended */
    struct ws_msg *rx;  /* message being reassembled */
    size_t rx_cap;
    int rx_dropping;    /* oversized message: skip until its final chunk */
    size_t rx_dropped;

    /* Main thread only. */
    struct event *ev;
    pthread_t thread;
    unsigned char carry[sizeof(struct ws_msg *)];
    size_t carry_len;
    int in_dispatch;
    int free_on_return; /* ws_stop ran inside the handler */
};

#define ws_of(ptr, member) \
    ((struct ws *)(void *)((char *)(ptr) - offsetof(struct ws, member)))

static void connect_cb(lws_sorted_usec_list_t *sul);

/* ---- lws thread -> main thread ------------------------------------------ */

static struct ws_msg *
msg_new(enum ws_kind kind, const void *data, size_t len)
{
    struct ws_msg *m = malloc(sizeof(*m) + len);

    if (m == NULL)
        return NULL;
    m->kind = kind;
    m->len = len;
    if (len > 0)
        memcpy(m->data, data, len);
    return m;
}

/* Hand m to the main thread (takes ownership). The pipe is non-blocking so a
 * stalled main loop cannot wedge ws_stop: we wait for room in short polls,
 * which still gives TCP backpressure, and give up once stop is set. */
static void
post(struct ws *ws, struct ws_msg *m)
{
    if (m == NULL) {
        log_error("ws: out of memory, message lost");
        return;
    }
    for (;;) {
        struct pollfd pfd = {.fd = ws->pipe_w, .events = POLLOUT};
        ssize_t n;

        if (atomic_load(&ws->stop))
            break;
        n = write(ws->pipe_w, &m, sizeof(m));
        if (n == (ssize_t)sizeof(m))
            return;
        if (n < 0 && errno != EAGAIN && errno != EINTR) {
            log_error("ws: pipe write: %s", strerror(errno));
            break;
        }
        if (n < 0 && errno == EAGAIN)
            poll(&pfd, 1, 100);
    }
    free(m);
}

static void
post_text(struct ws *ws, enum ws_kind kind, const char *text)
{
    post(ws, msg_new(kind, text, strlen(text)));
}

/* ---- lws thread: connection life cycle ---------------------------------- */

static void
rx_reset(struct ws *ws)
{
    free(ws->rx);
    ws->rx = NULL;
    ws->rx_cap = 0;
    ws->rx_dropping = 0;
    ws->rx_dropped = 0;
}

static void
schedule_connect(struct ws *ws, lws_usec_t us)
{
    lws_sul_schedule(ws->ctx, 0, &ws->sul_connect, connect_cb, us);
}

static void
schedule_retry(struct ws *ws)
{
    char conceal;
    unsigned int ms = lws_retry_get_delay_ms(ws->ctx, &ws->retry, &ws->tries,
                                             &conceal);

    log_debug("ws: reconnect in %u ms", ms);
    schedule_connect(ws, (lws_usec_t)ms * LWS_US_PER_MS);
}

/* A connection or attempt is over: tell main, then try again. The first
 * failure after an UP is a warning; repeats are debug so that a ComfyUI that
 * is down for minutes does not flood the log. */
static void
connection_over(struct ws *ws)
{
    int was_up = ws->established;

    if (ws->reason[0] == '\0')
        snprintf(ws->reason, sizeof(ws->reason), "%s",
                 was_up ? "connection closed" : "closed before upgrade");
    if (ws->kicked)
        snprintf(ws->reason, sizeof(ws->reason), "kicked");
    if (!ws->quiet && !ws->kicked)
        log_warn("ws: %s %s:%d: %s", was_up ? "lost" : "cannot connect to",
                 ws->address, ws->port, ws->reason);
    else
        log_debug("ws: %s %s:%d: %s", was_up ? "lost" : "cannot connect to",
                  ws->address, ws->port, ws->reason);
    if (!ws->kicked) /* a kick is not a failure: keep the next one loud */
        ws->quiet = 1;
    ws->overs++;
    if (!was_up)
        ws->failed++;
    post_text(ws, WS_DOWN, ws->reason);

    ws->wsi = NULL;
    ws->established = 0;
    ws->want_flags = 0;
    ws->want_close = 0;
    rx_reset(ws);
    if (ws->kicked) {
        ws->kicked = 0;
        ws->tries = 0;
        schedule_connect(ws, 0);
    } else {
        schedule_retry(ws);
    }
    ws->reason[0] = '\0';
}

static void
connect_cb(lws_sorted_usec_list_t *sul)
{
    struct ws *ws = ws_of(sul, sul_connect);
    struct lws_client_connect_info cc;
    struct lws *got;
    unsigned overs = ws->overs;

    if (atomic_load(&ws->stop) || ws->wsi != NULL)
        return;
    memset(&cc, 0, sizeof(cc));
    cc.context = ws->ctx;
    cc.address = ws->address;
    cc.port = ws->port;
    cc.path = ws->path;
    cc.host = ws->host;
    cc.origin = NULL; /* ComfyUI 403s a mismatching Origin; none is fine */
    cc.ssl_connection = 0;
    cc.local_protocol_name = "comfy";
    cc.pwsi = &ws->wsi;
    cc.retry_and_idle_policy = &ws->retry;
    ws->reason[0] = '\0';
    log_debug("ws: connecting to %s:%d%s", ws->address, ws->port, ws->path);
    got = lws_client_connect_via_info(&cc);
    if (got == NULL && ws->overs == overs) {
        /* Failed synchronously and no WSI_DESTROY of ours rescheduled. */
        if (ws->reason[0] == '\0')
            snprintf(ws->reason, sizeof(ws->reason), "connect failed");
        connection_over(ws);
    }
}

static void
deadline_cb(lws_sorted_usec_list_t *sul)
{
    struct ws *ws = ws_of(sul, sul_deadline);

    log_warn("ws: polite close timed out, dropping the connection");
    ws->deadline_hit = 1;
    /* Same as in WSI_DESTROY: lws would otherwise sleep before the loop
     * condition is looked at again. */
    lws_cancel_service(ws->ctx);
}

/* Ask lws to end our connection: politely (close frame) when established,
 * else by killing the pending upgrade. */
static void
drop_connection(struct ws *ws)
{
    if (ws->wsi == NULL)
        return;
    if (ws->established) {
        ws->want_close = 1;
        lws_callback_on_writable(ws->wsi);
    } else {
        lws_set_timeout(ws->wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_ASYNC);
    }
}

static void
on_wait_cancelled(struct ws *ws)
{
    if (atomic_load(&ws->stop)) {
        if (ws->stopping)
            return;
        ws->stopping = 1;
        lws_sul_cancel(&ws->sul_connect);
        lws_sul_schedule(ws->ctx, 0, &ws->sul_deadline, deadline_cb,
                         WS_STOP_DEADLINE_US);
        drop_connection(ws);
        return;
    }
    if (!atomic_exchange(&ws->kick, 0))
        return;
    if (ws->wsi != NULL) {
        log_info("ws: kicked, reconnecting");
        ws->kicked = 1;
        drop_connection(ws);
    } else {
        /* In backoff: skip the wait. */
        log_debug("ws: kicked during backoff, connecting now");
        ws->tries = 0;
        schedule_connect(ws, 0);
    }
}

/* Append one RECEIVE chunk; post the message when it is complete. */
static void
on_receive(struct ws *ws, struct lws *wsi, const void *in, size_t len)
{
    int final = lws_is_final_fragment(wsi);
    size_t have = ws->rx != NULL ? ws->rx->len : 0;

    if (ws->rx_dropping) {
        ws->rx_dropped += len;
        goto check_final;
    }
    if (len > ws->max_message - have) {
        log_warn("ws: message larger than %zu bytes dropped", ws->max_message);
        ws->rx_dropped = have + len;
        free(ws->rx);
        ws->rx = NULL;
        ws->rx_cap = 0;
        ws->rx_dropping = 1;
        goto check_final;
    }
    if (ws->rx == NULL || have + len > ws->rx_cap) {
        /* Reserve what lws says is still coming in this frame, at least
         * double, so a big message is copied O(log n) times. */
        size_t want = have + len + lws_remaining_packet_payload(wsi);
        size_t cap;
        struct ws_msg *m;

        if (ws->rx_cap > 0 && want < ws->rx_cap * 2)
            want = ws->rx_cap * 2;
        cap = want < ws->max_message ? want : ws->max_message;
        if (cap < have + len)
            cap = have + len;
        m = realloc(ws->rx, sizeof(*m) + cap);
        if (m == NULL) {
            log_error("ws: out of memory, message dropped");
            rx_reset(ws);
            ws->rx_dropping = 1;
            goto check_final;
        }
        if (ws->rx == NULL) {
            m->kind = lws_frame_is_binary(wsi) ? WS_BINARY : WS_TEXT;
            m->len = 0;
        }
        ws->rx = m;
        ws->rx_cap = cap;
    }
    memcpy(ws->rx->data + ws->rx->len, in, len);
    ws->rx->len += len;

check_final:
    if (!final)
        return;
    if (ws->rx_dropping) {
        log_debug("ws: dropped message was %zu bytes", ws->rx_dropped);
        rx_reset(ws);
        return;
    }
    if (ws->rx == NULL) /* empty message */
        ws->rx = msg_new(lws_frame_is_binary(wsi) ? WS_BINARY : WS_TEXT,
                         NULL, 0);
    post(ws, ws->rx);
    ws->rx = NULL;
    ws->rx_cap = 0;
}

static int
ws_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user,
            void *in, size_t len)
{
    struct lws_context *ctx = lws_get_context(wsi);
    struct ws *ws = ctx != NULL ? lws_context_user(ctx) : NULL;
    unsigned char buf[LWS_PRE + sizeof(ws_feature_flags)];
    const size_t flags_len = sizeof(ws_feature_flags) - 1;

    (void)user;
    if (ws == NULL)
        return 0;
    switch (reason) {
    case LWS_CALLBACK_EVENT_WAIT_CANCELLED:
        /* wsi is lws's own pipe here, not ours. */
        on_wait_cancelled(ws);
        break;

    case LWS_CALLBACK_CLIENT_ESTABLISHED:
        if (wsi != ws->wsi)
            break;
        if (ws->failed > 0)
            log_info("ws: connected to %s:%d (after %u failed attempts)",
                     ws->address, ws->port, ws->failed);
        else
            log_info("ws: connected to %s:%d", ws->address, ws->port);
        ws->established = 1;
        ws->tries = 0;
        ws->quiet = 0;
        ws->failed = 0;
        post(ws, msg_new(WS_UP, NULL, 0));
        if (ws->announce) {
            ws->want_flags = 1;
            lws_callback_on_writable(wsi);
        }
        /* A stop or kick that arrived while connecting found no
         * established connection to close politely; honour it now. */
        if (atomic_load(&ws->stop) || ws->kicked)
            drop_connection(ws);
        break;

    case LWS_CALLBACK_CLIENT_RECEIVE:
        if (wsi == ws->wsi)
            on_receive(ws, wsi, in, len);
        break;

    case LWS_CALLBACK_CLIENT_WRITEABLE:
        if (wsi != ws->wsi)
            break;
        if (ws->want_close) {
            static unsigned char bye[] = "bye";

            lws_close_reason(wsi, LWS_CLOSE_STATUS_GOINGAWAY, bye, 3);
            return -1;
        }
        if (ws->want_flags) {
            ws->want_flags = 0;
            memcpy(buf + LWS_PRE, ws_feature_flags, flags_len);
            if (lws_write(wsi, buf + LWS_PRE, flags_len, LWS_WRITE_TEXT) < 0) {
                snprintf(ws->reason, sizeof(ws->reason), "write failed");
                return -1;
            }
        }
        break;

    case LWS_CALLBACK_CLIENT_CONNECTION_ERROR:
        if (wsi != ws->wsi)
            break;
        if (in != NULL && strstr((const char *)in, "not 101") != NULL)
            snprintf(ws->reason, sizeof(ws->reason),
                     "upgrade failed: HTTP %u",
                     lws_http_client_http_response(wsi));
        else if (in != NULL &&
                 strstr((const char *)in, "Unable to connect") != NULL)
            /* lws's text when the non-blocking connect fails (RST); errno
             * is gone by now. On loopback that means refused. */
            snprintf(ws->reason, sizeof(ws->reason), "connection refused");
        else
            snprintf(ws->reason, sizeof(ws->reason), "connect failed: %.*s",
                     (int)(in != NULL ? len : 0),
                     in != NULL ? (const char *)in : "");
        break;

    case LWS_CALLBACK_WS_PEER_INITIATED_CLOSE:
        if (wsi == ws->wsi) {
            const unsigned char *p = in;
            unsigned code = len >= 2 ? (unsigned)(p[0] << 8 | p[1]) : 0;

            snprintf(ws->reason, sizeof(ws->reason), "closed by peer (%u)",
                     code);
        }
        break;

    case LWS_CALLBACK_CLIENT_CLOSED:
        if (wsi == ws->wsi && ws->reason[0] == '\0')
            snprintf(ws->reason, sizeof(ws->reason), "connection lost");
        break;

    case LWS_CALLBACK_CLOSED_CLIENT_HTTP:
        /* lws 4.1.6 reports an unanswered upgrade only this way. */
        if (wsi == ws->wsi && ws->reason[0] == '\0')
            snprintf(ws->reason, sizeof(ws->reason),
                     ws->established ? "connection lost" : "upgrade timeout");
        break;

    case LWS_CALLBACK_WSI_DESTROY:
        /* The single place where a connection ends, whatever the path:
         * lws does not clear pwsi itself. */
        if (wsi != ws->wsi)
            break;
        if (atomic_load(&ws->stop)) {
            ws->wsi = NULL;
            ws->established = 0;
            rx_reset(ws);
            if (ws->ctx == NULL) /* inside lws_context_destroy */
                break;
            /* lws may now sleep in poll() for ~30 s; wake the loop so
             * it sees there is nothing left to wait for. */
            lws_cancel_service(ws->ctx);
            break;
        }
        connection_over(ws);
        break;

    default:
        break;
    }
    return 0;
}

static const struct lws_protocols ws_protocols[] = {
    {"comfy", ws_callback, 0, WS_RX_BUFFER, 0, NULL, 0},
    {NULL, NULL, 0, 0, 0, NULL, 0},
};

static void *
ws_thread(void *arg)
{
    struct ws *ws = arg;

    while (!(atomic_load(&ws->stop) && (ws->wsi == NULL || ws->deadline_hit)))
        if (lws_service(ws->ctx, 0) < 0)
            break;
    lws_sul_cancel(&ws->sul_connect);
    lws_sul_cancel(&ws->sul_deadline);
    return NULL;
}

/* ---- main thread -------------------------------------------------------- */

static void
ws_release(struct ws *ws)
{
    if (ws->ev != NULL)
        event_free(ws->ev);
    if (ws->pipe_r >= 0)
        close(ws->pipe_r);
    if (ws->pipe_w >= 0)
        close(ws->pipe_w);
    free(ws->address);
    free(ws->host);
    free(ws->path);
    free(ws);
}

static void
pipe_cb(evutil_socket_t fd, short what, void *arg)
{
    struct ws *ws = arg;
    struct ws_msg *batch[WS_BATCH];
    unsigned char *raw = (unsigned char *)batch;
    size_t got, n, i;
    ssize_t r;

    (void)what;
    memcpy(raw, ws->carry, ws->carry_len);
    r = read(fd, raw + ws->carry_len, sizeof(batch) - ws->carry_len);
    if (r <= 0) {
        if (r == 0 || (errno != EAGAIN && errno != EINTR))
            log_error("ws: pipe read: %s", r == 0 ? "EOF" : strerror(errno));
        return;
    }
    got = ws->carry_len + (size_t)r;
    n = got / sizeof(batch[0]);
    /* Writes are atomic, so this stays 0; kept for safety. */
    ws->carry_len = got % sizeof(batch[0]);
    memcpy(ws->carry, raw + n * sizeof(batch[0]), ws->carry_len);

    ws->in_dispatch = 1;
    for (i = 0; i < n; i++) {
        struct ws_msg *m = batch[i];

        if (!ws->free_on_return)
            ws->handler(m->kind, m->data, m->len, ws->arg);
        free(m);
    }
    ws->in_dispatch = 0;
    if (ws->free_on_return)
        ws_release(ws);
}

static char *
xstrdup_or_null(const char *s)
{
    return s != NULL ? strdup(s) : NULL;
}

struct ws *
ws_start(struct event_base *base, const struct ws_options *opt,
         ws_handler handler, void *arg)
{
    struct lws_context_creation_info info;
    struct ws *ws = NULL;
    int fds[2];
    int len, ping, hang;

    if (base == NULL || opt == NULL || handler == NULL ||
        opt->address == NULL || opt->client_id == NULL || opt->port <= 0 ||
        opt->port > 65535) {
        log_error("ws: bad options");
        return NULL;
    }
    ws = calloc(1, sizeof(*ws));
    if (ws == NULL)
        goto nomem;
    ws->pipe_r = ws->pipe_w = -1;
    ws->base = base;
    ws->handler = handler;
    ws->arg = arg;
    ws->port = opt->port;
    ws->announce = opt->announce_preview_metadata;
    ws->max_message = opt->max_message > 0 ? opt->max_message
                                           : WS_DEFAULT_MAX_MESSAGE;
    ws->address = xstrdup_or_null(opt->address);
    len = snprintf(NULL, 0, "/ws?clientId=%s", opt->client_id) + 1;
    ws->path = malloc((size_t)len);
    if (ws->path != NULL)
        snprintf(ws->path, (size_t)len, "/ws?clientId=%s", opt->client_id);
    len = snprintf(NULL, 0, "%s:%d", opt->address, opt->port) + 1;
    ws->host = malloc((size_t)len);
    if (ws->host != NULL)
        snprintf(ws->host, (size_t)len, "%s:%d", opt->address, opt->port);
    if (ws->address == NULL || ws->path == NULL || ws->host == NULL)
        goto nomem;
    atomic_init(&ws->stop, 0);
    atomic_init(&ws->kick, 0);

    /* lws's hangup clock runs from the last valid traffic, not from the
     * ping, so it must exceed the ping interval to mean anything. */
    ping = opt->ping_interval_s > 0 ? opt->ping_interval_s : WS_DEFAULT_PING_S;
    hang = opt->ping_timeout_s > 0 ? opt->ping_timeout_s
                                   : WS_DEFAULT_PING_TIMEOUT_S;
    if (hang <= ping)
        hang = ping + hang;
    ws->retry.retry_ms_table = ws_backoff_ms;
    ws->retry.retry_ms_table_count = LWS_ARRAY_SIZE(ws_backoff_ms);
    ws->retry.conceal_count = LWS_RETRY_CONCEAL_ALWAYS;
    ws->retry.secs_since_valid_ping = (uint16_t)(ping < 65535 ? ping : 65535);
    ws->retry.secs_since_valid_hangup = (uint16_t)(hang < 65535 ? hang : 65535);
    ws->retry.jitter_percent = 20;

    if (pipe2(fds, O_CLOEXEC | O_NONBLOCK) < 0) {
        log_error("ws: pipe: %s", strerror(errno));
        goto err;
    }
    ws->pipe_r = fds[0];
    ws->pipe_w = fds[1];

    /* Before the context exists so its startup notices go to our log. */
    log_hook_libraries();
    memset(&info, 0, sizeof(info));
    info.port = CONTEXT_PORT_NO_LISTEN;
    info.protocols = ws_protocols;
    info.user = ws;
    info.fd_limit_per_thread = 8;
    info.gid = -1;
    info.uid = -1;
    ws->ctx = lws_create_context(&info);
    if (ws->ctx == NULL) {
        log_error("ws: lws_create_context failed");
        goto err;
    }

    ws->ev = event_new(base, ws->pipe_r, EV_READ | EV_PERSIST, pipe_cb, ws);
    if (ws->ev == NULL || event_add(ws->ev, NULL) < 0) {
        log_error("ws: cannot watch the pipe");
        goto err;
    }
    /* Queued before the thread exists, so the lws thread is the only one
     * touching the scheduler from now on. */
    schedule_connect(ws, 0);
    if (pthread_create(&ws->thread, NULL, ws_thread, ws) != 0) {
        log_error("ws: pthread_create failed");
        goto err;
    }
    log_info("ws: started for %s:%d", ws->address, ws->port);
    return ws;

nomem:
    log_error("ws: out of memory");
err:
    if (ws != NULL) {
        if (ws->ctx != NULL)
            lws_context_destroy(ws->ctx);
        ws_release(ws);
    }
    return NULL;
}

void
ws_kick(struct ws *ws)
{
    if (ws == NULL)
        return;
    atomic_store(&ws->kick, 1);
    lws_cancel_service(ws->ctx);
}

void
ws_stop(struct ws *ws)
{
    struct lws_context *ctx;
    struct ws_msg *m;

    if (ws == NULL)
        return;
    atomic_store(&ws->stop, 1);
    lws_cancel_service(ws->ctx);
    pthread_join(ws->thread, NULL);

    /* Nothing writes to the pipe any more: discard what is queued. */
    while (read(ws->pipe_r, &m, sizeof(m)) == (ssize_t)sizeof(m))
        free(m);
    /* Destroying the context may still run WSI_DESTROY (after a deadline
     * exit); with stop set that path posts nothing. */
    ctx = ws->ctx;
    ws->ctx = NULL;
    lws_context_destroy(ctx);
    rx_reset(ws);
    log_info("ws: stopped");
    if (ws->in_dispatch) {
        /* pipe_cb is iterating its batch; it frees us when done. */
        ws->free_on_return = 1;
        event_del(ws->ev);
        return;
    }
    ws_release(ws);
}
