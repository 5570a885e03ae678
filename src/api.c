/* api.c - routes and replies (see api.h).
 *
 * Owns the evhttp server and the waiters that tie a client's request to its
 * job. A waiter outlives a client that hangs up (libevent keeps the request
 * until we reply, then frees it), so the job's completion always finds a
 * request to answer and the "one reply per request" rule holds. Success
 * bodies are assembled straight into the output buffer, base64 included,
 * without an intermediate JSON tree for the images. */
#include <arpa/inet.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/util.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "api.h"
#include "b64.h"
#include "config.h"
#include "job.h"
#include "life.h"
#include "log.h"
#include "request.h"
#include "util.h"

struct api {
    struct event_base *base;
    const struct config *cfg;
    struct jobs *jobs;
    struct life *life;
    struct evhttp *http;
};

/* One per synchronous /prompt request waiting on its job. */
struct waiter {
    struct api *api;
    struct evhttp_request *req;
    struct evhttp_connection *conn; /* NULL once the client hung up */
    char id[REQ_ID_MAX + 1];
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
    case 413: return "Payload Too Large";
    case 429: return "Too Many Requests";
    case 500: return "Internal Server Error";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    default: return "Status";
    }
}

static int
dump_to_evbuffer(const char *buf, size_t size, void *data)
{
    return evbuffer_add(data, buf, size);
}

/* Send body (stolen) as the reply. */
static void
reply_json(struct evhttp_request *req, int status, json_t *body)
{
    struct evbuffer *out = evbuffer_new();
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);

    json_dump_callback(body, dump_to_evbuffer, out, JSON_COMPACT);
    evbuffer_add(out, "\n", 1);
    json_decref(body);
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
                 "request body is larger than MAX_BODY_SIZE_MB (%d MiB)",
                 errors_max_body_mb);
        location = "body";
        break;
    case 400:
        snprintf(msg, sizeof(msg), "malformed HTTP request");
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
    reply_error(req, error, location, msg);
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
            st.warm;
    status_body(api, ready ? "ready" : "not ready", &body);
    reply_json(req, ready ? 200 : 503, body);
}

/* ---- POST /prompt ----------------------------------------------------------- */

static void
on_client_close(struct evhttp_connection *conn, void *arg)
{
    struct waiter *w = arg;

    (void)conn;
    /* libevent keeps the request until we reply; the job goes on. */
    w->conn = NULL;
    rlog_info(w->id, "client disconnected before the answer");
}

static void
add_success_body(struct evbuffer *out, const struct job_result *res)
{
    size_t i;

    evbuffer_add_printf(out, "{\"id\":");
    {
        json_t *id = json_string(res->id);
        json_dump_callback(id, dump_to_evbuffer, out, JSON_ENCODE_ANY);
        json_decref(id);
    }
    evbuffer_add(out, ",\"prompt\":", 10);
    json_dump_callback(res->prompt, dump_to_evbuffer, out, JSON_COMPACT);
    evbuffer_add(out, ",\"images\":[", 11);
    for (i = 0; i < res->n_outputs; i++) {
        const struct job_output *o = &res->outputs[i];
        size_t n = b64_encoded_len(o->len);
        struct evbuffer_iovec vec;

        if (i > 0)
            evbuffer_add(out, ",", 1);
        evbuffer_add(out, "\"", 1);
        /* Encode straight into the reply: no copy of the base64 text. */
        if (n > 0 && evbuffer_reserve_space(out, (ev_ssize_t)n, &vec, 1) == 1) {
            vec.iov_len = b64_encode(o->data, o->len, vec.iov_base);
            evbuffer_commit_space(out, &vec, 1);
        }
        evbuffer_add(out, "\"", 1);
    }
    evbuffer_add(out, "],\"filenames\":[", 15);
    for (i = 0; i < res->n_outputs; i++) {
        const struct job_output *o = &res->outputs[i];
        char *name;
        json_t *s;
        size_t len = strlen(o->subfolder) + strlen(o->filename) + 2;

        name = xmalloc(len);
        if (o->subfolder[0] != '\0')
            snprintf(name, len, "%s/%s", o->subfolder, o->filename);
        else
            snprintf(name, len, "%s", o->filename);
        s = json_string(name);
        free(name);
        if (i > 0)
            evbuffer_add(out, ",", 1);
        json_dump_callback(s, dump_to_evbuffer, out, JSON_ENCODE_ANY);
        json_decref(s);
    }
    evbuffer_add(out, "],\"stats\":", 10);
    json_dump_callback(res->stats, dump_to_evbuffer, out, JSON_COMPACT);
    evbuffer_add(out, "}\n", 2);
}

