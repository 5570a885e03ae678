/* workflows.c - templates, object_info and the OpenAPI document, kept
 * current (see workflows.h).
 *
 * Owns the loaded template set, the last /object_info ComfyUI gave us, the
 * refresh timer and the cached OpenAPI document. Enum lists (samplers,
 * schedulers, checkpoints) therefore follow the running ComfyUI instead of
 * being frozen when the sidecar was built or started. */
#include <event2/event.h>
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

void
wf_refresh_object_info(struct wf *wf)
{
    struct httpc_request rq;
    char url[400];

    if (wf->call != NULL)
        return;
    if (strchr(wf->cfg->direct_address, ':') != NULL)
        snprintf(url, sizeof(url), "http://[%s]:%d/object_info", wf->cfg->direct_address,
                 wf->cfg->comfy_port);
    else
        snprintf(url, sizeof(url), "http://%s:%d/object_info", wf->cfg->direct_address,
                 wf->cfg->comfy_port);
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
    event_free(wf->timer);
    tpl_set_free(wf->set);
    json_decref(wf->object_info);
    json_decref(wf->openapi);
    free(wf);
}
