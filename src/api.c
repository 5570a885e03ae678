/* api.c - routes and replies (see api.h).
 *
 * Owns the evhttp server and the waiters: one per request that outlives its
 * handler (a synchronous /prompt waiting for its job, a 202 waiting for
 * ComfyUI to accept, an event stream, a status query fetching images). A
 * waiter outlives a client that hangs up (libevent keeps the request until
 * we reply, then frees it), so every request still ends in exactly one
 * reply. Clients that hang up are noticed by a periodic peek at their
 * sockets, since libevent 2.1 stops reading a connection while its request
 * is being answered. */
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/util.h>
#include <netdb.h>
#include <event2/listener.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/resource.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/queue.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <fcntl.h>
#include <unistd.h>

#include "api.h"
#include "config.h"
#include "job.h"
#include "life.h"
#include "log.h"
#include "media.h"
#include "metrics.h"
#include "render.h"
#include "request.h"
#include "util.h"
#include "template.h"
#include "webhook.h"
#include "workflows.h"

enum waiter_kind {
    W_SYNC,   /* POST /prompt answered with the images */
    W_ACCEPT, /* POST /prompt with a webhook: 202 once ComfyUI accepts */
    W_SSE,    /* an event stream of a job */
    W_FETCH,  /* GET /prompt/{id}?images=true fetching the images again */
    W_CANCEL, /* DELETE /prompt/{id} or POST /interrupt until ComfyUI confirms */
};

struct waiter {
    TAILQ_ENTRY(waiter) link;
    struct api *api;
    enum waiter_kind kind;
    struct evhttp_request *req;
    struct evhttp_connection *conn; /* NULL once the client hung up */
    struct job *job;
    struct job_watch *watch;
    int gone;         /* the client hung up */
    int sse_started;  /* evhttp_send_reply_start was called */
    int with_images;  /* SSE: images in `completed` */
    int with_previews;
    int owns_job;     /* SSE answering the POST that submitted the job */
    int interrupt_form; /* W_CANCEL: answer as POST /interrupt does */
    char *webhook, *webhook_v2; /* W_ACCEPT: where to deliver */
    json_t *status;   /* W_FETCH: the status document to complete */
    struct event *defer;
    char id[REQ_ID_MAX + 1];
};

TAILQ_HEAD(waiter_list, waiter);

struct api {
    struct event_base *base;
    const struct config *cfg;
    struct jobs *jobs;
    struct life *life;
    struct hooks *hooks;
    struct wf *wf;
    struct evhttp *http;
    struct evhttp_bound_socket *bound;
    struct conn **conns;
    size_t n_conns, cap_conns;
    int accept_paused;
    struct event *sweep_timer;
    struct waiter_list waiters;
    TAILQ_HEAD(, pending) pending;
    struct media *media;
    struct event *peek_timer;
    struct event *heartbeat_timer;
};

static const char *
reason(int status)
{
    switch (status) {
    case 200: return "OK";
    case 202: return "Accepted";
    case 400: return "Bad Request";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 409: return "Conflict";
    case 413: return "Payload Too Large";
    case 429: return "Too Many Requests";
    case 500: return "Internal Server Error";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    default: return "Status";
    }
}

/* Send body (stolen) as the reply. */
static void
reply_json(struct evhttp_request *req, int status, json_t *body)
{
    struct evbuffer *out = evbuffer_new();
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);

    json_dump_callback(body, render_dump_cb, out, JSON_COMPACT);
    evbuffer_add(out, "\n", 1);
    json_decref(body);
    met_bytes(evbuffer_get_length(out));
    if (evhttp_find_header(h, "Content-Type") == NULL)
        evhttp_add_header(h, "Content-Type", "application/json");
    evhttp_send_reply(req, status, reason(status), out);
    evbuffer_free(out);
}

static void
reply_error(struct evhttp_request *req, int status, const char *location,
            const char *message)
{
    reply_json(req, status,
               json_pack("{s:s, s:s}", "error", message, "location", location));
}

/* ---- errors libevent answers by itself ---------------------------------------
 *
 * libevent 2.1 answers malformed requests, over-long bodies (413) and
 * unsupported methods itself, through evhttp_send_error(), with an HTML page,
 * and offers no hook to change that (evhttp_set_errorcb arrived in 2.2).
 * Defining the function here takes precedence over libevent's copy for its
 * internal calls too (the dynamic linker resolves the exported symbol to the
 * executable first), so every answer of this server is JSON. If a build
 * ever links libevent in a way that defeats this, the only loss is the HTML
 * body: the status codes are libevent's either way. */
static int errors_max_body_mb = 100;

void evhttp_send_error(struct evhttp_request *req, int error,
                       const char *reason_phrase);

void
evhttp_send_error(struct evhttp_request *req, int error, const char *reason_phrase)
{
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    char msg[200];
    const char *location = "request";

    switch (error) {
    case 413:
        snprintf(msg, sizeof(msg),
                 "request too large: the body may have MAX_BODY_SIZE_MB=%d MiB, the "
                 "headers 64 KiB", errors_max_body_mb);
        location = "body";
        break;
    case 400:
        snprintf(msg, sizeof(msg), "malformed HTTP request, or its headers are larger than 64 KiB");
        break;
    case 405:
    case 501:
        snprintf(msg, sizeof(msg), "method not supported");
        location = "method";
        break;
    default:
        snprintf(msg, sizeof(msg), "%s",
                 reason_phrase != NULL ? reason_phrase : reason(error));
    }
    /* libevent closes the connection after its own errors; keep that. */
    evhttp_add_header(h, "Connection", "close");
    met_http("invalid", error, 0);
    reply_error(req, error, location, msg);
}

/* Jobs waiting or running: ours, or ComfyUI's own queue if it is longer
 * (other clients may use the same ComfyUI). */
static int
queue_depth(const struct api *api)
{
    int ours = jobs_in_flight(api->jobs), theirs = jobs_queue_depth(api->jobs);

    return ours > theirs ? ours : theirs;
}

static int
queue_full(const struct api *api)
{
    return api->cfg->max_queue_depth > 0 && queue_depth(api) >= api->cfg->max_queue_depth;
}

/* ---- /health and /ready ---------------------------------------------------- */

static void
status_body(struct api *api, const char *word, json_t **out)
{
    struct life_status st;

    life_status(api->life, &st);
    *out = json_pack("{s:s, s:s, s:s, s:s, s:b, s:i, s:i}", "version",
                     SIDECAR_VERSION, "status", word, "comfyui", st.comfyui,
                     "websocket", st.ws_connected ? "connected" : "disconnected",
                     "warm", st.warm, "queue_depth", st.queue_depth,
                     "jobs_in_flight", st.in_flight);
}

static void
handle_health(struct api *api, struct evhttp_request *req)
{
    struct life_status st;
    json_t *body;

    life_status(api->life, &st);
    /* comfyui-api's meaning: healthy once it has ever been warm, and it
     * stays healthy while ComfyUI restarts (readiness covers that). */
    status_body(api, st.ever_warm ? "healthy" : "not healthy", &body);
    reply_json(req, st.ever_warm ? 200 : 500, body);
}

