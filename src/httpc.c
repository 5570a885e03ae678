/* httpc.c - outbound HTTP on the libevent loop (see httpc.h).
 *
 * Owns one CURLM driven through curl's socket interface: one libevent event
 * per socket curl asks about, one evtimer for curl's timeout, and every
 * pending call (easy handle, request headers, response body buffer). User
 * callbacks only ever run after curl_multi_socket_action() has returned, so
 * a callback may start or cancel calls freely. */
#include <curl/curl.h>
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "httpc.h"
#include "log.h"

#define HTTPC_DEFAULT_MAX_BODY ((size_t)64 * 1024 * 1024)
#define HTTPC_DEFAULT_CONNECT_MS 10000L
/* First allocation when the size is unknown; doubles from there. */
#define HTTPC_INITIAL_BODY 16384

struct httpc_sock {
    struct httpc *h;
    curl_socket_t fd;
    struct event *ev;
    struct httpc_sock *prev, *next;
};

struct httpc_call {
    struct httpc *h;
    CURL *easy;
    struct curl_slist *headers;
    httpc_done_cb cb;
    void *arg;
    unsigned char *body; /* always NUL-terminated when non-NULL */
    size_t body_len;
    size_t body_cap; /* usable bytes, not counting the NUL */
    size_t max_body;
    int too_big;
    long retry_after; /* seconds from a Retry-After header, -1 if none */
    curl_mime *mime;
    int (*allow_addr)(const struct sockaddr *, void *);
    void *allow_arg;
    int blocked;
    char errbuf[CURL_ERROR_SIZE];
    struct httpc_call *prev, *next;
};

struct httpc {
    struct event_base *base;
    CURLM *multi;
    struct event *timer;
    struct httpc_call *calls; /* pending, not yet in their callback */
    struct httpc_sock *socks;
    int pending;
    int in_cb;  /* depth of user callbacks currently running */
    int dying;  /* httpc_free was called from a callback; finish later */
};

static void httpc_destroy(struct httpc *h);

static void
call_unlink(struct httpc_call *c)
{
    struct httpc *h = c->h;

    if (c->prev != NULL)
        c->prev->next = c->next;
    else
        h->calls = c->next;
    if (c->next != NULL)
        c->next->prev = c->prev;
    c->prev = c->next = NULL;
    h->pending--;
}

/* Release everything a call owns. The easy handle must already be out of
 * the multi handle. */
static void
call_free(struct httpc_call *c)
{
    if (c->easy != NULL)
        curl_easy_cleanup(c->easy);
    curl_slist_free_all(c->headers);
    curl_mime_free(c->mime);
    free(c->body);
    free(c);
}

/* Make room for at least `need` body bytes (plus the NUL). Geometric growth
 * keeps a large body at O(log n) reallocs; `hint` (Content-Length) lets the
 * first allocation be exact. */
static int
body_reserve(struct httpc_call *c, size_t need, size_t hint)
{
    size_t cap = c->body_cap;
    unsigned char *p;

    if (need <= cap && c->body != NULL)
        return 0;
    if (cap == 0)
        cap = hint > need ? hint : HTTPC_INITIAL_BODY;
    while (cap < need)
        cap = cap > c->max_body / 2 ? c->max_body : cap * 2;
    if (cap > c->max_body)
        cap = c->max_body;
    if (cap < need)
        cap = need;
    p = realloc(c->body, cap + 1);
    if (p == NULL)
        return -1;
    c->body = p;
    c->body_cap = cap;
    return 0;
}

