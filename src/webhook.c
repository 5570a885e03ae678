/* webhook.c - webhook deliveries (see webhook.h).
 *
 * Owns one delivery per webhook: the body (or bodies, for the legacy kind),
 * the attempt timer and the HTTP call in flight. A delivery watches its job
 * only until the job's result is turned into bodies; from then on it needs
 * nothing from the job but its bookkeeping fields, which stay valid because
 * the job is not dropped from the history while hook.pending is set. */
#include <event2/buffer.h>
#include <event2/event.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "b64.h"
#include "config.h"
#include "httpc.h"
#include "job.h"
#include "log.h"
#include "metrics.h"
#include "render.h"
#include "util.h"
#include "webhook.h"

struct delivery {
    struct delivery *next;
    struct hooks *h;
    struct job *job;
    struct job_watch *watch;
    int v2;
    char *url;
    char url_log[300];
    char **bodies;
    size_t *lens;
    size_t n_bodies, cur;
    int attempt; /* attempts of the current body */
    double started_ms;
    struct event *timer;
    struct httpc_call *call;
};

struct hooks {
    struct event_base *base;
    struct httpc *http;
    const struct config *cfg;
    unsigned char key[256];
    size_t keylen;
    struct delivery *list;
    int pending;
};

static void attempt(struct delivery *d);

void
hook_url_for_log(const char *url, char *out, size_t outlen)
{
    const char *scheme_end = strstr(url, "://");
    const char *host = scheme_end != NULL ? scheme_end + 3 : url;
    const char *end = host + strcspn(host, "/?#");
    const char *at = memchr(host, '@', (size_t)(end - host));
    const char *path_end;

    if (at != NULL)
        host = at + 1; /* user info may hold a password */
    path_end = host + strcspn(host, "?#");
    snprintf(out, outlen, "%.*s%.*s", scheme_end != NULL ? (int)(scheme_end - url + 3) : 0,
             url, (int)(path_end - host), host);
}

int
hook_sign(const unsigned char *key, size_t keylen, const char *msg_id,
          long long ts, const char *body, size_t len, char *out, size_t outlen)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    char prefix[200];
    int plen = snprintf(prefix, sizeof(prefix), "%s.%lld.", msg_id, ts);
    unsigned char *msg;
    size_t n;

    if (plen < 0 || (size_t)plen >= sizeof(prefix) || outlen < 3 + b64_encoded_len(32) + 1)
        return -1;
    msg = xmalloc((size_t)plen + len);
    memcpy(msg, prefix, (size_t)plen);
    memcpy(msg + plen, body, len);
    if (HMAC(EVP_sha256(), keylen > 0 ? key : (const unsigned char *)"", (int)keylen,
             msg, (size_t)plen + len, md, &mdlen) == NULL) {
        free(msg);
        return -1;
    }
    free(msg);
    memcpy(out, "v1,", 3);
    n = b64_encode(md, mdlen, out + 3);
    out[3 + n] = '\0';
    return 0;
}

/* ---- bodies ----------------------------------------------------------------- */

static char *
take_buffer(struct evbuffer *b, size_t *len)
{
    char *s;

    *len = evbuffer_get_length(b);
    s = xmalloc(*len + 1);
    evbuffer_remove(b, s, *len);
    s[*len] = '\0';
    return s;
}

static void
add_body(struct delivery *d, struct evbuffer *b)
{
    d->bodies = xrealloc(d->bodies, (d->n_bodies + 1) * sizeof(*d->bodies));
    d->lens = xrealloc(d->lens, (d->n_bodies + 1) * sizeof(*d->lens));
    d->bodies[d->n_bodies] = take_buffer(b, &d->lens[d->n_bodies]);
    d->n_bodies++;
}

static void
dump_field(struct evbuffer *b, const char *key, json_t *v, int comma)
{
    json_t *k = json_string(key);

    if (comma)
        evbuffer_add(b, ",", 1);
    json_dump_callback(k, render_dump_cb, b, JSON_ENCODE_ANY);
    evbuffer_add(b, ":", 1);
    json_dump_callback(v, render_dump_cb, b, JSON_COMPACT | JSON_ENCODE_ANY);
    json_decref(k);
}