static void
handle_ready(struct api *api, struct evhttp_request *req)
{
    struct life_status st;
    json_t *body;
    int ready;

    life_status(api->life, &st);
    ready = !st.stopping && strcmp(st.comfyui, "up") == 0 && st.ws_connected &&
            st.warm && !queue_full(api);
    status_body(api, ready ? "ready" : "not ready", &body);
    reply_json(req, ready ? 200 : 503, body);
}

/* ---- waiters ------------------------------------------------------------------ */

static void on_client_close(struct evhttp_connection *conn, void *arg);

static struct waiter *
waiter_new(struct api *api, enum waiter_kind kind, struct evhttp_request *req,
           const char *id)
{
    struct waiter *w = xcalloc(1, sizeof(*w));

    w->api = api;
    w->kind = kind;
    w->req = req;
    w->conn = evhttp_request_get_connection(req);
    snprintf(w->id, sizeof(w->id), "%s", id);
    evhttp_connection_set_closecb(w->conn, on_client_close, w);
    TAILQ_INSERT_TAIL(&api->waiters, w, link);
    return w;
}

/* Before answering: once the reply is on its way libevent may free the
 * connection, so our close callback must not outlive this point. */
static void
waiter_detach(struct waiter *w)
{
    if (w->conn != NULL)
        evhttp_connection_set_closecb(w->conn, NULL, NULL);
    w->conn = NULL;
}

/* The request has been answered (or its stream ended): forget it. */
static void
waiter_free(struct waiter *w)
{
    waiter_detach(w);
    if (w->watch != NULL)
        job_unwatch(w->watch);
    TAILQ_REMOVE(&w->api->waiters, w, link);
    if (w->defer != NULL)
        event_free(w->defer);
    json_decref(w->status);
    free(w->webhook);
    free(w->webhook_v2);
    free(w);
}

static void
on_defer_end(evutil_socket_t fd, short what, void *arg)
{
    struct waiter *w = arg;

    (void)fd;
    (void)what;
    /* An orphaned request is released by ending its reply. */
    waiter_detach(w);
    if (w->sse_started)
        evhttp_send_reply_end(w->req);
    else
        evhttp_send_reply(w->req, 499, "Client Closed Request", NULL);
    waiter_free(w);
}

/* Finish a waiter whose client is gone, outside of any libevent callback
 * that might still be using the connection. */
static void
waiter_drop_later(struct waiter *w)
{
    if (w->defer != NULL)
        return;
    if (w->watch != NULL) {
        job_unwatch(w->watch);
        w->watch = NULL;
    }
    w->defer = evtimer_new(w->api->base, on_defer_end, w);
    event_active(w->defer, EV_TIMEOUT, 0);
}

static void
client_gone(struct waiter *w, const char *how)
{
    if (w->gone)
        return;
    w->gone = 1;
    rlog_info(w->id, "client disconnected (%s)", how);
    /* A stream ends now (its job goes on unless the stream submitted it). */
    if (w->kind == W_SSE)
        waiter_drop_later(w);
    /* A sync waiter still owes its request a reply: the job's end, or the
     * cancel here, provides it. */
    if ((w->kind == W_SYNC || (w->kind == W_SSE && w->owns_job)) && w->job != NULL &&
        !job_finished(w->job) && w->api->cfg->cancel_on_disconnect)
        job_cancel(w->job, "the client disconnected");
}

static void
on_client_close(struct evhttp_connection *conn, void *arg)
{
    struct waiter *w = arg;

    (void)conn;
    w->conn = NULL;
    client_gone(w, "connection closed");
}

/* libevent does not read a connection whose request is being answered, so
 * a client hanging up goes unseen until we write. Peek at the sockets: a
 * read of 0 bytes means the peer closed. */
static void
on_peek(evutil_socket_t fd, short what, void *arg)
{
    struct api *api = arg;
    struct waiter *w, *next;

    (void)fd;
    (void)what;
    for (w = TAILQ_FIRST(&api->waiters); w != NULL; w = next) {
        struct bufferevent *bev;
        evutil_socket_t s;
        char c;
        ssize_t r;

        next = TAILQ_NEXT(w, link);
        if (w->gone || w->conn == NULL)
            continue;
        bev = evhttp_connection_get_bufferevent(w->conn);
        s = bev != NULL ? bufferevent_getfd(bev) : -1;
        if (s < 0)
            continue;
        r = recv(s, &c, 1, MSG_PEEK | MSG_DONTWAIT);
        if (r == 0 || (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR))
            client_gone(w, "peer closed");
    }
}

/* ---- event streams ------------------------------------------------------------- */

static void
sse_send(struct waiter *w, const char *event, struct evbuffer *data)
{
    struct evbuffer *out;

    if (w->gone)
        return;
    out = evbuffer_new();
    evbuffer_add_printf(out, "event: %s\ndata: ", event);
    evbuffer_add_buffer(out, data);
    evbuffer_add(out, "\n\n", 2);
    met_bytes(evbuffer_get_length(out));
    evhttp_send_reply_chunk(w->req, out);
    evbuffer_free(out);
}

static void
sse_send_json(struct waiter *w, const char *event, json_t *obj)
{
    struct evbuffer *b = evbuffer_new();

    json_object_set_new(obj, "id", json_string(w->id));
    json_dump_callback(obj, render_dump_cb, b, JSON_COMPACT);
    json_decref(obj);
    sse_send(w, event, b);
    evbuffer_free(b);
}

static void
sse_start(struct waiter *w)
{
    struct evkeyvalq *h = evhttp_request_get_output_headers(w->req);

    evhttp_add_header(h, "Content-Type", "text/event-stream");
    evhttp_add_header(h, "Cache-Control", "no-cache");
    evhttp_add_header(h, "X-Accel-Buffering", "no");
    evhttp_send_reply_start(w->req, 200, "OK");
    w->sse_started = 1;
}

/* The final event of a stream, then its end. */
static void
sse_final(struct waiter *w, const struct job_result *res)
{
    if (res->status == 200) {
        struct evbuffer *b = evbuffer_new();
        render_result(b, res, NULL, 0, w->with_images && res->outputs != NULL &&
                                           res->n_outputs > 0 && res->outputs[0].data != NULL,
                      NULL, 0);
        sse_send(w, "completed", b);
        evbuffer_free(b);
    } else if (res->status == 409) {
        sse_send_json(w, "cancelled", json_pack("{s:O}", "error", res->error));
    } else {
        sse_send_json(w, "failed",
                      json_pack("{s:i, s:O}", "http_status", res->status, "error", res->error));
    }
    waiter_detach(w);
    evhttp_send_reply_end(w->req);
    waiter_free(w);
}

static void
on_sse_fetched(const struct job_output *outs, size_t n, const char *error, void *arg)
{
    struct waiter *w = arg;
    const struct job_result *res = job_last_result(w->job);

    if (error != NULL || res == NULL) {
        sse_send_json(w, "failed",
                      json_pack("{s:i, s:{s:s, s:s}}", "http_status", 502, "error", "error",
                                error != NULL ? error : "the job is gone", "location",
                                "comfyui"));
    } else {
        struct evbuffer *b = evbuffer_new();
        render_result(b, res, NULL, 0, 1, outs, n);
        sse_send(w, "completed", b);
        evbuffer_free(b);
    }
    waiter_detach(w);
    evhttp_send_reply_end(w->req);
    waiter_free(w);
}