static size_t
write_cb(char *data, size_t size, size_t nmemb, void *userp)
{
    struct httpc_call *c = userp;
    size_t n = size * nmemb;
    size_t room = c->max_body - c->body_len;
    size_t take = n < room ? n : room;
    size_t hint = 0;
    curl_off_t cl = -1;

    if (c->body == NULL &&
        curl_easy_getinfo(c->easy, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &cl) ==
            CURLE_OK &&
        cl > 0)
        hint = (unsigned long long)cl > c->max_body ? c->max_body : (size_t)cl;
    if (take > 0) {
        if (body_reserve(c, c->body_len + take, hint) < 0) {
            snprintf(c->errbuf, sizeof(c->errbuf), "out of memory for body");
            return 0;
        }
        memcpy(c->body + c->body_len, data, take);
        c->body_len += take;
        c->body[c->body_len] = '\0';
    }
    if (take < n) {
        /* Returning short makes curl abort with CURLE_WRITE_ERROR; the flag
         * tells finish() that this was the cap, not a real write error. */
        c->too_big = 1;
        return 0;
    }
    return n;
}

/* Only Retry-After is wanted from the response headers (429 and 503
 * answers to webhooks): seconds, or an HTTP date turned into seconds. */
static size_t
header_cb(char *line, size_t size, size_t n, void *arg)
{
    struct httpc_call *c = arg;
    size_t len = size * n;
    static const char name[] = "retry-after:";

    if (len > sizeof(name) - 1 && strncasecmp(line, name, sizeof(name) - 1) == 0) {
        char buf[128];
        size_t i = sizeof(name) - 1, k = 0;

        while (i < len && (line[i] == ' ' || line[i] == '\t'))
            i++;
        while (i < len && k < sizeof(buf) - 1 && line[i] != '\r' && line[i] != '\n')
            buf[k++] = line[i++];
        buf[k] = '\0';
        if (k > 0 && strspn(buf, "0123456789") == k) {
            c->retry_after = strtol(buf, NULL, 10);
        } else if (k > 0) {
            time_t when = curl_getdate(buf, NULL);
            if (when > 0)
                c->retry_after = when > time(NULL) ? (long)(when - time(NULL)) : 0;
        }
    }
    return len;
}

static void
finish(struct httpc_call *c, CURLcode code)
{
    struct httpc *h = c->h;
    struct httpc_result res;
    char *ctype = NULL;
    long status = 0;
    double total = 0;

    memset(&res, 0, sizeof(res));
    curl_easy_getinfo(c->easy, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_getinfo(c->easy, CURLINFO_CONTENT_TYPE, &ctype);
    curl_easy_getinfo(c->easy, CURLINFO_TOTAL_TIME, &total);
    curl_multi_remove_handle(h->multi, c->easy);
    call_unlink(c);

    res.status = status;
    res.retry_after_s = c->retry_after;
    res.blocked = c->blocked;
    res.too_many_redirects = code == CURLE_TOO_MANY_REDIRECTS;
    res.content_type = ctype; /* owned by the easy handle, freed below */
    res.total_time_s = total;
    res.body = c->body;
    res.body_len = c->body_len;
    if (c->too_big) {
        snprintf(c->errbuf, sizeof(c->errbuf),
                 "response body exceeds %zu bytes", c->max_body);
        res.too_big = 1;
        res.ok = status > 0;
        res.error = c->errbuf;
    } else if (code == CURLE_OK) {
        res.ok = 1;
    } else {
        res.timed_out = code == CURLE_OPERATION_TIMEDOUT;
        res.error = c->errbuf[0] != '\0' ? c->errbuf : curl_easy_strerror(code);
    }
    if (res.body_len == 0)
        res.body = NULL;

    h->in_cb++;
    c->cb(&res, c->arg);
    h->in_cb--;
    /* The callback may have taken the body. */
    if (res.body == NULL)
        c->body = NULL;
    call_free(c);
}

/* Deliver every finished transfer. Runs only after socket_action returned,
 * so callbacks may add or cancel handles. */
static void
drain(struct httpc *h)
{
    CURLMsg *msg;
    int left;

    while (!h->dying && (msg = curl_multi_info_read(h->multi, &left)) != NULL) {
        struct httpc_call *c = NULL;
        CURLcode code;

        if (msg->msg != CURLMSG_DONE)
            continue;
        /* msg is invalid once the handle is removed: copy first. */
        code = msg->data.result;
        curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&c);
        if (c != NULL)
            finish(c, code);
    }
}

