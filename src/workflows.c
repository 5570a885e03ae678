/* workflows.c - templates, object_info and the OpenAPI document, kept
 * current (see workflows.h).
 *
 * Owns the loaded template set, the last /object_info ComfyUI gave us, the
 * refresh timer and the cached OpenAPI document. Enum lists (samplers,
 * schedulers, checkpoints) therefore follow the running ComfyUI instead of
 * being frozen when the sidecar was built or started. */
#include <event2/event.h>
#include <event2/http.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "httpc.h"
#include "log.h"
#include "openapi.h"
#include "template.h"
#include "util.h"
#include "workflows.h"

#define REFRESH_S 300 /* models and nodes can be added while ComfyUI runs */

struct wf {
    struct event_base *base;
    struct httpc *http;
    const struct config *cfg;
    struct tpl_set *set;
    json_t *object_info;
    json_t *openapi;
    struct httpc_call *call;
    struct event *timer;
    int fetches; /* GET /models in progress */
    struct models *models;
};

void
wf_reload(struct wf *wf)
{
    struct tpl_set *set = tpl_load_dir(wf->cfg->workflow_dir);
    size_t i;

    for (i = 0; i < tpl_error_count(set); i++)
        log_error("workflow template skipped: %s", tpl_error_at(set, i));
    log_info("loaded %zu workflow template(s) from %s (%zu skipped)", tpl_count(set),
             wf->cfg->workflow_dir, tpl_error_count(set));
    for (i = 0; i < tpl_count(set); i++)
        log_debug("workflow endpoint: POST /workflow/%s", tpl_path(tpl_at(set, i)));
    /* Renders copy what they return, so the old set can go at once. */
    tpl_set_free(wf->set);
    wf->set = set;
    json_decref(wf->openapi);
    wf->openapi = NULL;
}

static void
on_object_info(struct httpc_result *res, void *arg)
{
    struct wf *wf = arg;
    json_error_t jerr;
    json_t *root;

    wf->call = NULL;
    if (!res->ok || res->status != 200) {
        log_warn("could not read ComfyUI's /object_info: %s; enum lists stay as they were",
                 !res->ok ? (res->error != NULL ? res->error : "no answer")
                          : "unexpected status");
        return;
    }
    /* Seeds declare a maximum of 2^64-1, beyond jansson's integers. */
    root = json_loadb((const char *)res->body, res->body_len, JSON_DECODE_INT_AS_REAL, &jerr);
    if (!json_is_object(root)) {
        log_warn("ComfyUI's /object_info is not a JSON object: %s", jerr.text);
        json_decref(root);
        return;
    }
    json_decref(wf->object_info);
    wf->object_info = root;
    json_decref(wf->openapi);
    wf->openapi = NULL;
    log_info("read ComfyUI's node catalogue: %zu node classes", json_object_size(root));
}

static void
comfy_url(const struct wf *wf, const char *path, char *url, size_t len)
{
    if (strchr(wf->cfg->direct_address, ':') != NULL)
        snprintf(url, len, "http://[%s]:%d%s", wf->cfg->direct_address, wf->cfg->comfy_port,
                 path);
    else
        snprintf(url, len, "http://%s:%d%s", wf->cfg->direct_address, wf->cfg->comfy_port, path);
}

void
wf_refresh_object_info(struct wf *wf)
{
    struct httpc_request rq;
    char url[400];

    if (wf->call != NULL)
        return;
    comfy_url(wf, "/object_info", url, sizeof(url));
    memset(&rq, 0, sizeof(rq));
    rq.method = "GET";
    rq.url = url;
    rq.timeout_ms = (long)wf->cfg->comfy_timeout_s * 1000;
    rq.max_body = 256u << 20;
    wf->call = httpc_start(wf->http, &rq, on_object_info, wf);
}

static void
on_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    /* Only worth asking when we have asked successfully before: before
     * that, ComfyUI's coming up triggers the first fetch. */
    if (((struct wf *)arg)->object_info != NULL)
        wf_refresh_object_info(arg);
}

struct wf *
wf_new(struct event_base *base, struct httpc *http, const struct config *cfg)
{
    struct wf *wf = xcalloc(1, sizeof(*wf));
    struct timeval tv = {REFRESH_S, 0};

    wf->base = base;
    wf->http = http;
    wf->cfg = cfg;
    wf->timer = event_new(base, -1, EV_PERSIST, on_timer, wf);
    event_add(wf->timer, &tv);
    wf_reload(wf);
    return wf;
}

/* ---- GET /models ---------------------------------------------------------------- */