static void
on_sse_event(struct job *job, enum job_event ev, const void *data, void *arg)
{
    struct waiter *w = arg;

    (void)job;
    switch (ev) {
    case JE_QUEUED:
        sse_send_json(w, "queued", json_pack("{s:i}", "position", *(const int *)data));
        break;
    case JE_STARTED:
        sse_send_json(w, "started", json_object());
        break;
    case JE_PROGRESS: {
        const struct job_progress *p = data;
        sse_send_json(w, "progress", json_pack("{s:s?, s:i, s:i, s:f}", "node", p->node,
                                               "value", p->value, "max", p->max,
                                               "overall", p->overall));
        break;
    }
    case JE_PREVIEW: {
        const struct job_preview *p = data;
        struct evbuffer *b;

        if (!w->with_previews || w->gone)
            break;
        b = evbuffer_new();
        evbuffer_add_printf(b, "{\"id\":\"%s\",\"mime\":\"%s\",\"node\":", w->id, p->mime);
        if (p->node != NULL) {
            json_t *n = json_string(p->node);
            json_dump_callback(n, render_dump_cb, b, JSON_ENCODE_ANY);
            json_decref(n);
        } else {
            evbuffer_add(b, "null", 4);
        }
        evbuffer_add(b, ",\"image\":", 9);
        render_b64_string(b, p->data, p->len);
        evbuffer_add(b, "}", 1);
        sse_send(w, "preview", b);
        evbuffer_free(b);
        break;
    }
    case JE_DONE:
        sse_final(w, data);
        break;
    }
}

static void
on_heartbeat(evutil_socket_t fd, short what, void *arg)
{
    struct api *api = arg;
    struct waiter *w;

    (void)fd;
    (void)what;
    TAILQ_FOREACH(w, &api->waiters, link) {
        if (w->kind == W_SSE && w->sse_started && !w->gone) {
            struct evbuffer *b = evbuffer_new();
            evbuffer_add(b, ": heartbeat\n\n", 13);
            evhttp_send_reply_chunk(w->req, b);
            evbuffer_free(b);
        }
    }
}

/* Stream a job's events: what happened so far, then what happens next. */
static struct waiter *
start_stream(struct api *api, struct evhttp_request *req, struct job *job,
             int images, int previews)
{
    struct waiter *w = waiter_new(api, W_SSE, req, job_id(job));
    const struct job_result *res = job_last_result(job);

    w->job = job;
    w->with_images = images;
    w->with_previews = previews;
    sse_start(w);
    if (res != NULL) {
        if (images && res->status == 200 && res->n_outputs > 0) {
            /* Images are not kept after the end: fetch them again. */
            job_fetch_outputs(api->jobs, job, on_sse_fetched, w);
            return NULL;
        }
        sse_final(w, res);
        return NULL;
    }
    /* Late subscribers first hear where the job is now. */
    {
        json_t *st = job_status_json(job);
        json_t *pos = json_object_get(st, "queue_position");
        json_t *prog = json_object_get(st, "progress");

        if (job_get_status(job) == JOB_QUEUED && json_is_integer(pos))
            sse_send_json(w, "queued", json_pack("{s:O}", "position", pos));
        if (job_get_status(job) == JOB_RUNNING) {
            sse_send_json(w, "started", json_object());
            if (json_is_object(prog) && json_is_string(json_object_get(prog, "node")))
                sse_send_json(w, "progress", json_deep_copy(prog));
        }
        json_decref(st);
    }
    w->watch = job_watch(job, on_sse_event, w);
    return w;
}

/* ---- POST /prompt ----------------------------------------------------------- */

static void
on_sync_event(struct job *job, enum job_event ev, const void *data, void *arg)
{
    struct waiter *w = arg;
    const struct job_result *res = data;
    struct evhttp_request *req = w->req;

    (void)job;
    if (ev != JE_DONE)
        return;
    waiter_detach(w);
    if (w->gone) {
        /* Nobody is listening; the reply only releases the request. */
        evhttp_send_reply(req, res->status, reason(res->status), NULL);
    } else if (res->status == 200) {
        struct evbuffer *out = evbuffer_new();

        render_result(out, res, NULL, 1, 1, NULL, 0);
        evbuffer_add(out, "\n", 1);
        met_bytes(evbuffer_get_length(out));
        evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
                          "application/json");
        evhttp_send_reply(req, 200, "OK", out);
        evbuffer_free(out);
    } else {
        if (res->status == 503)
            evhttp_add_header(evhttp_request_get_output_headers(req),
                              "Retry-After", "5");
        reply_json(req, res->status, json_incref(res->error));
    }
    waiter_free(w);
}

/* With a webhook: answer 202 once ComfyUI has accepted the graph, and hand
 * the rest to the webhook. Errors before that are answered directly. */
static void
on_accept_event(struct job *job, enum job_event ev, const void *data, void *arg)
{
    struct waiter *w = arg;
    struct api *api = w->api;

    if (ev == JE_QUEUED) {
        waiter_detach(w);
        if (w->webhook_v2 != NULL)
            hook_start(api->hooks, job, 1, w->webhook_v2);
        else
            hook_start(api->hooks, job, 0, w->webhook);
        if (w->gone)
            evhttp_send_reply(w->req, 202, "Accepted", NULL);
        else {
            json_t *body = json_pack("{s:s, s:s, s:O}", "id", w->id, "status", "ok",
                                     "prompt", json_object_get(w->status, "prompt"));
            json_t *input = json_object_get(w->status, "input");

            if (input != NULL)
                json_object_set(body, "input", input);
            reply_json(w->req, 202, body);
        }
        job_unwatch(w->watch);
        w->watch = NULL;
        waiter_free(w);
        return;
    }
    if (ev == JE_DONE) {
        const struct job_result *res = data;
        waiter_detach(w);
        if (w->gone)
            evhttp_send_reply(w->req, res->status, reason(res->status), NULL);
        else {
            if (res->status == 503)
                evhttp_add_header(evhttp_request_get_output_headers(w->req),
                                  "Retry-After", "5");
            reply_json(w->req, res->status, json_incref(res->error));
        }
        waiter_free(w);
    }
}

static int
wants_sse(struct evhttp_request *req)
{
    const char *a = evhttp_find_header(evhttp_request_get_input_headers(req), "Accept");

    return a != NULL && strcasestr(a, "text/event-stream") != NULL;
}

/* A request whose input images are being downloaded or uploaded before
 * its job can be submitted. */
struct pending {
    TAILQ_ENTRY(pending) link;
    struct api *api;
    struct evhttp_request *req;
    struct media_prep *prep;
    char id[REQ_ID_MAX + 1];
    json_t *prompt, *input;
    char *webhook, *webhook_v2;
    int has_convert;
    struct conv_opts convert;
    double t0;
};

static void
pending_free(struct pending *p)
{
    TAILQ_REMOVE(&p->api->pending, p, link);
    json_decref(p->prompt);
    json_decref(p->input);
    free(p->webhook);
    free(p->webhook_v2);
    free(p);
}

/* Submit the job and arrange the answer: synchronous images, a 202 for
 * webhooks, or an event stream. Returns the job, or NULL if it was answered
 * already (id in use). */