static void
on_job_done(const struct job_result *res, void *arg)
{
    struct waiter *w = arg;
    struct evhttp_request *req = w->req;

    if (w->conn != NULL)
        evhttp_connection_set_closecb(w->conn, NULL, NULL);
    if (w->conn == NULL) {
        /* Nobody is listening; the reply only releases the request. */
        evhttp_send_reply(req, res->status, reason(res->status), NULL);
    } else if (res->status == 200) {
        struct evbuffer *out = evbuffer_new();

        add_success_body(out, res);
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
    free(w);
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
    struct waiter *w;
    double t0 = util_mono_ms();
    int retry;

    memset(&opt, 0, sizeof(opt));
    opt.prepend_filenames = api->cfg->prepend_filenames;
    if (preq_parse(body, len, &opt, &pr, &err) < 0) {
        reply_error(req, err.status, err.location, err.message);
        return;
    }
    if (!life_accepting(api->life, &retry)) {
        char ra[16];

        if (retry > 0) {
            snprintf(ra, sizeof(ra), "%d", retry);
            evhttp_add_header(evhttp_request_get_output_headers(req),
                              "Retry-After", ra);
        }
        reply_error(req, 503, "comfyui",
                    retry > 0 ? "ComfyUI is not running yet (starting or restarting); retry later"
                              : "the server is shutting down");
        preq_free(&pr);
        return;
    }
    w = xcalloc(1, sizeof(*w));
    w->api = api;
    w->req = req;
    w->conn = evhttp_request_get_connection(req);
    snprintf(w->id, sizeof(w->id), "%s", pr.id);
    evhttp_connection_set_closecb(w->conn, on_client_close, w);
    job_submit(api->jobs, pr.id, pr.prompt, t0, on_job_done, w);
    preq_free(&pr);
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
    char msg[300], esc[200];

    if (path == NULL || *path == '\0')
        path = "/";
    if (strcmp(path, "/health") == 0 && get) {
        handle_health(api, req);
    } else if (strcmp(path, "/ready") == 0 && get) {
        handle_ready(api, req);
    } else if (strcmp(path, "/prompt") == 0 && m == EVHTTP_REQ_POST) {
        handle_prompt(api, req);
    } else if (strcmp(path, "/health") == 0 || strcmp(path, "/ready") == 0 ||
               strcmp(path, "/prompt") == 0) {
        evhttp_add_header(evhttp_request_get_output_headers(req), "Allow",
                          strcmp(path, "/prompt") == 0 ? "POST" : "GET, HEAD");
        reply_error(req, 405, "method", "method not allowed on this route");
    } else {
        snprintf(msg, sizeof(msg), "no route %s",
                 log_escape(esc, sizeof(esc), path, strlen(path)));
        reply_error(req, 404, "path", msg);
    }
}

struct api *
api_new(struct event_base *base, const struct config *cfg, struct jobs *jobs,
        struct life *life)
{
    struct api *api = xcalloc(1, sizeof(*api));

    api->base = base;
    api->cfg = cfg;
    api->jobs = jobs;
    api->life = life;
    api->http = evhttp_new(base);
    evhttp_set_allowed_methods(api->http,
                               EVHTTP_REQ_GET | EVHTTP_REQ_HEAD | EVHTTP_REQ_POST |
                                   EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE |
                                   EVHTTP_REQ_OPTIONS | EVHTTP_REQ_PATCH);
    evhttp_set_max_body_size(api->http, (ev_ssize_t)cfg->max_body_size_mb << 20);
    errors_max_body_mb = cfg->max_body_size_mb;
    evhttp_set_max_headers_size(api->http, 64 * 1024);
    evhttp_set_default_content_type(api->http, "application/json");
    evhttp_set_gencb(api->http, on_request, api);
    return api;
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
    if (evhttp_accept_socket_with_handle(api->http, fd) == NULL) {
        close(fd);
        snprintf(err, errlen, "cannot accept on [%s]:%d", api->cfg->host,
                 api->cfg->port);
        return -1;
    }
    log_info("listening on [%s]:%d", api->cfg->host, api->cfg->port);
    return 0;
}

void
api_free(struct api *api)
{
    if (api == NULL)
        return;
    evhttp_free(api->http);
    free(api);
}
