/* life.h - ComfyUI's lifecycle as the sidecar sees it: starting (launched,
 * not answering yet), up, down; warm or not; and the sidecar's own shutdown.
 * Decides readiness, restarts, the warmup, and the exit status. */
#ifndef SIDECAR_LIFE_H
#define SIDECAR_LIFE_H

#include <stddef.h>

#include "comfy_ws.h"

struct event_base;
struct config;
struct httpc;
struct jobs;
struct ws;
struct life;

struct life_status {
    const char *comfyui; /* "starting", "up", "down" */
    int ws_connected;
    int warm;
    int ever_warm;
    int stopping;
    int queue_depth;
    int in_flight;
};

struct life *life_new(struct event_base *base, const struct config *cfg,
                      struct httpc *http, struct jobs *jobs);

/* The websocket, once started (ws_start needs life_on_ws first). */
void life_set_ws(struct life *l, struct ws *ws);

/* Called each time ComfyUI (re)starts answering. */
void life_set_up_cb(struct life *l, void (*fn)(void *), void *arg);

/* Before exiting, wait while pending(arg) > 0 (webhooks in delivery). */
void life_set_drain(struct life *l, int (*pending)(void *), void *arg);

/* The ws handler: tracks the connection, then passes events to the jobs. */
void life_on_ws(enum ws_kind kind, const unsigned char *data, size_t len,
                void *arg);

/* Load the warmup graph, launch ComfyUI (if CMD) and start checking it.
 * Returns -1 with a message in err on a configuration problem. */
int life_start(struct life *l, char *err, size_t errlen);

/* 1 when /prompt may be submitted (ComfyUI answered and we are not
 * stopping); otherwise *retry_after_s says when to come back. */
int life_accepting(const struct life *l, int *retry_after_s);

void life_status(const struct life *l, struct life_status *st);

/* Stop: fail jobs in flight, stop the child, leave the event loop. The
 * process then exits with `code` (the first shutdown's code wins). */
void life_shutdown(struct life *l, int code);

int life_exit_code(const struct life *l);

void life_free(struct life *l);

#endif