static struct job *
submit(struct api *api, struct evhttp_request *req, const char *id, json_t *prompt,
       json_t *input, const char *webhook, const char *webhook_v2,
       const struct conv_opts *convert, double t0)
{
    struct job *job;
    struct waiter *w;
    int conflict;

    job = job_submit(api->jobs, id, prompt, input, t0, &conflict);
    if (job == NULL) {
        reply_json(req, 409,
                   json_pack("{s:s, s:s, s:s}", "error",
                             "a job with this id is still in flight; use another id",
                             "location", "id", "error_type", "id_in_use"));
        return NULL;
    }
    if (convert != NULL)
        job_set_convert(job, convert);
    if (webhook != NULL || webhook_v2 != NULL) {
        w = waiter_new(api, W_ACCEPT, req, id);
        w->job = job;
        w->webhook = webhook != NULL ? xstrdup(webhook) : NULL;
        w->webhook_v2 = webhook_v2 != NULL ? xstrdup(webhook_v2) : NULL;
        w->status = json_pack("{s:O}", "prompt", prompt);
        if (input != NULL)
            json_object_set(w->status, "input", input);
        w->watch = job_watch(job, on_accept_event, w);
    } else if (wants_sse(req)) {
        const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
        const char *q = evhttp_uri_get_query(uri);
        int previews = q != NULL && strstr(q, "previews=true") != NULL;
        w = start_stream(api, req, job, 1, previews);
        if (w != NULL)
            w->owns_job = 1;
    } else {
        w = waiter_new(api, W_SYNC, req, id);
        w->job = job;
        w->watch = job_watch(job, on_sync_event, w);
    }
    return job;
}

static void
on_media_done(int status, json_t *error, void *arg)
{
    struct pending *p = arg;
    struct job *job;

    if (status != 200) {
        reply_json(p->req, status, error);
        media_discard(p->prep);
    } else {
        job = submit(p->api, p->req, p->id, p->prompt, p->input, p->webhook, p->webhook_v2,
                     p->has_convert ? &p->convert : NULL, p->t0);
        media_finish(p->prep, job);
    }
    pending_free(p);
}

/* Check that a job can be taken, upload its input images if it has any,
 * then submit it. Takes nothing; copies what it keeps. */
void api_run_job(struct api *api, struct evhttp_request *req, const struct prompt_req *pr,
                 json_t *prompt, json_t *input, double t0);

void
api_run_job(struct api *api, struct evhttp_request *req, const struct prompt_req *pr,
            json_t *prompt, json_t *input, double t0)
{
    struct job *other;
    struct pending *p;
    int retry;

    if (!life_accepting(api->life, &retry)) {
        char ra[16];

        if (retry > 0) {
            snprintf(ra, sizeof(ra), "%d", retry);
            evhttp_add_header(evhttp_request_get_output_headers(req), "Retry-After", ra);
        }
        reply_error(req, 503, "comfyui",
                    retry > 0 ? "ComfyUI is not running yet (starting or restarting); retry later"
                              : "the server is shutting down");
        return;
    }
    if (queue_full(api)) {
        char ra[16], msg[200];
        int depth = queue_depth(api);

        snprintf(ra, sizeof(ra), "%d",
                 jobs_retry_after_s(api->jobs, depth - api->cfg->max_queue_depth + 1));
        evhttp_add_header(evhttp_request_get_output_headers(req), "Retry-After", ra);
        snprintf(msg, sizeof(msg), "the queue is full (%d jobs, MAX_QUEUE_DEPTH=%d); retry "
                 "after %s s", depth, api->cfg->max_queue_depth, ra);
        reply_json(req, 429, json_pack("{s:s, s:s, s:s, s:i}", "error", msg, "location",
                                       "queue", "error_type", "queue_full", "retry_after",
                                       atoi(ra)));
        return;
    }
    /* Before any upload: an id in use is refused without side effects. */
    other = jobs_find(api->jobs, pr->id);
    if (other != NULL && !job_finished(other)) {
        reply_json(req, 409,
                   json_pack("{s:s, s:s, s:s}", "error",
                             "a job with this id is still in flight; use another id",
                             "location", "id", "error_type", "id_in_use"));
        return;
    }
    p = xcalloc(1, sizeof(*p));
    p->api = api;
    p->req = req;
    snprintf(p->id, sizeof(p->id), "%s", pr->id);
    p->prompt = json_incref(prompt);
    p->input = input != NULL ? json_incref(input) : NULL;
    p->webhook = pr->webhook != NULL ? xstrdup(pr->webhook) : NULL;
    p->webhook_v2 = pr->webhook_v2 != NULL ? xstrdup(pr->webhook_v2) : NULL;
    p->has_convert = pr->has_convert;
    p->convert = pr->convert;
    p->t0 = t0;
    TAILQ_INSERT_TAIL(&api->pending, p, link);
    p->prep = media_prepare(api->media, prompt, pr->id, on_media_done, p);
    if (p->prep == NULL) {
        submit(api, req, p->id, prompt, input, p->webhook, p->webhook_v2,
               p->has_convert ? &p->convert : NULL, t0);
        pending_free(p);
    }
}

static void
handle_prompt(struct api *api, struct evhttp_request *req)
{
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    size_t len = evbuffer_get_length(in);
    const char *body = len > 0 ? (const char *)evbuffer_pullup(in, -1) : "";
    struct req_options opt;
    struct prompt_req pr;
    struct req_error err;
    double t0 = util_mono_ms();

    memset(&opt, 0, sizeof(opt));
    opt.prepend_filenames = api->cfg->prepend_filenames;
    opt.max_nodes = (size_t)api->cfg->max_graph_nodes;
    if (preq_parse(body, len, &opt, &pr, &err) < 0) {
        reply_error(req, err.status, err.location, err.message);
        return;
    }
    api_run_job(api, req, &pr, pr.prompt, NULL, t0);
    preq_free(&pr);
}

/* ---- POST /workflow/<path> ---------------------------------------------------- */

static uint64_t
rand64(void *arg)
{
    uint64_t v = 0;

    (void)arg;
    if (getrandom(&v, sizeof(v), 0) != sizeof(v))
        v = ((uint64_t)rand() << 32) ^ (uint64_t)rand();
    return v;
}