static void
build_bodies(struct delivery *d, const struct job_result *res)
{
    struct evbuffer *b = evbuffer_new();
    const char *msg = json_string_value(json_object_get(res->error, "error"));
    char ts[40];
    json_t *id = json_string(res->id);
    size_t i;

    util_iso_time(util_epoch_ms(), ts, sizeof(ts));
    msg = msg != NULL ? msg : "the job failed";
    if (d->v2 && res->status == 200) {
        json_t *head = json_pack("{s:s, s:s}", "type", "prompt.complete", "timestamp", ts);
        render_result(b, res, head, 1, 1, NULL, 0);
        json_decref(head);
        add_body(d, b);
    } else if (d->v2) {
        json_t *o = json_pack("{s:s, s:s, s:O, s:O, s:s, s:i, s:O}", "type", "prompt.failed",
                              "timestamp", ts, "id", id, "prompt", res->prompt, "error",
                              msg, "http_status", res->status, "details", res->error);
        if (res->input != NULL)
            json_object_set(o, "input", res->input);
        json_dump_callback(o, render_dump_cb, b, JSON_COMPACT);
        json_decref(o);
        add_body(d, b);
    } else if (res->status == 200) {
        /* comfyui-api's legacy shape: one POST per image. */
        for (i = 0; i < res->n_outputs; i++) {
            json_t *fn = render_filename(&res->outputs[i]);
            evbuffer_add(b, "{\"event\":\"output.complete\",\"image\":", 35);
            render_b64_string(b, res->outputs[i].data, res->outputs[i].len);
            dump_field(b, "id", id, 1);
            dump_field(b, "filename", fn, 1);
            dump_field(b, "prompt", res->prompt, 1);
            dump_field(b, "stats", res->stats, 1);
            evbuffer_add(b, "}", 1);
            json_decref(fn);
            add_body(d, b);
        }
    } else {
        json_t *o = json_pack("{s:s, s:O, s:O, s:s}", "event", "prompt.failed", "id", id,
                              "prompt", res->prompt, "error", msg);
        json_dump_callback(o, render_dump_cb, b, JSON_COMPACT);
        json_decref(o);
        add_body(d, b);
    }
    json_decref(id);
    evbuffer_free(b);
}

/* ---- delivery lifecycle -------------------------------------------------------- */

static void
delivery_free(struct delivery *d)
{
    struct delivery **pd = &d->h->list;
    size_t i;

    while (*pd != NULL && *pd != d)
        pd = &(*pd)->next;
    if (*pd == d)
        *pd = d->next;
    d->h->pending--;
    if (d->call != NULL)
        httpc_cancel(d->call);
    if (d->watch != NULL)
        job_unwatch(d->watch);
    for (i = 0; i < d->n_bodies; i++)
        free(d->bodies[i]);
    free(d->bodies);
    free(d->lens);
    event_free(d->timer);
    free(d->url);
    free(d);
}

static void
finish(struct delivery *d, const char *state)
{
    struct job_hook_status *hs = job_hook(d->job);

    hs->state = state;
    hs->pending = 0;
    met_webhook(strcmp(state, "delivered") == 0 ? MET_HOOK_DELIVERED : MET_HOOK_FAILED);
    delivery_free(d);
}

static double
jitter(void)
{
    unsigned r = 0;

    if (getrandom(&r, sizeof(r), 0) != sizeof(r))
        r = (unsigned)rand();
    return 0.8 + 0.4 * ((double)(r % 10001) / 10000.0);
}

static void
on_attempt(struct httpc_result *res, void *arg)
{
    struct delivery *d = arg;
    struct hooks *h = d->h;
    struct job_hook_status *hs = job_hook(d->job);
    const char *kind = d->v2 ? "webhook_v2" : "webhook";
    char why[200];
    int retryable;
    double delay, elapsed;

    d->call = NULL;
    hs->last_status = res->ok ? res->status : 0;
    if (res->ok && res->status >= 200 && res->status < 300) {
        rlog_info(job_id(d->job), "%s delivered to %s (attempt %d, HTTP %ld)", kind,
                  d->url_log, d->attempt, res->status);
        hs->last_error[0] = '\0';
        if (++d->cur < d->n_bodies) {
            d->attempt = 0;
            attempt(d);
            return;
        }
        finish(d, "delivered");
        return;
    }
    if (!res->ok)
        snprintf(why, sizeof(why), "%s%s", res->timed_out ? "timed out: " : "",
                 res->error != NULL ? res->error : "no answer");
    else
        snprintf(why, sizeof(why), "HTTP %ld", res->status);
    snprintf(hs->last_error, sizeof(hs->last_error), "%s", why);
    retryable = !res->ok || res->status >= 500 || res->status == 408 || res->status == 429;
    if (!retryable) {
        rlog_warn(job_id(d->job), "%s to %s failed (attempt %d): %s; not retried",
                  kind, d->url_log, d->attempt, why);
        finish(d, "failed");
        return;
    }
    if (d->attempt >= h->cfg->webhook_retries) {
        rlog_error(job_id(d->job), "%s to %s failed after %d attempts, last: %s; giving up",
                   kind, d->url_log, d->attempt, why);
        finish(d, "failed");
        return;
    }
    delay = h->cfg->webhook_backoff_ms * (double)(1u << (d->attempt - 1 < 20 ? d->attempt - 1 : 20)) *
            jitter();
    if (res->ok && res->status == 429 && res->retry_after_s >= 0 &&
        res->retry_after_s * 1000.0 > delay)
        delay = res->retry_after_s * 1000.0;
    elapsed = util_mono_ms() - d->started_ms;
    if (elapsed + delay > h->cfg->webhook_max_total_s * 1000.0) {
        rlog_error(job_id(d->job), "%s to %s failed (attempt %d): %s; no time left within "
                   "WEBHOOK_MAX_TOTAL_S=%d, giving up",
                   kind, d->url_log, d->attempt, why, h->cfg->webhook_max_total_s);
        finish(d, "failed");
        return;
    }
    rlog_warn(job_id(d->job), "%s to %s failed (attempt %d of %d): %s; retrying in %.1f s",
              kind, d->url_log, d->attempt, h->cfg->webhook_retries, why, delay / 1000);
    hs->state = "retrying";
    {
        struct timeval tv;
        tv.tv_sec = (time_t)(delay / 1000);
        tv.tv_usec = (suseconds_t)((delay - tv.tv_sec * 1000.0) * 1000);
        evtimer_add(d->timer, &tv);
    }
}