static void
after_action(struct httpc *h)
{
    drain(h);
    if (h->dying && h->in_cb == 0)
        httpc_destroy(h);
}

static void
sock_event_cb(evutil_socket_t fd, short what, void *arg)
{
    struct httpc *h = arg;
    int mask = 0, running = 0;

    if (what & EV_READ)
        mask |= CURL_CSELECT_IN;
    if (what & EV_WRITE)
        mask |= CURL_CSELECT_OUT;
    curl_multi_socket_action(h->multi, fd, mask, &running);
    /* No evtimer_del when running == 0: a callback in drain() may just
     * have added a transfer whose timer curl armed. */
    after_action(h);
}

static void
timer_event_cb(evutil_socket_t fd, short what, void *arg)
{
    struct httpc *h = arg;
    int running = 0;

    (void)fd;
    (void)what;
    curl_multi_socket_action(h->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    after_action(h);
}

static int
socket_cb(CURL *easy, curl_socket_t s, int what, void *userp, void *socketp)
{
    struct httpc *h = userp;
    struct httpc_sock *sk = socketp;
    short kind;

    (void)easy;
    if (what == CURL_POLL_REMOVE) {
        if (sk != NULL) {
            event_free(sk->ev);
            if (sk->prev != NULL)
                sk->prev->next = sk->next;
            else
                h->socks = sk->next;
            if (sk->next != NULL)
                sk->next->prev = sk->prev;
            free(sk);
            curl_multi_assign(h->multi, s, NULL);
        }
        return 0;
    }
    kind = EV_PERSIST;
    if (what & CURL_POLL_IN)
        kind |= EV_READ;
    if (what & CURL_POLL_OUT)
        kind |= EV_WRITE;
    if (sk == NULL) {
        sk = calloc(1, sizeof(*sk));
        if (sk == NULL)
            return -1;
        sk->ev = event_new(h->base, s, kind, sock_event_cb, h);
        if (sk->ev == NULL) {
            free(sk);
            return -1;
        }
        sk->h = h;
        sk->fd = s;
        sk->next = h->socks;
        if (h->socks != NULL)
            h->socks->prev = sk;
        h->socks = sk;
        curl_multi_assign(h->multi, s, sk);
    } else {
        event_del(sk->ev);
        event_assign(sk->ev, h->base, s, kind, sock_event_cb, h);
    }
    return event_add(sk->ev, NULL) == 0 ? 0 : -1;
}

/* Never call socket_action from here (CURLM_RECURSIVE_API_CALL): arm the
 * evtimer, 0 ms included. */
static int
timer_cb(CURLM *multi, long timeout_ms, void *userp)
{
    struct httpc *h = userp;
    struct timeval tv;

    (void)multi;
    if (timeout_ms < 0) {
        evtimer_del(h->timer);
        return 0;
    }
    tv.tv_sec = timeout_ms / 1000;
    tv.tv_usec = (timeout_ms % 1000) * 1000;
    return evtimer_add(h->timer, &tv) == 0 ? 0 : -1;
}

struct httpc *
httpc_new(struct event_base *base)
{
    struct httpc *h = NULL;

    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        log_error("httpc: curl_global_init failed");
        return NULL;
    }
    h = calloc(1, sizeof(*h));
    if (h == NULL)
        goto err;
    h->base = base;
    h->multi = curl_multi_init();
    h->timer = evtimer_new(base, timer_event_cb, h);
    if (h->multi == NULL || h->timer == NULL)
        goto err;
    curl_multi_setopt(h->multi, CURLMOPT_SOCKETFUNCTION, socket_cb);
    curl_multi_setopt(h->multi, CURLMOPT_SOCKETDATA, h);
    curl_multi_setopt(h->multi, CURLMOPT_TIMERFUNCTION, timer_cb);
    curl_multi_setopt(h->multi, CURLMOPT_TIMERDATA, h);
    return h;

err:
    log_error("httpc: out of memory");
    if (h != NULL) {
        if (h->multi != NULL)
            curl_multi_cleanup(h->multi);
        if (h->timer != NULL)
            event_free(h->timer);
        free(h);
    }
    curl_global_cleanup();
    return NULL;
}