static void
handle_workflow(struct api *api, struct evhttp_request *req, const char *path)
{
    const struct tpl_set *set = wf_set(api->wf);
    const struct tpl *t = tpl_find(set, path);
    struct evbuffer *in;
    const char *body;
    size_t len, i;
    struct req_options opt;
    struct prompt_req pr;
    struct req_error err;
    json_t *graph = NULL, *filled = NULL;
    double t0 = util_mono_ms();

    if (t == NULL) {
        json_t *avail = json_array();
        char msg[300], esc[200];

        for (i = 0; i < tpl_count(set); i++)
            json_array_append_new(avail, json_string(tpl_path(tpl_at(set, i))));
        snprintf(msg, sizeof(msg), "no workflow template \"%s\"",
                 log_escape(esc, sizeof(esc), path, strlen(path)));
        reply_json(req, 404, json_pack("{s:s, s:s, s:o}", "error", msg, "location", "path",
                                       "available", avail));
        return;
    }
    if (evhttp_request_get_command(req) != EVHTTP_REQ_POST) {
        evhttp_add_header(evhttp_request_get_output_headers(req), "Allow", "POST");
        reply_error(req, 405, "method", "method not allowed on this route");
        return;
    }
    in = evhttp_request_get_input_buffer(req);
    len = evbuffer_get_length(in);
    body = len > 0 ? (const char *)evbuffer_pullup(in, -1) : "";
    memset(&opt, 0, sizeof(opt));
    opt.prepend_filenames = api->cfg->prepend_filenames;
    opt.max_nodes = (size_t)api->cfg->max_graph_nodes;
    opt.workflow = 1;
    if (preq_parse(body, len, &opt, &pr, &err) < 0) {
        reply_error(req, err.status, err.location, err.message);
        return;
    }
    if (tpl_render(t, pr.input, wf_object_info(api->wf), rand64, NULL, &graph, &filled,
                   &err) < 0 ||
        preq_check_graph(graph, pr.id, &opt, &err) < 0) {
        reply_error(req, err.status, err.location, err.message);
        goto out;
    }
    api_run_job(api, req, &pr, graph, filled, t0);
out:
    json_decref(graph);
    json_decref(filled);
    preq_free(&pr);
}

/* ---- static files (/docs) -------------------------------------------------- */

static const char *
mime_type(const char *name)
{
    static const struct { const char *ext, *type; } types[] = {
        {".html", "text/html; charset=utf-8"}, {".js", "text/javascript; charset=utf-8"},
        {".css", "text/css; charset=utf-8"},   {".json", "application/json"},
        {".png", "image/png"},                 {".svg", "image/svg+xml"},
        {".map", "application/json"},          {".ico", "image/x-icon"},
    };
    const char *dot = strrchr(name, '.');
    size_t i;

    for (i = 0; dot != NULL && i < sizeof(types) / sizeof(types[0]); i++)
        if (strcmp(dot, types[i].ext) == 0)
            return types[i].type;
    return "application/octet-stream";
}

/* Serve WEB_DIR/<dir>/<name>. name must be one plain file name: no
 * separators, no leading dot, so nothing outside the folder is reachable. */
static void
serve_file(struct api *api, struct evhttp_request *req, const char *dir, const char *name)
{
    char path[2048];
    struct evbuffer *out;
    struct stat st;
    size_t i;
    int fd;

    for (i = 0; name[i] != '\0'; i++) {
        char c = name[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_' || c == '.'))
            break;
    }
    if (name[0] == '\0' || name[0] == '.' || name[i] != '\0' || i > 200) {
        reply_error(req, 404, "path", "no such file");
        return;
    }
    snprintf(path, sizeof(path), "%s/%s/%s", api->cfg->web_dir, dir, name);
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0 || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        char msg[2200];
        if (fd >= 0)
            close(fd);
        snprintf(msg, sizeof(msg), "%s is missing (WEB_DIR=%s; scripts/install-deps.sh "
                 "installs the Swagger UI files)", path, api->cfg->web_dir);
        reply_error(req, 404, "path", msg);
        return;
    }
    out = evbuffer_new();
    met_bytes((size_t)st.st_size);
    /* evbuffer_add_file takes the descriptor and sends without copying. */
    evbuffer_add_file(out, fd, 0, st.st_size);
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
                      mime_type(name));
    /* Pages must follow an upgrade at once; the library files may be
     * cached (their names change with their version). */
    evhttp_add_header(evhttp_request_get_output_headers(req), "Cache-Control",
                      strcmp(name, "index.html") == 0 ? "no-cache" : "public, max-age=3600");
    evhttp_send_reply(req, 200, "OK", out);
    evbuffer_free(out);
}

static void
on_models(json_t *models, const char *error, void *arg)
{
    struct waiter *w = arg;

    waiter_detach(w);
    if (w->gone)
        evhttp_send_reply(w->req, 499, "Client Closed Request", NULL);
    else if (models == NULL)
        reply_error(w->req, 502, "comfyui", error != NULL ? error : "ComfyUI failed");
    else
        reply_json(w->req, 200, models);
    waiter_free(w);
}

static void
handle_models(struct api *api, struct evhttp_request *req)
{
    struct life_status st;
    struct waiter *w;

    life_status(api->life, &st);
    if (strcmp(st.comfyui, "up") != 0) {
        evhttp_add_header(evhttp_request_get_output_headers(req), "Retry-After", "5");
        reply_error(req, 503, "comfyui", "ComfyUI is not running; retry later");
        return;
    }
    w = waiter_new(api, W_FETCH, req, "models");
    wf_fetch_models(api->wf, on_models, w);
}

static void
handle_openapi(struct api *api, struct evhttp_request *req)
{
    reply_json(req, 200, json_incref(wf_openapi(api->wf)));
}

/* ---- GET/DELETE /prompt/{id}, /events, POST /interrupt ------------------------ */

static int
query_flag(struct evhttp_request *req, const char *name)
{
    const char *q = evhttp_uri_get_query(evhttp_request_get_evhttp_uri(req));
    struct evkeyvalq kv;
    const char *v;
    int on = 0;

    if (q == NULL)
        return 0;
    TAILQ_INIT(&kv);
    if (evhttp_parse_query_str(q, &kv) == 0) {
        v = evhttp_find_header(&kv, name);
        on = v != NULL && (strcmp(v, "true") == 0 || strcmp(v, "1") == 0);
    }
    evhttp_clear_headers(&kv);
    return on;
}

static void
on_fetched(const struct job_output *outs, size_t n, const char *error, void *arg)
{
    struct waiter *w = arg;

    waiter_detach(w);
    if (w->gone) {
        evhttp_send_reply(w->req, 499, "Client Closed Request", NULL);
    } else if (error != NULL) {
        reply_error(w->req, 502, "comfyui", error);
    } else {
        json_t *images = json_array();
        struct evbuffer *b = evbuffer_new();
        size_t i;

        /* Not the hot path: a JSON tree is fine here. */
        for (i = 0; i < n; i++) {
            size_t len;
            char *s;
            render_b64_string(b, outs[i].data, outs[i].len);
            len = evbuffer_get_length(b);
            s = xmalloc(len);
            evbuffer_remove(b, s, len);
            json_array_append_new(images, json_stringn(s + 1, len - 2));
            free(s);
        }
        evbuffer_free(b);
        json_object_set_new(w->status, "images", images);
        reply_json(w->req, 200, json_incref(w->status));
    }
    waiter_free(w);
}

static void
handle_job_get(struct api *api, struct evhttp_request *req, struct job *job)
{
    json_t *st = job_status_json(job);

    if (query_flag(req, "images") && job_get_status(job) == JOB_COMPLETED) {
        struct waiter *w = waiter_new(api, W_FETCH, req, job_id(job));
        w->status = st;
        job_fetch_outputs(api->jobs, job, on_fetched, w);
        return;
    }
    reply_json(req, 200, st);
}

static void
reply_cancelled(struct waiter *w, struct job *job)
{
    waiter_detach(w);
    if (w->gone)
        evhttp_send_reply(w->req, 499, "Client Closed Request", NULL);
    else if (w->interrupt_form)
        reply_json(w->req, 200,
                   json_pack("{s:s, s:s}", "id", w->id, "interrupted", "success"));
    else
        reply_json(w->req, 200, job_status_json(job));
}

