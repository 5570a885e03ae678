/* job.h - generation jobs: one per prompt submitted to ComfyUI.
 *
 * Owns the registry of jobs in flight and their state machine
 * (SUBMITTING -> QUEUED -> RUNNING -> COLLECTING -> finished), routes
 * ComfyUI's websocket events to them by prompt_id, fetches their outputs
 * (/history, /view), and recovers their state from /queue and /history when
 * the websocket drops or goes quiet. Every job ends in exactly one call of
 * its done callback, after which the job is freed. */
#ifndef SIDECAR_JOB_H
#define SIDECAR_JOB_H

#include <jansson.h>
#include <stddef.h>

#include "comfy_ws.h"

struct event_base;
struct httpc;
struct config;
struct jobs;
struct job;

struct job_output {
    char *node_id;
    char *filename;
    char *subfolder;
    char *type;
    unsigned char *data;
    size_t len;
};

struct job_result {
    int status;       /* 200, or the HTTP status of the error */
    json_t *error;    /* error body ({"error", "location", ...}) if != 200 */
    const char *id;   /* the request id */
    json_t *prompt;   /* the graph as submitted */
    struct job_output *outputs;
    size_t n_outputs;
    json_t *stats;    /* comfyui-api's stats object */
};

/* Called once per job on the main thread. res and everything it points to
 * are borrowed and freed after the call returns. */
typedef void (*job_done_fn)(const struct job_result *res, void *arg);

/* Called when a job operation finds ComfyUI unreachable (connection refused,
 * timeout), so the owner can update its idea of ComfyUI's state. */
typedef void (*jobs_unreachable_fn)(const char *why, void *arg);

struct jobs *jobs_new(struct event_base *base, struct httpc *http,
                      const struct config *cfg, const char *client_id);
void jobs_free(struct jobs *jobs);

void jobs_set_unreachable_cb(struct jobs *jobs, jobs_unreachable_fn fn,
                             void *arg);

/* Submit a graph (borrowed; a reference is taken) under request id `id`.
 * t_received_ms is when the request arrived (util_mono_ms), for stats.
 * Never calls done synchronously. */
struct job *job_submit(struct jobs *jobs, const char *id, json_t *prompt,
                       double t_received_ms, job_done_fn done, void *arg);

/* The waiter is gone: the job goes on but done will not be called. */
void job_detach(struct job *job);

/* Feed one websocket event (wired as the ws handler's continuation). */
void jobs_on_ws(struct jobs *jobs, enum ws_kind kind,
                const unsigned char *data, size_t len);

/* Fail every job in flight with this status and message. */
void jobs_fail_all(struct jobs *jobs, int status, const char *message);

int jobs_in_flight(const struct jobs *jobs);

/* Last queue_remaining ComfyUI reported on the websocket. */
int jobs_queue_depth(const struct jobs *jobs);

#endif