static void
attempt(struct delivery *d)
{
    struct hooks *h = d->h;
    struct job_hook_status *hs = job_hook(d->job);
    struct httpc_request rq;
    char hid[200], hts[64], hsig[200], sig[120];
    const char *headers[4] = {NULL, NULL, NULL, NULL};
    long long now_s = util_epoch_ms() / 1000;

    d->attempt++;
    hs->attempts++;
    met_webhook_attempt();
    hs->state = "delivering";
    memset(&rq, 0, sizeof(rq));
    rq.method = "POST";
    rq.url = d->url;
    rq.content_type = "application/json";
    rq.body = d->bodies[d->cur];
    rq.body_len = d->lens[d->cur];
    rq.timeout_ms = (long)h->cfg->webhook_timeout_s * 1000;
    rq.connect_timeout_ms = rq.timeout_ms;
    rq.max_body = 64 * 1024;
    if (d->v2) {
        /* Signed per attempt: the timestamp is part of the signature. */
        hook_sign(h->key, h->keylen, job_id(d->job), now_s, d->bodies[d->cur],
                  d->lens[d->cur], sig, sizeof(sig));
        snprintf(hid, sizeof(hid), "webhook-id: %s", job_id(d->job));
        snprintf(hts, sizeof(hts), "webhook-timestamp: %lld", now_s);
        snprintf(hsig, sizeof(hsig), "webhook-signature: %s", sig);
        headers[0] = hid;
        headers[1] = hts;
        headers[2] = hsig;
        rq.headers = headers;
    }
    d->call = httpc_start(h->http, &rq, on_attempt, d);
    if (d->call == NULL) {
        snprintf(hs->last_error, sizeof(hs->last_error), "could not start the request");
        rlog_error(job_id(d->job), "webhook to %s: could not start the request", d->url_log);
        finish(d, "failed");
    }
}

static void
on_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    attempt(arg);
}

static void
on_job_event(struct job *job, enum job_event ev, const void *data, void *arg)
{
    struct delivery *d = arg;

    (void)job;
    if (ev != JE_DONE)
        return;
    build_bodies(d, data);
    job_unwatch(d->watch);
    d->watch = NULL;
    d->started_ms = util_mono_ms();
    if (d->n_bodies == 0) {
        finish(d, "delivered"); /* nothing to send: a success without images */
        return;
    }
    attempt(d);
}

void
hook_start(struct hooks *h, struct job *job, int v2, const char *url)
{
    struct delivery *d = xcalloc(1, sizeof(*d));
    struct job_hook_status *hs = job_hook(job);

    d->h = h;
    d->job = job;
    d->v2 = v2;
    d->url = xstrdup(url);
    hook_url_for_log(url, d->url_log, sizeof(d->url_log));
    d->timer = evtimer_new(h->base, on_timer, d);
    d->next = h->list;
    h->list = d;
    h->pending++;
    hs->kind = v2 ? "v2" : "v1";
    hs->state = "pending";
    hs->pending = 1;
    if (!v2)
        rlog_warn(job_id(job), "the \"webhook\" field is deprecated; use \"webhook_v2\"");
    d->watch = job_watch(job, on_job_event, d);
}

int
hooks_pending(const struct hooks *h)
{
    return h != NULL ? h->pending : 0;
}

struct hooks *
hooks_new(struct event_base *base, struct httpc *http, const struct config *cfg,
          char *err, size_t errlen)
{
    struct hooks *h = xcalloc(1, sizeof(*h));
    const char *s = cfg->webhook_secret != NULL ? cfg->webhook_secret : "";
    long n;

    h->base = base;
    h->http = http;
    h->cfg = cfg;
    /* Standard Webhooks secrets are "whsec_" + base64; comfyui-api takes the
     * bare base64. Accept both. */
    if (strncmp(s, "whsec_", 6) == 0)
        s += 6;
    if (strlen(s) / 4 * 3 + 3 > sizeof(h->key)) {
        snprintf(err, errlen, "WEBHOOK_SECRET is too long");
        free(h);
        return NULL;
    }
    n = b64_decode(s, strlen(s), h->key);
    if (n < 0) {
        snprintf(err, errlen, "WEBHOOK_SECRET is not base64 (optionally prefixed whsec_)");
        free(h);
        return NULL;
    }
    h->keylen = (size_t)n;
    return h;
}

void
hooks_free(struct hooks *h)
{
    if (h == NULL)
        return;
    while (h->list != NULL) {
        struct delivery *d = h->list;
        rlog_error(job_id(d->job), "webhook to %s abandoned at shutdown", d->url_log);
        finish(d, "failed");
    }
    free(h);
}