static void
on_cancel_event(struct job *job, enum job_event ev, const void *data, void *arg)
{
    struct waiter *w = arg;

    (void)data;
    if (ev != JE_DONE)
        return;
    reply_cancelled(w, job);
    waiter_free(w);
}

/* Cancel, and answer once ComfyUI has confirmed (the job's JE_DONE). */
static void
cancel_and_reply(struct api *api, struct evhttp_request *req, struct job *job,
                 int interrupt_form, const char *why)
{
    struct waiter *w = waiter_new(api, W_CANCEL, req, job_id(job));

    w->interrupt_form = interrupt_form;
    w->job = job;
    w->watch = job_watch(job, on_cancel_event, w);
    job_cancel(job, why);
    /* job_cancel may have finished it already (nothing to tell ComfyUI). */
}

static void
handle_job_delete(struct api *api, struct evhttp_request *req, struct job *job)
{
    if (job_finished(job)) {
        reply_json(req, 409,
                   json_pack("{s:s, s:s, s:o}", "error", "the job has already finished",
                             "location", "id", "job", job_status_json(job)));
        return;
    }
    cancel_and_reply(api, req, job, 0, "cancelled by DELETE /prompt/{id}");
}

static void
handle_interrupt(struct api *api, struct evhttp_request *req)
{
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    size_t len = evbuffer_get_length(in);
    json_t *root = json_loadb(len > 0 ? (const char *)evbuffer_pullup(in, -1) : "", len, 0, NULL);
    const char *id = json_string_value(json_object_get(root, "id"));
    struct job *job;

    if (id == NULL) {
        reply_error(req, 400, "id", "body must be {\"id\": \"<request id>\"}");
        goto out;
    }
    job = jobs_find(api->jobs, id);
    if (job == NULL || job_finished(job)) {
        reply_json(req, 404, json_pack("{s:s, s:s}", "id", id, "interrupted", "failed"));
        goto out;
    }
    cancel_and_reply(api, req, job, 1, "cancelled by POST /interrupt");
out:
    json_decref(root);
}

/* /prompt/{id} and /prompt/{id}/events */
static void
handle_job_route(struct api *api, struct evhttp_request *req, const char *rest)
{
    enum evhttp_cmd_type m = evhttp_request_get_command(req);
    char id[REQ_ID_MAX + 1];
    size_t n = strcspn(rest, "/");
    int events = 0;
    struct job *job;

    if (n == 0 || n > REQ_ID_MAX) {
        reply_error(req, 404, "path", "no such job");
        return;
    }
    memcpy(id, rest, n);
    id[n] = '\0';
    if (strcmp(rest + n, "/events") == 0)
        events = 1;
    else if (rest[n] != '\0') {
        reply_error(req, 404, "path", "no such route");
        return;
    }
    if (!preq_id_valid(id) || (job = jobs_find(api->jobs, id)) == NULL) {
        char msg[REQ_ID_MAX + 40];
        snprintf(msg, sizeof(msg), "no job with id \"%s\"", preq_id_valid(id) ? id : "?");
        reply_error(req, 404, "id", msg);
        return;
    }
    if (events && m == EVHTTP_REQ_GET)
        start_stream(api, req, job, query_flag(req, "images"), query_flag(req, "previews"));
    else if (!events && (m == EVHTTP_REQ_GET || m == EVHTTP_REQ_HEAD))
        handle_job_get(api, req, job);
    else if (!events && m == EVHTTP_REQ_DELETE)
        handle_job_delete(api, req, job);
    else {
        evhttp_add_header(evhttp_request_get_output_headers(req), "Allow",
                          events ? "GET" : "GET, HEAD, DELETE");
        reply_error(req, 405, "method", "method not allowed on this route");
    }
}

/* ---- connections ------------------------------------------------------------------
 *
 * libevent 2.1 offers no hook for a connection's end and only an inactivity
 * timeout, which a client dripping one byte at a time never trips. So each
 * connection's bufferevent is created here (evhttp_set_bevcb) and tracked,
 * with one extra reference: when evhttp frees it, its callbacks are cleared
 * but the object stays until the sweep sees that and drops our reference
 * (closing the socket). The tracker gives an exact connection count for
 * MAX_CONNECTIONS and the start of each request, so that a request not
 * received in full within REQUEST_TIMEOUT_S is cut off however it drips. */
struct conn {
    struct bufferevent *bev;
    double since;   /* connection opened, or its last reply finished */
    int busy;       /* a complete request is being answered */
    int got_bytes;  /* bytes arrived since `since` */
    int closing;    /* shut down to make room; evhttp will free it */
};

static void
on_input(struct evbuffer *buf, const struct evbuffer_cb_info *info, void *arg)
{
    struct conn *c = arg;

    (void)buf;
    if (info->n_added > 0)
        c->got_bytes = 1;
}

static void make_room(struct api *api);

static struct bufferevent *
on_new_bev(struct event_base *base, void *arg)
{
    struct api *api = arg;
    struct bufferevent *bev = bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE);
    struct conn *c;

    if (bev == NULL)
        return NULL;
    if (api->n_conns == api->cap_conns) {
        api->cap_conns = api->cap_conns ? api->cap_conns * 2 : 64;
        api->conns = xrealloc(api->conns, api->cap_conns * sizeof(*api->conns));
    }
    c = xcalloc(1, sizeof(*c));
    c->bev = bev;
    c->since = util_mono_ms();
    bufferevent_incref(bev);
    evbuffer_add_cb(bufferevent_get_input(bev), on_input, c);
    api->conns[api->n_conns++] = c;
    if (api->n_conns > (size_t)api->cfg->max_connections)
        make_room(api);
    return bev;
}

/* Over MAX_CONNECTIONS: close the connection that has been idle longest
 * (no request being answered: a keep-alive client, or one still sending),
 * so a flood of idle connections cannot lock real clients out. If every
 * connection is busy, stop accepting until one ends. */
static void
make_room(struct api *api)
{
    struct conn *oldest = NULL;
    size_t i;

    for (i = 0; i < api->n_conns; i++) {
        struct conn *c = api->conns[i];
        bufferevent_event_cb ecb = NULL;

        bufferevent_getcb(c->bev, NULL, NULL, &ecb, NULL);
        if (c->busy || ecb == NULL || bufferevent_getfd(c->bev) < 0 || c->closing)
            continue;
        if (oldest == NULL || c->since < oldest->since)
            oldest = c;
    }
    if (oldest != NULL) {
        oldest->closing = 1;
        shutdown(bufferevent_getfd(oldest->bev), SHUT_RDWR);
        return;
    }
    if (api->bound != NULL && !api->accept_paused) {
        evconnlistener_disable(evhttp_bound_socket_get_listener(api->bound));
        api->accept_paused = 1;
        log_warn("MAX_CONNECTIONS=%d busy connections; new ones wait", api->cfg->max_connections);
    }
}