static void
cancel_all(struct httpc *h)
{
    while (h->calls != NULL)
        httpc_cancel(h->calls);
}

static void
httpc_destroy(struct httpc *h)
{
    cancel_all(h);
    /* curl_multi_cleanup may still call socket_cb(REMOVE) for pooled
     * connections, so the events must outlive it. */
    curl_multi_cleanup(h->multi);
    while (h->socks != NULL) {
        struct httpc_sock *sk = h->socks;

        h->socks = sk->next;
        event_free(sk->ev);
        free(sk);
    }
    event_free(h->timer);
    free(h);
    curl_global_cleanup();
}

void
httpc_free(struct httpc *h)
{
    if (h == NULL)
        return;
    if (h->in_cb > 0) {
        /* Called from a done callback: finish() and drain() still hold
         * pointers into h. Cancel now, destroy once they unwind. */
        cancel_all(h);
        h->dying = 1;
        return;
    }
    httpc_destroy(h);
}

static int
add_header(struct httpc_call *c, const char *line)
{
    struct curl_slist *l = curl_slist_append(c->headers, line);

    if (l == NULL)
        return -1;
    c->headers = l;
    return 0;
}

/* Configure the easy handle from req. Returns 0, or -1 with the reason. */
/* Called by curl with each address it is about to connect to, after DNS
 * and on every redirect: the one place where a request can be kept away
 * from addresses it must not reach (server-side request forgery). */
static curl_socket_t
open_socket_cb(void *arg, curlsocktype purpose, struct curl_sockaddr *a)
{
    struct httpc_call *c = arg;

    (void)purpose;
    if (c->allow_addr != NULL && !c->allow_addr(&a->addr, c->allow_arg)) {
        c->blocked = 1;
        return CURL_SOCKET_BAD;
    }
    return socket(a->family, a->socktype | SOCK_CLOEXEC, a->protocol);
}

static int
setup_mime(struct httpc_call *c, const struct httpc_request *req)
{
    size_t i;

    c->mime = curl_mime_init(c->easy);
    if (c->mime == NULL)
        return -1;
    for (i = 0; i < req->n_parts; i++) {
        const struct httpc_part *p = &req->parts[i];
        curl_mimepart *part = curl_mime_addpart(c->mime);

        if (part == NULL || curl_mime_name(part, p->name) != CURLE_OK ||
            curl_mime_data(part, p->data, p->len) != CURLE_OK)
            return -1;
        if (p->filename != NULL && curl_mime_filename(part, p->filename) != CURLE_OK)
            return -1;
        if (p->content_type != NULL && curl_mime_type(part, p->content_type) != CURLE_OK)
            return -1;
    }
    return curl_easy_setopt(c->easy, CURLOPT_MIMEPOST, c->mime) == CURLE_OK ? 0 : -1;
}