struct models {
    struct models *link;
    struct wf *wf;
    json_t *result;  /* {type: [files]} being filled */
    json_t *types;   /* still to ask */
    size_t next;
    wf_models_fn done;
    void *arg;
    struct httpc_call *call;
};

static void models_step(struct models *mo);

static void
models_end(struct models *mo, const char *error)
{
    wf_models_fn done = mo->done;
    void *arg = mo->arg;
    json_t *r = error == NULL ? json_incref(mo->result) : NULL;

    struct models **pm = &mo->wf->models;

    while (*pm != NULL && *pm != mo)
        pm = &(*pm)->link;
    if (*pm == mo)
        *pm = mo->link;
    mo->wf->fetches--;
    json_decref(mo->result);
    json_decref(mo->types);
    free(mo);
    done(r, error, arg);
}

static void
on_models(struct httpc_result *res, void *arg)
{
    struct models *mo = arg;
    json_t *root;

    mo->call = NULL;
    if (!res->ok || res->status != 200) {
        char why[300];
        snprintf(why, sizeof(why), "ComfyUI's /models failed: %s",
                 !res->ok ? (res->error != NULL ? res->error : "no answer") : "unexpected status");
        models_end(mo, why);
        return;
    }
    root = json_loadb((const char *)res->body, res->body_len, 0, NULL);
    if (mo->types == NULL) {
        if (!json_is_array(root)) {
            json_decref(root);
            models_end(mo, "ComfyUI's /models is not a list");
            return;
        }
        mo->types = root;
    } else {
        const char *type = json_string_value(json_array_get(mo->types, mo->next - 1));
        json_object_set_new(mo->result, type, json_is_array(root) ? root : json_array());
        if (!json_is_array(root))
            json_decref(root);
    }
    models_step(mo);
}

/* One GET to ComfyUI for the listing; the answer goes to on_models. */
static void
models_get(struct models *mo, const char *path, size_t max_body)
{
    struct httpc_request rq;
    char url[600];

    comfy_url(mo->wf, path, url, sizeof(url));
    memset(&rq, 0, sizeof(rq));
    rq.method = "GET";
    rq.url = url;
    rq.timeout_ms = (long)mo->wf->cfg->comfy_timeout_s * 1000;
    rq.max_body = max_body;
    mo->call = httpc_start(mo->wf->http, &rq, on_models, mo);
    if (mo->call == NULL)
        models_end(mo, "could not start a request to ComfyUI");
}

static void
models_step(struct models *mo)
{
    char path[400];
    const char *type;
    char *enc;

    if (mo->next >= json_array_size(mo->types)) {
        models_end(mo, NULL);
        return;
    }
    type = json_string_value(json_array_get(mo->types, mo->next++));
    if (type == NULL) {
        models_step(mo);
        return;
    }
    enc = evhttp_uriencode(type, -1, 0);
    snprintf(path, sizeof(path), "/models/%s", enc);
    free(enc);
    models_get(mo, path, 16u << 20);
}

static void
on_models_start(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    models_get(arg, "/models", 1u << 20);
}

void
wf_fetch_models(struct wf *wf, wf_models_fn done, void *arg)
{
    struct models *mo = xcalloc(1, sizeof(*mo));

    mo->wf = wf;
    mo->result = json_object();
    mo->done = done;
    mo->arg = arg;
    wf->fetches++;
    mo->link = wf->models;
    wf->models = mo;
    event_base_once(wf->base, -1, EV_TIMEOUT, on_models_start, mo, NULL);
}

const struct tpl_set *
wf_set(const struct wf *wf)
{
    return wf->set;
}

const json_t *
wf_object_info(const struct wf *wf)
{
    return wf->object_info;
}

json_t *
wf_openapi(struct wf *wf)
{
    /* Relative server URL: "Try it out" then targets whatever host and
     * port served the document, behind any proxy. */
    if (wf->openapi == NULL)
        wf->openapi = openapi_document(wf->set, wf->object_info, "/");
    return wf->openapi;
}

void
wf_free(struct wf *wf)
{
    if (wf == NULL)
        return;
    if (wf->call != NULL)
        httpc_cancel(wf->call);
    /* Model listings still in flight are dropped unanswered: their
     * requests were answered when the HTTP server stopped. */
    while (wf->models != NULL) {
        struct models *mo = wf->models;
        wf->models = mo->link;
        if (mo->call != NULL)
            httpc_cancel(mo->call);
        json_decref(mo->result);
        json_decref(mo->types);
        free(mo);
    }
    event_free(wf->timer);
    tpl_set_free(wf->set);
    json_decref(wf->object_info);
    json_decref(wf->openapi);
    free(wf);
}
