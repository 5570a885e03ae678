/* job.h - generation jobs: one per prompt submitted to ComfyUI.
 *
 * Owns the jobs in flight and the finished ones kept for status queries,
 * their state machine (submitting -> queued -> running -> collecting ->
 * completed | failed | cancelled), the routing of ComfyUI's websocket
 * events to them by prompt_id, the fetching of their outputs (/history,
 * /view), cancellation (/queue delete, /interrupt), and the recovery of
 * their state from /queue and /history when the websocket drops or goes
 * quiet. Interested parties (the waiting client, event streams, webhooks)
 * watch a job and are told of its events; every job ends in exactly one
 * JE_DONE. */
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
struct job_watch;

enum job_status { JOB_QUEUED, JOB_RUNNING, JOB_COMPLETED, JOB_FAILED, JOB_CANCELLED };

struct job_output {
    char *node_id;
    char *kind;      /* the history key it came under: images, gifs, audio, ... */
    const char *mime; /* from the file name's extension */
    char *filename;
    char *subfolder;
    char *type;      /* ComfyUI's folder: output, temp, input */
    unsigned char *data; /* only during JE_DONE (and in fetch results) */
    size_t len;
};

struct job_result {
    int status;       /* 200, or the HTTP status of the error (409 = cancelled) */
    json_t *error;    /* error body ({"error", "location", ...}) if != 200 */
    const char *id;   /* the request id */
    json_t *prompt;   /* the graph as submitted */
    json_t *input;    /* template input with defaults, or NULL */
    struct job_output *outputs;
    size_t n_outputs;
    json_t *stats;    /* comfyui-api's stats object */
    json_t *texts;    /* {"<node>": ["text", ...]} from text outputs, or NULL */
};

enum job_event {
    JE_QUEUED,   /* data: int *position; ComfyUI accepted the prompt */
    JE_STARTED,  /* data: NULL */
    JE_PROGRESS, /* data: const struct job_progress * */
    JE_PREVIEW,  /* data: const struct job_preview * */
    JE_DONE,     /* data: const struct job_result *; always the last event */
};

struct job_progress {
    const char *node;
    int value, max;
    double overall; /* 0..1, share of the graph done */
};

struct job_preview {
    const char *node; /* may be NULL when ComfyUI did not say */
    const char *mime;
    const unsigned char *data;
    size_t len;
};

/* Called on the main thread; data is borrowed for the call. A watcher may
 * unwatch itself (or others) and may cancel jobs from inside the call. */
typedef void (*job_watch_fn)(struct job *job, enum job_event ev,
                             const void *data, void *arg);

/* Called when a job operation finds ComfyUI unreachable (connection refused,
 * timeout), so the owner can update its idea of ComfyUI's state. */
typedef void (*jobs_unreachable_fn)(const char *why, void *arg);

/* Called when a job is found hung (no progress for HANG_TIMEOUT_S), after
 * that job has been answered 504, so the owner can restart ComfyUI. */
typedef void (*jobs_hang_fn)(const char *why, void *arg);

struct jobs *jobs_new(struct event_base *base, struct httpc *http,
                      const struct config *cfg, const char *client_id);
void jobs_free(struct jobs *jobs);

void jobs_set_unreachable_cb(struct jobs *jobs, jobs_unreachable_fn fn,
                             void *arg);

void jobs_set_hang_cb(struct jobs *jobs, jobs_hang_fn fn, void *arg);

/* Seconds a client turned away for a full queue should wait: the recent
 * average job time times the jobs in excess. */
int jobs_retry_after_s(const struct jobs *jobs, int excess);

/* Submit a graph (borrowed; a reference is taken) under request id `id`;
 * input (borrowed, may be NULL) is the template input to report back.
 * t_received_ms is when the request arrived (util_mono_ms), for stats.
 * Returns NULL with *conflict set when a job with this id is in flight.
 * Events start on a later turn of the loop, never inside this call. */
struct job *job_submit(struct jobs *jobs, const char *id, json_t *prompt,
                       json_t *input, double t_received_ms, int *conflict);

struct job_watch *job_watch(struct job *job, job_watch_fn fn, void *arg);
void job_unwatch(struct job_watch *w);

/* Cancel a job in flight: delete it from ComfyUI's queue or interrupt it.
 * Its JE_DONE comes at once with status 409. -1 if it already finished. */
int job_cancel(struct job *job, const char *why);

/* The job with this request id, in flight or kept after finishing. */
struct job *jobs_find(struct jobs *jobs, const char *id);

const char *job_id(const struct job *job);
enum job_status job_get_status(const struct job *job);
int job_finished(const struct job *job);

/* The job's status document for GET /prompt/{id} (new reference). */
json_t *job_status_json(const struct job *job);

/* Result of a finished job (outputs without data); NULL while in flight. */
const struct job_result *job_last_result(const struct job *job);

/* Webhook bookkeeping kept on the job so its status can show it; a job
 * with a delivery in progress is not dropped from the history. */
struct job_hook_status {
    const char *kind; /* "v1" or "v2"; NULL = none */
    const char *state;
    int attempts;
    long last_status;
    char last_error[200];
    int pending;
};
struct job_hook_status *job_hook(struct job *job);

struct conv;
struct conv_opts;

/* 1: outputs may be read from OUTPUT_DIR directly (it is ComfyUI's output
 * folder on this host); 0: always through /view. */
void jobs_set_local_outputs(struct jobs *jobs, int on);

/* The converter used for convert_output (set once at start). */
void jobs_set_converter(struct jobs *jobs, struct conv *conv);

/* Re-encode the job's image outputs before they are delivered (called right
 * after job_submit; opts copied). */
void job_set_convert(struct job *job, const struct conv_opts *opts);

/* Fetch a finished job's outputs again from ComfyUI (/view). done gets the
 * outputs with data (borrowed) or NULL and an error message. */
typedef void (*job_fetch_fn)(const struct job_output *outs, size_t n,
                             const char *error, void *arg);
void job_fetch_outputs(struct jobs *jobs, const struct job *job,
                       job_fetch_fn done, void *arg);

/* Feed one websocket event (wired as the ws handler's continuation). */
void jobs_on_ws(struct jobs *jobs, enum ws_kind kind,
                const unsigned char *data, size_t len);

/* Fail every job in flight with this status and message. */
void jobs_fail_all(struct jobs *jobs, int status, const char *message);

int jobs_in_flight(const struct jobs *jobs);

/* Last queue_remaining ComfyUI reported on the websocket. */
int jobs_queue_depth(const struct jobs *jobs);

#endif