static int
setup_easy(struct httpc_call *c, const struct httpc_request *req,
           const char **why)
{
    CURL *e = c->easy;
    const char *method = req->method != NULL ? req->method : "GET";
    char line[256];
    size_t i;

    *why = "out of memory";
    curl_easy_setopt(e, CURLOPT_URL, req->url);
    curl_easy_setopt(e, CURLOPT_PRIVATE, (char *)c);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, c->errbuf);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, write_cb);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, c);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, header_cb);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, c);
    c->retry_after = -1;
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS,
                     req->timeout_ms > 0 ? req->timeout_ms : 0L);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS,
                     req->connect_timeout_ms > 0 ? req->connect_timeout_ms
                                                 : HTTPC_DEFAULT_CONNECT_MS);
    curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    if (req->max_redirects > 0) {
        curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 1L);
        curl_easy_setopt(e, CURLOPT_MAXREDIRS, (long)req->max_redirects);
        curl_easy_setopt(e, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
    }
    if (req->allow_addr != NULL) {
        c->allow_addr = req->allow_addr;
        c->allow_arg = req->allow_arg;
        curl_easy_setopt(e, CURLOPT_OPENSOCKETFUNCTION, open_socket_cb);
        curl_easy_setopt(e, CURLOPT_OPENSOCKETDATA, c);
        /* A reused connection was checked when it opened; but never reuse
         * one across requests with different rules. */
        curl_easy_setopt(e, CURLOPT_FORBID_REUSE, 1L);
        curl_easy_setopt(e, CURLOPT_FRESH_CONNECT, 1L);
    }

    if (req->parts != NULL) {
        if (setup_mime(c, req) < 0)
            return -1;
    } else if (strcmp(method, "GET") == 0) {
        curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
    } else if (strcmp(method, "HEAD") == 0) {
        curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
    } else {
        if (strcmp(method, "POST") != 0)
            curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, method);
        if (req->body != NULL || strcmp(method, "POST") == 0) {
            const void *body = req->body != NULL ? req->body : "";
            curl_off_t blen = req->body != NULL ? (curl_off_t)req->body_len : 0;

            /* Size first: COPYPOSTFIELDS copies exactly that many bytes. */
            curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, blen);
            if (curl_easy_setopt(e, CURLOPT_COPYPOSTFIELDS, body) != CURLE_OK)
                return -1;
        }
    }

    /* An empty value removes curl's default: no "Expect: 100-continue"
     * round trip for big bodies, no form-urlencoded type by surprise. */
    if (add_header(c, "Expect:") < 0)
        return -1;
    if (req->content_type != NULL) {
        if ((size_t)snprintf(line, sizeof(line), "Content-Type: %s",
                             req->content_type) >= sizeof(line)) {
            *why = "content type too long";
            return -1;
        }
        if (add_header(c, line) < 0)
            return -1;
    } else if (req->parts == NULL && add_header(c, "Content-Type:") < 0) {
        return -1;
    }
    for (i = 0; req->headers != NULL && req->headers[i] != NULL; i++)
        if (add_header(c, req->headers[i]) < 0)
            return -1;
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, c->headers);
    return 0;
}

struct httpc_call *
httpc_start(struct httpc *h, const struct httpc_request *req, httpc_done_cb cb,
            void *arg)
{
    struct httpc_call *c = NULL;
    const char *why = "out of memory";
    CURLMcode mc;

    if (h == NULL || h->dying || req == NULL || req->url == NULL ||
        cb == NULL) {
        log_error("httpc: bad request");
        return NULL;
    }
    c = calloc(1, sizeof(*c));
    if (c == NULL)
        goto err;
    c->h = h;
    c->cb = cb;
    c->arg = arg;
    c->max_body = req->max_body > 0 ? req->max_body : HTTPC_DEFAULT_MAX_BODY;
    c->easy = curl_easy_init();
    if (c->easy == NULL)
        goto err;
    if (setup_easy(c, req, &why) < 0)
        goto err;
    /* add_handle only arms curl's timer (0 ms); the transfer and every
     * callback happen later from the loop, never synchronously. */
    mc = curl_multi_add_handle(h->multi, c->easy);
    if (mc != CURLM_OK) {
        why = curl_multi_strerror(mc);
        goto err;
    }
    c->next = h->calls;
    if (h->calls != NULL)
        h->calls->prev = c;
    h->calls = c;
    h->pending++;
    return c;

err:
    log_error("httpc: cannot start %s %s: %s",
              req->method != NULL ? req->method : "GET", req->url, why);
    if (c != NULL)
        call_free(c);
    return NULL;
}

void
httpc_cancel(struct httpc_call *c)
{
    if (c == NULL)
        return;
    /* User code never runs inside a curl callback here, so removing the
     * handle is always safe; it also drops a DONE message still queued in
     * curl_multi_info_read for this handle. */
    curl_multi_remove_handle(c->h->multi, c->easy);
    call_unlink(c);
    call_free(c);
}

int
httpc_pending(const struct httpc *h)
{
    return h != NULL ? h->pending : 0;
}