static struct conn *
conn_of(struct api *api, struct evhttp_request *req)
{
    struct evhttp_connection *evcon = evhttp_request_get_connection(req);
    struct bufferevent *bev = evcon != NULL ? evhttp_connection_get_bufferevent(evcon) : NULL;
    size_t i;

    for (i = 0; bev != NULL && i < api->n_conns; i++)
        if (api->conns[i]->bev == bev)
            return api->conns[i];
    return NULL;
}

static void
on_conn_sweep(evutil_socket_t fd, short what, void *arg)
{
    struct api *api = arg;
    double now = util_mono_ms(), limit = api->cfg->request_timeout_s * 1000.0;
    size_t i = 0;

    (void)fd;
    (void)what;
    while (i < api->n_conns) {
        struct conn *c = api->conns[i];
        bufferevent_event_cb ecb = NULL;

        /* evhttp keeps an event callback on a live connection (its read
         * callback comes and goes while it writes); freeing clears it. */
        bufferevent_getcb(c->bev, NULL, NULL, &ecb, NULL);
        if (ecb == NULL) {
            /* evhttp is done with it: ours is the last reference. */
            evbuffer_remove_cb(bufferevent_get_input(c->bev), on_input, c);
            bufferevent_decref(c->bev);
            free(c);
            api->conns[i] = api->conns[--api->n_conns];
            continue;
        }
        if (!c->busy && c->got_bytes && now - c->since > limit) {
            evutil_socket_t s = bufferevent_getfd(c->bev);
            log_warn("a client took more than REQUEST_TIMEOUT_S=%d s to send its request; "
                     "closing the connection", api->cfg->request_timeout_s);
            /* evhttp sees the connection fail and frees it as usual. */
            if (s >= 0)
                shutdown(s, SHUT_RDWR);
            c->got_bytes = 0;
        }
        i++;
    }
    if (api->accept_paused && api->n_conns < (size_t)api->cfg->max_connections) {
        evconnlistener_enable(evhttp_bound_socket_get_listener(api->bound));
        api->accept_paused = 0;
    }
}

static void
conn_request_done(struct evhttp_request *req, struct api *api)
{
    struct conn *c = conn_of(api, req);

    if (c != NULL) {
        c->busy = 0;
        c->got_bytes = 0;
        c->since = util_mono_ms();
    }
}

/* ---- metrics ------------------------------------------------------------------ */

/* A bounded label for a path: our routes, one per template, or "other". */
static void
route_label(struct api *api, const char *path, char *out, size_t len)
{
    static const char *const fixed[] = {"/health", "/ready", "/prompt", "/interrupt",
                                        "/metrics", "/models", "/docs", "/docs/json", "/openapi.json",
                                        "/", NULL};
    int i;

    for (i = 0; fixed[i] != NULL; i++) {
        if (strcmp(path, fixed[i]) == 0) {
            snprintf(out, len, "%s", fixed[i]);
            return;
        }
    }
    if (strncmp(path, "/prompt/", 8) == 0) {
        const char *slash = strchr(path + 8, '/');
        snprintf(out, len, "%s", slash != NULL ? "/prompt/{id}/events" : "/prompt/{id}");
    } else if (strncmp(path, "/workflow/", 10) == 0 && tpl_find(wf_set(api->wf), path + 10)) {
        snprintf(out, len, "%s", path);
    } else if (strncmp(path, "/workflow/", 10) == 0) {
        snprintf(out, len, "/workflow/unknown");
    } else if (strncmp(path, "/docs/static/", 13) == 0) {
        snprintf(out, len, "/docs/static");
    } else {
        snprintf(out, len, "other");
    }
}


static void
on_request_complete(struct evhttp_request *req, void *arg)
{
    struct api *api = arg;

    conn_request_done(req, api);
    const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
    const char *path = uri != NULL ? evhttp_uri_get_path(uri) : NULL;
    char route[160];

    route_label(api, path != NULL && *path != '\0' ? path : "/", route, sizeof(route));
    met_http(route, evhttp_request_get_response_code(req), 0);
}

static void
handle_metrics(struct api *api, struct evhttp_request *req)
{
    struct evbuffer *out = evbuffer_new();
    struct life_status st;
    struct met_gauges g;
    struct waiter *w;

    life_status(api->life, &st);
    memset(&g, 0, sizeof(g));
    g.queue_depth = queue_depth(api);
    g.jobs_in_flight = jobs_in_flight(api->jobs);
    g.comfyui_up = strcmp(st.comfyui, "up") == 0;
    g.websocket_up = st.ws_connected;
    g.ready = !st.stopping && g.comfyui_up && st.ws_connected && st.warm && !queue_full(api);
    g.webhooks_pending = hooks_pending(api->hooks);
    TAILQ_FOREACH(w, &api->waiters, link)
        g.connections_waiting++;
    met_render(out, &g);
    met_bytes(evbuffer_get_length(out));
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
                      "text/plain; version=0.0.4; charset=utf-8");
    evhttp_send_reply(req, 200, "OK", out);
    evbuffer_free(out);
}

/* ---- routing ----------------------------------------------------------------- */

static void
on_request(struct evhttp_request *req, void *arg)
{
    struct api *api = arg;
    const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
    const char *path = uri != NULL ? evhttp_uri_get_path(uri) : NULL;
    enum evhttp_cmd_type m = evhttp_request_get_command(req);
    int get = m == EVHTTP_REQ_GET || m == EVHTTP_REQ_HEAD;
    const char *allow = NULL;
    char msg[300], esc[200];

    if (path == NULL || *path == '\0')
        path = "/";
    evhttp_request_set_on_complete_cb(req, on_request_complete, api);
    {
        struct conn *c = conn_of(api, req);
        if (c != NULL)
            c->busy = 1;
    }
    if (strcmp(path, "/health") == 0) {
        if (get)
            handle_health(api, req);
        else
            allow = "GET, HEAD";
    } else if (strcmp(path, "/ready") == 0) {
        if (get)
            handle_ready(api, req);
        else
            allow = "GET, HEAD";
    } else if (strcmp(path, "/prompt") == 0) {
        if (m == EVHTTP_REQ_POST)
            handle_prompt(api, req);
        else
            allow = "POST";
    } else if (strcmp(path, "/models") == 0) {
        if (get)
            handle_models(api, req);
        else
            allow = "GET, HEAD";
    } else if (strcmp(path, "/metrics") == 0) {
        if (get)
            handle_metrics(api, req);
        else
            allow = "GET, HEAD";
    } else if (strcmp(path, "/interrupt") == 0) {
        if (m == EVHTTP_REQ_POST)
            handle_interrupt(api, req);
        else
            allow = "POST";
    } else if (strncmp(path, "/prompt/", 8) == 0) {
        handle_job_route(api, req, path + 8);
    } else if (strncmp(path, "/workflow/", 10) == 0) {
        handle_workflow(api, req, path + 10);
    } else if (strcmp(path, "/docs/json") == 0 || strcmp(path, "/openapi.json") == 0) {
        if (get)
            handle_openapi(api, req);
        else
            allow = "GET, HEAD";
    } else if (strcmp(path, "/") == 0 && api->cfg->playground) {
        if (get)
            serve_file(api, req, "playground", "index.html");
        else
            allow = "GET, HEAD";
    } else if (strcmp(path, "/docs") == 0 || strcmp(path, "/docs/") == 0) {
        if (get)
            serve_file(api, req, "docs", "index.html");
        else
            allow = "GET, HEAD";
    } else if (strncmp(path, "/docs/static/", 13) == 0) {
        if (get)
            serve_file(api, req, "node_modules/swagger-ui-dist", path + 13);
        else
            allow = "GET, HEAD";
    } else {
        snprintf(msg, sizeof(msg), "no route %s",
                 log_escape(esc, sizeof(esc), path, strlen(path)));
        reply_error(req, 404, "path", msg);
    }
    if (allow != NULL) {
        evhttp_add_header(evhttp_request_get_output_headers(req), "Allow", allow);
        reply_error(req, 405, "method", "method not allowed on this route");
    }
}

