/* salad.c - SaladCloud's instance deletion cost (see salad.h).
 *
 * Owns one timer and at most one PUT in flight to the instance metadata
 * service. The queue depth is sampled once a second and sent only when it
 * changed, so a burst of jobs costs one call, and a slow or absent metadata
 * service (short timeouts) never piles up requests. */
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "httpc.h"
#include "log.h"
#include "salad.h"
#include "util.h"

struct salad {
    struct httpc *http;
    const struct config *cfg;
    int (*depth)(void *);
    void *arg;
    int sent;    /* last value the service accepted, -1 none */
    int sending; /* value in flight */
    struct httpc_call *call;
    struct event *timer;
    int failures;
};

static const char *const salad_vars[] = {
    "SALAD_CONTAINER_GROUP_ID", "SALAD_CONTAINER_GROUP_NAME", "SALAD_MACHINE_ID",
    "SALAD_ORGANIZATION_ID", "SALAD_ORGANIZATION_NAME", "SALAD_PROJECT_ID",
    "SALAD_PROJECT_NAME", "SALAD_INSTANCE_ID", NULL,
};

static void
on_put(struct httpc_result *res, void *arg)
{
    struct salad *s = arg;

    s->call = NULL;
    if (res->ok && res->status >= 200 && res->status < 300) {
        s->sent = s->sending;
        s->failures = 0;
        log_debug("salad: deletion cost set to %d", s->sent);
        return;
    }
    /* Logged once per outage: the metadata service may simply be absent. */
    if (s->failures++ == 0)
        log_warn("salad: could not set the deletion cost: %s",
                 !res->ok ? (res->error != NULL ? res->error : "no answer") : "unexpected status");
}

static void
on_timer(evutil_socket_t fd, short what, void *arg)
{
    struct salad *s = arg;
    struct httpc_request rq;
    const char *headers[] = {"Metadata: true", NULL};
    char url[512], body[64];
    int d;

    (void)fd;
    (void)what;
    d = s->depth(s->arg);
    if (s->call != NULL || d == s->sent)
        return;
    snprintf(url, sizeof(url), "%s/v1/deletion-cost", s->cfg->salad_metadata_url);
    snprintf(body, sizeof(body), "{\"deletion_cost\":%d}", d);
    memset(&rq, 0, sizeof(rq));
    rq.method = "PUT";
    rq.url = url;
    rq.content_type = "application/json";
    rq.body = body;
    rq.body_len = strlen(body);
    rq.headers = headers;
    rq.timeout_ms = 2000;
    rq.connect_timeout_ms = 1000;
    rq.max_body = 64 * 1024;
    s->sending = d;
    s->call = httpc_start(s->http, &rq, on_put, s);
}

struct salad *
salad_new(struct event_base *base, struct httpc *http, const struct config *cfg,
          int (*depth)(void *), void *arg)
{
    struct salad *s;
    struct timeval tv = {1, 0};
    int i, found = 0;

    for (i = 0; salad_vars[i] != NULL; i++)
        if (getenv(salad_vars[i]) != NULL && *getenv(salad_vars[i]) != '\0')
            found = 1;
    if (!found)
        return NULL;
    s = xcalloc(1, sizeof(*s));
    s->http = http;
    s->cfg = cfg;
    s->depth = depth;
    s->arg = arg;
    s->sent = -1;
    s->timer = event_new(base, -1, EV_PERSIST, on_timer, s);
    event_add(s->timer, &tv);
    log_info("SaladCloud detected: the deletion cost follows the queue depth (%s)",
             cfg->salad_metadata_url);
    return s;
}

void
salad_free(struct salad *s)
{
    if (s == NULL)
        return;
    if (s->call != NULL)
        httpc_cancel(s->call);
    event_free(s->timer);
    free(s);
}