struct api *
api_new(struct event_base *base, const struct config *cfg, struct jobs *jobs,
        struct life *life, struct hooks *hooks, struct wf *wf, struct media *media)
{
    struct api *api = xcalloc(1, sizeof(*api));
    struct timeval one = {1, 0}, hb = {cfg->sse_heartbeat_s, 0};

    api->base = base;
    api->cfg = cfg;
    api->jobs = jobs;
    api->life = life;
    api->hooks = hooks;
    api->wf = wf;
    api->media = media;
    TAILQ_INIT(&api->waiters);
    TAILQ_INIT(&api->pending);
    api->http = evhttp_new(base);
    evhttp_set_allowed_methods(api->http,
                               EVHTTP_REQ_GET | EVHTTP_REQ_HEAD | EVHTTP_REQ_POST |
                                   EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE |
                                   EVHTTP_REQ_OPTIONS | EVHTTP_REQ_PATCH);
    evhttp_set_max_body_size(api->http, (ev_ssize_t)cfg->max_body_size_mb << 20);
    errors_max_body_mb = cfg->max_body_size_mb;
    evhttp_set_max_headers_size(api->http, 64 * 1024);
    /* A client silent this long while sending, or idle between requests,
     * is cut off (slow-client attacks hold no slot for long). */
    evhttp_set_timeout(api->http, cfg->request_timeout_s);
    evhttp_set_default_content_type(api->http, "application/json");
    evhttp_set_gencb(api->http, on_request, api);
    evhttp_set_bevcb(api->http, on_new_bev, api);
    api->peek_timer = event_new(base, -1, EV_PERSIST, on_peek, api);
    event_add(api->peek_timer, &one);
    api->heartbeat_timer = event_new(base, -1, EV_PERSIST, on_heartbeat, api);
    event_add(api->heartbeat_timer, &hb);
    {
        struct timeval quarter = {0, 250000};
        api->sweep_timer = event_new(base, -1, EV_PERSIST, on_conn_sweep, api);
        event_add(api->sweep_timer, &quarter);
    }
    return api;
}

/* Out of descriptors: stop accepting for a moment instead of spinning on a
 * listener that stays readable. */
static void
on_accept_resume(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    evconnlistener_enable(arg);
}

static void
on_accept_error(struct evconnlistener *lev, void *arg)
{
    struct timeval tv = {0, 100000};
    int e = EVUTIL_SOCKET_ERROR();

    (void)arg;
    log_warn("accept failed: %s; pausing new connections for 100 ms",
             evutil_socket_error_to_string(e));
    evconnlistener_disable(lev);
    event_base_once(evconnlistener_get_base(lev), -1, EV_TIMEOUT, on_accept_resume, lev, &tv);
}

/* MAX_CONNECTIONS is enforced through the descriptor limit: connections
 * beyond it wait in the kernel's backlog until a slot frees. */
static void
limit_descriptors(const struct config *cfg)
{
    struct rlimit rl;
    rlim_t want = (rlim_t)cfg->max_connections + 256; /* ComfyUI calls, files */

    if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
        return;
    if (rl.rlim_max != RLIM_INFINITY && want > rl.rlim_max) {
        log_warn("MAX_CONNECTIONS=%d needs %llu descriptors, the hard limit is %llu",
                 cfg->max_connections, (unsigned long long)want,
                 (unsigned long long)rl.rlim_max);
        want = rl.rlim_max;
    }
    rl.rlim_cur = want;
    if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
        log_warn("cannot set the descriptor limit to %llu", (unsigned long long)want);
}

int
api_listen(struct api *api, char *err, size_t errlen)
{
    struct addrinfo hints, *res = NULL, *ai;
    char port[16];
    evutil_socket_t fd = -1;
    int rc, on = 1, off = 0, saved = 0;

    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    limit_descriptors(api->cfg);
    snprintf(port, sizeof(port), "%d", api->cfg->port);
    rc = getaddrinfo(api->cfg->host, port, &hints, &res);
    if (rc != 0) {
        snprintf(err, errlen, "HOST=%s: %s", api->cfg->host, gai_strerror(rc));
        return -1;
    }
    for (ai = res; ai != NULL; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
                    ai->ai_protocol);
        if (fd < 0) {
            saved = errno;
            continue;
        }
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on));
        /* Accepted sockets inherit it: a small answer (or the tail of a big
         * one) must not wait for the client's delayed ACK (40 ms). */
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof(on));
        /* "::" must also accept IPv4 whatever the host's bindv6only says. */
        if (ai->ai_family == AF_INET6)
            setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &off, sizeof(off));
        if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 && listen(fd, 1024) == 0)
            break;
        saved = errno;
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    if (fd < 0) {
        snprintf(err, errlen, "cannot listen on [%s]:%d: %s", api->cfg->host,
                 api->cfg->port, strerror(saved));
        return -1;
    }
    api->bound = evhttp_accept_socket_with_handle(api->http, fd);
    if (api->bound == NULL) {
        close(fd);
        snprintf(err, errlen, "cannot accept on [%s]:%d", api->cfg->host,
                 api->cfg->port);
        return -1;
    }
    evconnlistener_set_error_cb(evhttp_bound_socket_get_listener(api->bound),
                                on_accept_error);
    log_info("listening on [%s]:%d", api->cfg->host, api->cfg->port);
    return 0;
}

void
api_free(struct api *api)
{
    struct waiter *w;

    if (api == NULL)
        return;
    /* Jobs were failed before this (their waiters answered); what is left
     * are uploads in progress, streams and fetches, which end here. */
    while (!TAILQ_EMPTY(&api->pending)) {
        struct pending *p = TAILQ_FIRST(&api->pending);
        media_discard(p->prep);
        reply_error(p->req, 503, "server", "the server is shutting down");
        pending_free(p);
    }
    while ((w = TAILQ_FIRST(&api->waiters)) != NULL) {
        waiter_detach(w);
        if (w->sse_started)
            evhttp_send_reply_end(w->req);
        else
            reply_error(w->req, 503, "server", "the server is shutting down");
        waiter_free(w);
    }
    event_free(api->peek_timer);
    event_free(api->heartbeat_timer);
    event_free(api->sweep_timer);
    evhttp_free(api->http);
    while (api->n_conns > 0) {
        struct conn *c = api->conns[--api->n_conns];
        evbuffer_remove_cb(bufferevent_get_input(c->bev), on_input, c);
        bufferevent_decref(c->bev);
        free(c);
    }
    free(api->conns);
    free(api);
}
