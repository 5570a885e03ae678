/* job.c - generation jobs and their conversation with ComfyUI (see job.h).
 *
 * Owns every job (in flight, then kept a while for status queries), the
 * watchers of each job, the one reconcile timer, and the mapping from
 * ComfyUI's prompt_id to jobs. We choose each prompt_id ourselves before
 * submitting, so websocket events that overtake the POST /prompt answer
 * still find their job. Completion is ComfyUI's final `executing` with
 * node null; when the websocket is down or quiet, the same state is
 * recovered from /queue (still there?) and /history (finished?). */
#include <event2/event.h>
#include <event2/http.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <fcntl.h>
#include <sys/queue.h>
#include <sys/stat.h>
#include <unistd.h>

#include "comfy_msg.h"
#include "convert.h"
#include "config.h"
#include "httpc.h"
#include "job.h"
#include "log.h"
#include "mem.h"
#include "metrics.h"
#include "request.h"
#include "util.h"
#include "utf8.h"

enum job_state {
    JS_SUBMITTING, /* POST /prompt in flight */
    JS_QUEUED,     /* accepted by ComfyUI, not started */
    JS_RUNNING,    /* ComfyUI is executing it */
    JS_COLLECTING, /* finished in ComfyUI: reading /history and /view */
};

struct job_watch {
    struct job_watch *next;
    struct job *job;
    job_watch_fn fn;
    void *arg;
    int dead;
};

struct job {
    TAILQ_ENTRY(job) link; /* jobs->list in flight, jobs->done after */
    struct jobs *jobs;
    char id[REQ_ID_MAX + 1];
    char prompt_id[64];
    json_t *prompt;
    json_t *input;
    enum job_state state;
    enum job_status status;
    int finished;
    struct httpc_call *call; /* at most one ComfyUI call per job */
    long long number;        /* ComfyUI's queue number, -1 until known */

    int exec_done;       /* saw executing{node:null} or reconcile said so */
    json_t *exec_error;  /* data of execution_error / execution_interrupted */
    int interrupted;
    int started_sent;
    int cancel_pending;  /* cancelled while POST /prompt was in flight */
    int cancelling;      /* ComfyUI has been asked to drop it */
    int early_start;     /* ComfyUI started it before answering POST /prompt */
    struct httpc_call *cancel_call;
    int abort_status;    /* 409 cancelled, 504 timed out or hung */
    const char *abort_type;
    char cancel_why[300];
    double t_accepted;   /* util_mono_ms when ComfyUI queued it */
    double t_started;    /* util_mono_ms when it started running */
    double t_first_start; /* first sign of execution, even before JE_QUEUED */

    struct job_output *outputs;
    size_t n_outputs, next_fetch;
    struct job_result result; /* valid once finished */

    double t_received, t_submitted, t_exec_done;
    long long exec_start_ms, exec_end_ms;
    long long created_ms, started_ms, finished_ms;
    json_t *node_starts;
    json_t *texts;            /* text outputs, by node */
    struct conv_opts *convert; /* convert_output, or NULL */
    struct conv_task *conv_task;
    size_t next_convert;
    int n_cached;
    char prog_node[64];
    int prog_value, prog_max;
    double last_progress; /* util_mono_ms of the last sign of life */

    struct job_watch *watches;
    int dispatching;
    struct job_hook_status hook;
    struct event *defer; /* only for failures that must not be synchronous */
};

struct fetch;

TAILQ_HEAD(job_list, job);

struct jobs {
    struct event_base *base;
    struct httpc *http;
    const struct config *cfg;
    char client_id[64];
    char base_url[300];
    struct job_list list; /* in flight */
    int n;
    struct job_list done; /* finished, oldest first */
    int n_done;
    struct fetch *fetches;
    struct conv *conv;
    int local_outputs; /* OUTPUT_DIR is ComfyUI's output folder, here */
    struct event *idle; /* armed when the last job in flight ends */
    /* Prompts cancelled while queued: if ComfyUI's worker took one anyway
     * (it raced our /queue delete), it is interrupted when it starts. */
    char cancelled_pids[16][64];
    int cancelled_next;
    int queue_depth;
    int ws_up;
    double last_ws_up;
    double last_ws_msg;
    struct event *tick;
    struct httpc_call *queue_call;
    jobs_unreachable_fn unreachable;
    void *unreachable_arg;
    jobs_hang_fn hang;
    void *hang_arg;
    struct event *deadlines;
    double avg_ms; /* moving average of a job's time from submission to end */
};

static void job_advance(struct job *job);
static void reconcile(struct jobs *jobs);
static int job_abort(struct job *job, int status, const char *type, const char *why);
static void evict(struct jobs *jobs, int expired_only);

/* ---- small helpers ---------------------------------------------------- */

static json_t *
err_body(const char *location, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static json_t *
err_body(const char *location, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    return json_pack("{s:s, s:s}", "error", utf8_fix(msg), "location", location);
}

static long
timeout_ms(const struct jobs *jobs)
{
    return (long)jobs->cfg->comfy_timeout_s * 1000L;
}

static struct httpc_call *
comfy_call(struct jobs *jobs, const char *method, const char *path,
           const char *body, size_t max_body, httpc_done_cb cb, void *arg)
{
    char url[2048];
    struct httpc_request rq;

    snprintf(url, sizeof(url), "%s%s", jobs->base_url, path);
    memset(&rq, 0, sizeof(rq));
    rq.method = method;
    rq.url = url;
    if (body != NULL) {
        rq.content_type = "application/json";
        rq.body = body;
        rq.body_len = strlen(body);
    }
    rq.timeout_ms = timeout_ms(jobs);
    rq.connect_timeout_ms = 5000;
    rq.max_body = max_body;
    return httpc_start(jobs->http, &rq, cb, arg);
}

/* A transport failure (no HTTP answer at all) means ComfyUI is gone or
 * wedged; tell the owner so it can update readiness. */
static void
note_unreachable(struct jobs *jobs, const struct httpc_result *res)
{
    /* A timeout is a slow ComfyUI, not a missing one: that is for the hang
     * policy, not for readiness. */
    if (!res->ok && !res->timed_out && jobs->unreachable != NULL)
        jobs->unreachable(res->error != NULL ? res->error : "no answer",
                          jobs->unreachable_arg);
}

static struct job *
find_job(struct jobs *jobs, const char *prompt_id)
{
    struct job *j;

    TAILQ_FOREACH(j, &jobs->list, link)
        if (strcmp(j->prompt_id, prompt_id) == 0)
            return j;
    return NULL;
}

/* Release what one output owns (its strings and data). */
static void
output_clear(struct job_output *o)
{
    free(o->node_id);
    free(o->kind);
    free(o->filename);
    free(o->subfolder);
    free(o->type);
    free(o->data);
    memset(o, 0, sizeof(*o));
}

static void
free_outputs_data(struct job *job)
{
    size_t i;

    for (i = 0; i < job->n_outputs; i++) {
        free(job->outputs[i].data);
        job->outputs[i].data = NULL;
        job->outputs[i].len = 0;
    }
}

static void
job_free(struct job *job)
{
    size_t i;
    struct job_watch *w;

    for (i = 0; i < job->n_outputs; i++)
        output_clear(&job->outputs[i]);
    free(job->outputs);
    while ((w = job->watches) != NULL) {
        job->watches = w->next;
        free(w);
    }
    json_decref(job->prompt);
    json_decref(job->input);
    json_decref(job->exec_error);
    json_decref(job->node_starts);
    json_decref(job->result.error);
    json_decref(job->result.stats);
    json_decref(job->texts);
    if (job->conv_task != NULL)
        conv_cancel(job->conv_task);
    free(job->convert);
    if (job->defer != NULL)
        event_free(job->defer);
    free(job);
}

/* ---- watchers ------------------------------------------------------------ */

static void
sweep_watches(struct job *job)
{
    struct job_watch **pw = &job->watches, *w;

    while ((w = *pw) != NULL) {
        if (w->dead) {
            *pw = w->next;
            free(w);
        } else {
            pw = &w->next;
        }
    }
}

static void
notify(struct job *job, enum job_event ev, const void *data)
{
    struct job_watch *w;

    job->dispatching++;
    for (w = job->watches; w != NULL; w = w->next)
        if (!w->dead)
            w->fn(job, ev, data, w->arg);
    job->dispatching--;
    if (job->dispatching == 0)
        sweep_watches(job);
}

struct job_watch *
job_watch(struct job *job, job_watch_fn fn, void *arg)
{
    struct job_watch *w = xcalloc(1, sizeof(*w)), **pw = &job->watches;

    w->job = job;
    w->fn = fn;
    w->arg = arg;
    /* Append: the first watcher (the waiting client) hears events first. */
    while (*pw != NULL)
        pw = &(*pw)->next;
    *pw = w;
    return w;
}

void
job_unwatch(struct job_watch *w)
{
    struct job *job;

    if (w == NULL)
        return;
    job = w->job;
    w->dead = 1;
    if (job->dispatching == 0)
        sweep_watches(job);
}

static int
has_live_watch(const struct job *job)
{
    const struct job_watch *w;

    for (w = job->watches; w != NULL; w = w->next)
        if (!w->dead)
            return 1;
    return 0;
}

static json_t *
build_stats(struct job *job)
{
    double now = util_mono_ms();
    double t_done = job->t_exec_done > 0 ? job->t_exec_done : now;
    long long dur = job->exec_end_ms > 0 && job->exec_start_ms > 0
                        ? job->exec_end_ms - job->exec_start_ms
                        : 0;

    return json_pack(
        "{s:{s:I, s:I, s:I, s:O}, s:f, s:f, s:f, s:i, s:f}", "comfy_execution",
        "start", (json_int_t)job->exec_start_ms, "end",
        (json_int_t)job->exec_end_ms, "duration", (json_int_t)dur, "nodes",
        job->node_starts, "preprocess_time", job->t_submitted - job->t_received,
        "comfy_round_trip_time", t_done - job->t_submitted, "postprocess_time",
        now - t_done, "upload_time", 0, "total_time", now - job->t_received);
}

/* Overall progress: the share of the graph's nodes done, the node running
 * counted by its steps. Nodes served from cache do not run at all. */
static double
overall(const struct job *job)
{
    int total = (int)json_object_size(job->prompt) - job->n_cached;
    int started = (int)json_object_size(job->node_starts);
    double frac = job->prog_max > 0 ? (double)job->prog_value / job->prog_max : 0;
    double o;

    if (total < 1)
        total = 1;
    o = ((started > 0 ? started - 1 : 0) + frac) / total;
    return o < 0 ? 0 : o > 0.99 ? 0.99 : o;
}

static int
queue_position(const struct job *job)
{
    const struct job *j;
    int pos = 0;

    TAILQ_FOREACH(j, &job->jobs->list, link) {
        /* Waiting ahead of it; the one running is not "ahead": 0 = next. */
        if (j != job && j->number >= 0 && j->state == JS_QUEUED && job->number >= 0 &&
            j->number < job->number)
            pos++;
    }
    return pos;
}

static void
mark_started(struct job *job)
{
    if (job->started_sent || job->finished)
        return;
    job->started_sent = 1;
    job->status = JOB_RUNNING;
    /* It may have started before ComfyUI answered POST /prompt. */
    job->t_started = job->t_first_start > 0 ? job->t_first_start : util_mono_ms();
    job->last_progress = util_mono_ms();
    job->started_ms = util_epoch_ms();
    notify(job, JE_STARTED, NULL);
}

/* End the job: exactly one JE_DONE, then keep it (without image data) for
 * status queries. error is stolen. */
static void
job_finish(struct job *job, int status, json_t *error)
{
    struct jobs *jobs = job->jobs;
    struct job_result *res = &job->result;

    if (job->finished) {
        json_decref(error);
        return;
    }
    if (job->call != NULL) {
        httpc_cancel(job->call);
        job->call = NULL;
    }
    if (job->cancel_call != NULL) {
        httpc_cancel(job->cancel_call);
        job->cancel_call = NULL;
    }
    if (job->conv_task != NULL) {
        conv_cancel(job->conv_task);
        job->conv_task = NULL;
    }
    TAILQ_REMOVE(&jobs->list, job, link);
    jobs->n--;
    job->finished = 1;
    job->finished_ms = util_epoch_ms();
    job->status = status == 200   ? JOB_COMPLETED
                  : status == 409 ? JOB_CANCELLED
                                  : JOB_FAILED;
    memset(res, 0, sizeof(*res));
    res->status = status;
    res->error = error;
    res->id = job->id;
    res->prompt = job->prompt;
    res->input = job->input;
    if (status == 200) {
        res->outputs = job->outputs;
        res->n_outputs = job->n_outputs;
        res->texts = job->texts;
    }
    res->stats = build_stats(job);
    if (status == 200) {
        double ms = util_mono_ms() - job->t_received;
        jobs->avg_ms = jobs->avg_ms == 0 ? ms : 0.8 * jobs->avg_ms + 0.2 * ms;
    }
    if (status == 200)
        rlog_info(job->id, "job done: prompt_id=%s %zu output(s) in %.1f ms",
                  job->prompt_id, job->n_outputs,
                  util_mono_ms() - job->t_received);
    else {
        char esc[600];
        json_t *m = json_object_get(error, "error");
        const char *msg = json_is_string(m) ? json_string_value(m) : "?";
        rlog_warn(job->id, "job %s: prompt_id=%s status=%d: %s",
                  status == 409 ? "cancelled" : "failed", job->prompt_id, status,
                  log_escape(esc, sizeof(esc), msg, strlen(msg)));
    }
    {
        double now = util_mono_ms();
        double queue_s = job->t_started > 0 && job->t_accepted > 0
                             ? (job->t_started > job->t_accepted ? job->t_started - job->t_accepted : 0) / 1000
                             : -1;
        double exec_s = job->t_started > 0
                            ? ((job->t_exec_done > 0 ? job->t_exec_done : now) - job->t_started) / 1000
                            : -1;
        met_job(status == 200 ? MET_COMPLETED : status == 409 ? MET_CANCELLED
                : status == 504 ? MET_TIMEOUT : MET_FAILED,
                queue_s, exec_s, (now - job->t_received) / 1000);
    }
    TAILQ_INSERT_TAIL(&jobs->done, job, link);
    jobs->n_done++;
    notify(job, JE_DONE, res);
    /* The images and the graph went to whoever watched; a finished job
     * keeps only what its status shows. */
    free_outputs_data(job);
    json_decref(job->prompt);
    job->prompt = NULL;
    res->prompt = NULL;
    if (jobs->n == 0 && jobs->cfg->idle_trim_s > 0) {
        struct timeval tv = {jobs->cfg->idle_trim_s, 0};

        evtimer_add(jobs->idle, &tv); /* restarts it: idle since now */
    }
    evict(jobs, 0);
}

/* ---- outputs ------------------------------------------------------------ */

static void fetch_next_output(struct job *job);
static const char *mime_of(const char *filename);

/* ---- convert_output ----------------------------------------------------- */

static void convert_next(struct job *job);

static void
on_converted(unsigned char *out, size_t len, const char *error, void *arg)
{
    struct job *job = arg;
    struct job_output *o = &job->outputs[job->next_convert];

    job->conv_task = NULL;
    if (out == NULL) {
        /* As comfyui-api does: the original is better than nothing. */
        rlog_warn(job->id, "convert_output failed for %s, sending the original: %s",
                  o->filename, error != NULL ? error : "?");
    } else {
        char *dot = strrchr(o->filename, '.');
        size_t base = dot != NULL ? (size_t)(dot - o->filename) : strlen(o->filename);
        size_t n = base + strlen(job->convert->ext) + 2;
        char *name = xmalloc(n);

        snprintf(name, n, "%.*s.%s", (int)base, o->filename, job->convert->ext);
        free(o->filename);
        o->filename = name;
        o->mime = mime_of(name);
        free(o->data);
        o->data = out;
        o->len = len;
    }
    job->next_convert++;
    convert_next(job);
}

/* Re-encode still images one after the other (animations, video and audio
 * pass through untouched), then finish. */
static void
convert_next(struct job *job)
{
    for (; job->convert != NULL && job->next_convert < job->n_outputs; job->next_convert++) {
        struct job_output *o = &job->outputs[job->next_convert];
        int still = strcmp(o->mime, "image/png") == 0 || strcmp(o->mime, "image/jpeg") == 0 ||
                    strcmp(o->mime, "image/webp") == 0 || strcmp(o->mime, "image/bmp") == 0 ||
                    strcmp(o->mime, "image/tiff") == 0;

        if (!still || job->jobs->conv == NULL || strcmp(o->kind, "images") != 0)
            continue;
        job->conv_task = conv_run(job->jobs->conv, job->convert, o->data, o->len,
                                  on_converted, job);
        if (job->conv_task != NULL)
            return;
    }
    job_finish(job, 200, NULL);
}

static void
on_view(struct httpc_result *res, void *arg)
{
    struct job *job = arg;
    struct job_output *o = &job->outputs[job->next_fetch];

    job->call = NULL;
    if (!res->ok || res->status != 200 || res->too_big) {
        char why[300];

        if (res->too_big)
            snprintf(why, sizeof(why), "it is larger than MAX_OUTPUT_MB (%d MiB)",
                     job->jobs->cfg->max_output_mb);
        else if (!res->ok)
            snprintf(why, sizeof(why), "%s", res->error != NULL ? res->error : "no answer");
        else
            snprintf(why, sizeof(why), "ComfyUI answered %ld", res->status);
        note_unreachable(job->jobs, res);
        job_finish(job, 502,
                   err_body("comfyui", "could not fetch output %s%s%s from ComfyUI: %s",
                            o->subfolder, *o->subfolder != '\0' ? "/" : "",
                            o->filename, why));
        return;
    }
    o->data = res->body;
    o->len = res->body_len;
    res->body = NULL;
    job->next_fetch++;
    fetch_next_output(job);
}

/* The fast path: ComfyUI's output folder is ours to read (same host), so
 * the file is read straight from OUTPUT_DIR (from the page cache, as
 * ComfyUI has just written it) instead of being copied through /view. Any
 * doubt (missing, odd name, too big, a read error) falls back to /view. */
static int
read_local(struct job *job, struct job_output *o)
{
    const struct config *cfg = job->jobs->cfg;
    size_t max = (size_t)cfg->max_output_mb << 20, got = 0;
    char path[3000];
    struct stat st;
    unsigned char *buf;
    int fd;

    if (!job->jobs->local_outputs || strcmp(o->type, "output") != 0 ||
        strstr(o->filename, "..") != NULL || strchr(o->filename, '/') != NULL ||
        strstr(o->subfolder, "..") != NULL || o->subfolder[0] == '/')
        return -1;
    snprintf(path, sizeof(path), "%s/%s%s%s", cfg->output_dir, o->subfolder,
             o->subfolder[0] ? "/" : "", o->filename);
    fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return -1;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || (size_t)st.st_size > max ||
        st.st_size == 0) {
        close(fd);
        return -1;
    }
    buf = xmalloc((size_t)st.st_size);
    while (got < (size_t)st.st_size) {
        ssize_t r = read(fd, buf + got, (size_t)st.st_size - got);
        if (r <= 0)
            break;
        got += (size_t)r;
    }
    close(fd);
    if (got != (size_t)st.st_size) {
        free(buf);
        return -1;
    }
    o->data = buf;
    o->len = got;
    return 0;
}

/* GET /view for one output; both the job and a later re-fetch use it. */
static struct httpc_call *
view_call(struct jobs *jobs, const struct job_output *o, httpc_done_cb cb, void *arg)
{
    char *f = evhttp_uriencode(o->filename, -1, 0);
    char *s = evhttp_uriencode(o->subfolder, -1, 0);
    char *t = evhttp_uriencode(o->type, -1, 0);
    char path[3000];

    snprintf(path, sizeof(path), "/view?filename=%s&subfolder=%s&type=%s", f, s, t);
    free(f);
    free(s);
    free(t);
    return comfy_call(jobs, "GET", path, NULL, (size_t)jobs->cfg->max_output_mb << 20, cb, arg);
}

static void
fetch_next_output(struct job *job)
{
    struct job_output *o;

    while (job->next_fetch < job->n_outputs &&
           read_local(job, &job->outputs[job->next_fetch]) == 0)
        job->next_fetch++;
    if (job->next_fetch >= job->n_outputs) {
        convert_next(job);
        return;
    }
    o = &job->outputs[job->next_fetch];
    job->call = view_call(job->jobs, o, on_view, job);
    if (job->call == NULL)
        job_finish(job, 502, err_body("comfyui", "could not start a request to ComfyUI"));
}

static int
output_cmp(const void *a, const void *b)
{
    const struct job_output *x = a, *y = b;

    return preq_node_cmp(x->node_id, y->node_id);
}

static const char *
mime_of(const char *filename)
{
    static const struct { const char *ext, *mime; } types[] = {
        {"png", "image/png"},   {"jpg", "image/jpeg"},  {"jpeg", "image/jpeg"},
        {"webp", "image/webp"}, {"gif", "image/gif"},   {"bmp", "image/bmp"},
        {"tif", "image/tiff"},  {"tiff", "image/tiff"}, {"mp4", "video/mp4"},
        {"webm", "video/webm"}, {"mov", "video/quicktime"}, {"mkv", "video/x-matroska"},
        {"wav", "audio/wav"},   {"flac", "audio/flac"}, {"mp3", "audio/mpeg"},
        {"ogg", "audio/ogg"},   {"opus", "audio/opus"}, {"m4a", "audio/mp4"},
        {"txt", "text/plain"},  {"json", "application/json"}, {"glb", "model/gltf-binary"},
        {"obj", "model/obj"},   {"svg", "image/svg+xml"},
    };
    const char *dot = strrchr(filename, '.');
    size_t i;

    for (i = 0; dot != NULL && i < sizeof(types) / sizeof(types[0]); i++)
        if (strcasecmp(dot + 1, types[i].ext) == 0)
            return types[i].mime;
    return "application/octet-stream";
}

/* Collect every file a node reported, whatever its kind (images, gifs,
 * audio, video, ...: never drop what a save node made), and the text
 * outputs, in a stable order: output node id, then kind, then index. */
static void
collect_outputs(struct job *job, json_t *outputs)
{
    const char *node, *kind;
    json_t *v, *list;
    size_t cap = 0;

    json_object_foreach(outputs, node, v) {
        json_object_foreach(v, kind, list) {
            json_t *item;
            size_t i;

            json_array_foreach(list, i, item) {
                const char *fn = json_string_value(json_object_get(item, "filename"));
                const char *sub = json_string_value(json_object_get(item, "subfolder"));
                const char *type = json_string_value(json_object_get(item, "type"));
                struct job_output *o;

                if (json_is_string(item)) {
                    json_t *arr;
                    if (job->texts == NULL)
                        job->texts = json_object();
                    arr = json_object_get(job->texts, node);
                    if (arr == NULL) {
                        arr = json_array();
                        json_object_set_new(job->texts, node, arr);
                    }
                    json_array_append(arr, item);
                    continue;
                }
                if (fn == NULL)
                    continue;
                if (job->n_outputs == cap) {
                    cap = cap ? cap * 2 : 4;
                    job->outputs = xrealloc(job->outputs, cap * sizeof(*job->outputs));
                }
                o = &job->outputs[job->n_outputs++];
                memset(o, 0, sizeof(*o));
                o->node_id = xstrdup(node);
                o->kind = xstrdup(kind);
                o->filename = xstrdup(fn);
                o->mime = mime_of(fn);
                o->subfolder = xstrdup(sub != NULL ? sub : "");
                o->type = xstrdup(type != NULL ? type : "output");
            }
        }
    }
    /* Insertion sort: stable, so within a node the history's order stays. */
    if (job->n_outputs > 1) {
        size_t i, j;
        for (i = 1; i < job->n_outputs; i++) {
            struct job_output tmp = job->outputs[i];
            for (j = i; j > 0 && output_cmp(&job->outputs[j - 1], &tmp) > 0; j--)
                job->outputs[j] = job->outputs[j - 1];
            job->outputs[j] = tmp;
        }
    }
}

/* Fill start/end from history messages when the websocket missed them. */
static json_t *
history_times(struct job *job, json_t *messages)
{
    size_t i;
    json_t *m, *found = NULL;

    json_array_foreach(messages, i, m) {
        const char *name = json_string_value(json_array_get(m, 0));
        json_t *data = json_array_get(m, 1);
        json_t *ts = json_object_get(data, "timestamp");

        if (name == NULL)
            continue;
        if (strcmp(name, "execution_start") == 0 && job->exec_start_ms == 0 &&
            json_is_integer(ts))
            job->exec_start_ms = json_integer_value(ts);
        else if ((strcmp(name, "execution_success") == 0 ||
                  strcmp(name, "execution_error") == 0 ||
                  strcmp(name, "execution_interrupted") == 0) &&
                 json_is_integer(ts) && job->exec_end_ms == 0)
            job->exec_end_ms = json_integer_value(ts);
        if (strcmp(name, "execution_error") == 0 ||
            strcmp(name, "execution_interrupted") == 0) {
            found = data;
            job->interrupted = strcmp(name, "execution_interrupted") == 0;
        }
    }
    return found;
}

static void
on_history(struct httpc_result *res, void *arg)
{
    struct job *job = arg;
    json_t *root = NULL, *entry, *status, *err;
    const char *status_str;

    job->call = NULL;
    if (!res->ok || res->status != 200) {
        note_unreachable(job->jobs, res);
        if (!res->ok)
            job_finish(job, 502, err_body("comfyui", "could not read the result from ComfyUI's /history: %s",
                                          res->error != NULL ? res->error : "no answer"));
        else
            job_finish(job, 502, err_body("comfyui", "ComfyUI answered %ld to GET /history",
                                          res->status));
        return;
    }
    root = json_loadb((const char *)res->body, res->body_len, 0, NULL);
    entry = json_object_get(root, job->prompt_id);
    if (!json_is_object(entry)) {
        /* Not queued (reconcile checked) and not in history: ComfyUI lost it,
         * which happens when it restarted while we were not looking. */
        job_finish(job, 502,
                   err_body("comfyui", "ComfyUI no longer knows this prompt (%s): "
                            "it was restarted or the prompt was deleted",
                            job->prompt_id));
        goto out;
    }
    status = json_object_get(entry, "status");
    status_str = json_string_value(json_object_get(status, "status_str"));
    err = history_times(job, json_object_get(status, "messages"));
    if (status_str != NULL && strcmp(status_str, "success") != 0) {
        if (err != NULL)
            job_finish(job, 500, cmsg_execution_error(err, job->interrupted));
        else
            job_finish(job, 500, err_body("prompt", "ComfyUI reports the prompt as %s",
                                          status_str));
        goto out;
    }
    collect_outputs(job, json_object_get(entry, "outputs"));
    if (job->n_outputs == 0 && job->texts == NULL) {
        job_finish(job, 500, err_body("prompt", "ComfyUI finished the prompt but it produced no output"));
        goto out;
    }
    fetch_next_output(job);
out:
    json_decref(root);
}

static void
on_free_call(struct httpc_result *res, void *arg)
{
    (void)arg;
    if (!res->ok || res->status != 200)
        log_warn("POST /free failed: %s", !res->ok && res->error ? res->error : "unexpected status");
}

/* ---- the state machine ---------------------------------------------------- */

static void
job_advance(struct job *job)
{
    char path[200];

    if (job->call != NULL || job->state == JS_SUBMITTING ||
        job->state == JS_COLLECTING || job->cancelling)
        return;
    if (job->exec_error != NULL) {
        json_t *e = json_incref(job->exec_error);

        if (cmsg_is_oom(e)) {
            /* Give the next job a clean slate: unload models, drop caches. */
            rlog_warn(job->id, "ComfyUI ran out of memory; asking it to free memory");
            comfy_call(job->jobs, "POST", "/free", "{\"unload_models\":true,\"free_memory\":true}",
                       1u << 20, on_free_call, NULL);
        }
        job_finish(job, 500, cmsg_execution_error(e, job->interrupted));
        json_decref(e);
        return;
    }
    if (!job->exec_done)
        return;
    if (job->t_exec_done == 0)
        job->t_exec_done = util_mono_ms();
    job->state = JS_COLLECTING;
    snprintf(path, sizeof(path), "/history/%s", job->prompt_id);
    job->call = comfy_call(job->jobs, "GET", path, NULL, 64u << 20, on_history, job);
    if (job->call == NULL)
        job_finish(job, 502, err_body("comfyui", "could not start a request to ComfyUI"));
}

static json_t *cancelled_body(const struct job *job);

static void
on_submitted(struct httpc_result *res, void *arg)
{
    struct job *job = arg;
    json_t *root;

    job->call = NULL;
    if (job->cancel_pending && (!res->ok || res->status != 200)) {
        job_finish(job, job->abort_status, cancelled_body(job));
        return;
    }
    if (!res->ok) {
        note_unreachable(job->jobs, res);
        job_finish(job, 503, err_body("comfyui", "ComfyUI is not reachable: %s",
                                      res->error != NULL ? res->error : "no answer"));
        return;
    }
    if (res->status == 400) {
        job_finish(job, 400, cmsg_validation_error(res->body, res->body_len));
        return;
    }
    if (res->status != 200) {
        char esc[400];
        job_finish(job, 502,
                   err_body("comfyui", "ComfyUI answered %ld to POST /prompt: %s",
                            res->status,
                            log_escape(esc, sizeof(esc),
                                       res->body != NULL ? (const char *)res->body : "",
                                       res->body_len)));
        return;
    }
    root = json_loadb((const char *)res->body, res->body_len, 0, NULL);
    {
        /* Servers older than 0.3.45 ignore our prompt_id: theirs wins. */
        const char *pid = json_string_value(json_object_get(root, "prompt_id"));
        json_t *num = json_object_get(root, "number");

        if (pid != NULL && strcmp(pid, job->prompt_id) != 0) {
            rlog_warn(job->id, "ComfyUI chose prompt_id %s instead of %s", pid,
                      job->prompt_id);
            snprintf(job->prompt_id, sizeof(job->prompt_id), "%s", pid);
        }
        job->number = json_is_number(num) ? (long long)json_number_value(num) : 0;
        rlog_debug(job->id, "queued in ComfyUI: prompt_id=%s number=%lld",
                   job->prompt_id, job->number);
    }
    json_decref(root);
    if (job->state == JS_SUBMITTING)
        job->state = job->early_start ? JS_RUNNING : JS_QUEUED;
    job->t_accepted = util_mono_ms();
    if (job->cancel_pending) {
        job_abort(job, job->abort_status, job->abort_type, NULL);
        return;
    }
    {
        int pos = queue_position(job);
        notify(job, JE_QUEUED, &pos);
    }
    if (job->finished)
        return; /* a watcher cancelled it */
    if (job->state == JS_RUNNING)
        mark_started(job);
    job_advance(job);
}

static void
on_submit_failed(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    job_finish(arg, 503, err_body("comfyui", "could not start a request to ComfyUI"));
}

struct job *
job_submit(struct jobs *jobs, const char *id, json_t *prompt, json_t *input,
           double t_received_ms, int *conflict)
{
    struct job *job, *old;
    json_t *body;
    char *text;

    *conflict = 0;
    TAILQ_FOREACH(old, &jobs->list, link) {
        if (strcmp(old->id, id) == 0) {
            *conflict = 1;
            return NULL;
        }
    }
    job = xcalloc(1, sizeof(*job));
    job->jobs = jobs;
    snprintf(job->id, sizeof(job->id), "%s", id);
    util_uuid4(job->prompt_id);
    job->prompt = json_incref(prompt);
    job->input = input != NULL ? json_incref(input) : NULL;
    job->t_received = t_received_ms;
    job->created_ms = util_epoch_ms();
    job->number = -1;
    job->node_starts = json_object();
    job->state = JS_SUBMITTING;
    job->status = JOB_QUEUED;
    TAILQ_INSERT_TAIL(&jobs->list, job, link);
    jobs->n++;

    body = json_pack("{s:O, s:s, s:s}", "prompt", prompt, "client_id",
                     jobs->client_id, "prompt_id", job->prompt_id);
    text = json_dumps(body, JSON_COMPACT);
    json_decref(body);
    job->t_submitted = util_mono_ms();
    job->call = comfy_call(jobs, "POST", "/prompt", text, 16u << 20, on_submitted, job);
    free(text);
    rlog_info(job->id, "submitted to ComfyUI: prompt_id=%s nodes=%zu", job->prompt_id,
              json_object_size(prompt));
    if (job->call == NULL) {
        /* Never finish synchronously: the caller has not watched it yet. */
        job->defer = evtimer_new(jobs->base, on_submit_failed, job);
        event_active(job->defer, EV_TIMEOUT, 0);
    }
    return job;
}

/* ---- cancel ----------------------------------------------------------------- */

static json_t *
cancelled_body(const struct job *job)
{
    char msg[400];

    if (job->abort_status != 409)
        return json_pack("{s:s, s:s, s:s}", "error", job->cancel_why, "location", "comfyui",
                         "error_type", job->abort_type);
    snprintf(msg, sizeof(msg), "the job was cancelled%s%s",
             job->cancel_why[0] != '\0' ? ": " : "", job->cancel_why);
    return json_pack("{s:s, s:s, s:s}", "error", msg, "location", "id", "error_type",
                     "cancelled");
}

static void
on_cancel_call(struct httpc_result *res, void *arg)
{
    struct job *job = arg;

    job->cancel_call = NULL;
    if (!res->ok || res->status != 200)
        rlog_warn(job->id, "cancel: ComfyUI did not confirm: %s",
                  !res->ok ? (res->error != NULL ? res->error : "no answer")
                           : "unexpected status");
    job_finish(job, job->abort_status, cancelled_body(job));
}

static void
remember_cancelled(struct jobs *jobs, const char *pid)
{
    snprintf(jobs->cancelled_pids[jobs->cancelled_next], sizeof(jobs->cancelled_pids[0]),
             "%s", pid);
    jobs->cancelled_next = (jobs->cancelled_next + 1) % 16;
}

static void
on_late_interrupt(struct httpc_result *res, void *arg)
{
    (void)arg;
    if (!res->ok || res->status != 200)
        log_warn("cancel: late POST /interrupt failed");
}

/* A cancelled prompt showed up running: ComfyUI's worker had taken it
 * before our /queue delete arrived. */
static void
interrupt_if_cancelled(struct jobs *jobs, const char *pid)
{
    char body[200];
    int i;

    for (i = 0; i < 16; i++) {
        if (strcmp(jobs->cancelled_pids[i], pid) != 0)
            continue;
        jobs->cancelled_pids[i][0] = '\0';
        log_info("cancel: prompt %s started anyway; interrupting it", pid);
        snprintf(body, sizeof(body), "{\"prompt_id\":\"%s\"}", pid);
        comfy_call(jobs, "POST", "/interrupt", body, 1u << 20, on_late_interrupt, NULL);
        return;
    }
}

/* Stop a job in ComfyUI and end it with status: 409 for a cancel, 504 for
 * a timeout. The first reason given wins. */
static int
job_abort(struct job *job, int status, const char *type, const char *why)
{
    struct jobs *jobs = job->jobs;
    char body[200];

    if (job->finished)
        return -1;
    if (job->abort_status == 0) {
        job->abort_status = status;
        job->abort_type = type;
        snprintf(job->cancel_why, sizeof(job->cancel_why), "%s", why != NULL ? why : "");
    }
    if (job->cancelling)
        return 0;
    if (job->state == JS_SUBMITTING) {
        /* ComfyUI has not answered yet, so it may be queueing the prompt
         * right now: finish the cancel when it answers (on_submitted). */
        job->cancel_pending = 1;
        return 0;
    }
    job->cancelling = 1;
    if (job->call != NULL) {
        httpc_cancel(job->call);
        job->call = NULL;
    }
    rlog_info(job->id, "cancelling prompt %s: %s", job->prompt_id,
              job->cancel_why[0] != '\0' ? job->cancel_why : "cancelled");
    /* Queued: delete it from the queue (an interrupt would hit whatever
     * runs on ComfyUI older than 0.3.57). Running: interrupt it by id. The
     * job ends when ComfyUI has confirmed, so whoever cancelled knows
     * ComfyUI has been told. */
    if (job->state == JS_QUEUED) {
        snprintf(body, sizeof(body), "{\"delete\":[\"%s\"]}", job->prompt_id);
        remember_cancelled(jobs, job->prompt_id);
        job->cancel_call = comfy_call(jobs, "POST", "/queue", body, 1u << 20,
                                      on_cancel_call, job);
    } else if (job->state == JS_RUNNING) {
        snprintf(body, sizeof(body), "{\"prompt_id\":\"%s\"}", job->prompt_id);
        job->cancel_call = comfy_call(jobs, "POST", "/interrupt", body, 1u << 20,
                                      on_cancel_call, job);
    }
    if (job->cancel_call == NULL)
        job_finish(job, job->abort_status, cancelled_body(job));
    return 0;
}

int
job_cancel(struct job *job, const char *why)
{
    return job_abort(job, 409, "cancelled", why);
}

/* ---- websocket events ----------------------------------------------------- */

/* Preview frames. Type 1 frames do not say whose they are: ComfyUI runs
 * one prompt at a time, so they belong to our running job, if exactly one
 * of ours runs. */
static void
on_preview(struct jobs *jobs, const unsigned char *data, size_t len)
{
    struct cmsg_preview cp;
    struct job_preview pv;
    struct job *job = NULL, *j;

    if (cmsg_parse_preview(data, len, &cp) < 0)
        return;
    if (cp.prompt_id[0] != '\0') {
        job = find_job(jobs, cp.prompt_id);
    } else {
        int running = 0;
        TAILQ_FOREACH(j, &jobs->list, link) {
            if (j->state == JS_RUNNING) {
                job = j;
                running++;
            }
        }
        if (running != 1)
            job = NULL;
    }
    if (job == NULL || job->finished || job->state == JS_SUBMITTING || job->cancelling)
        return;
    pv.node = cp.node[0] != '\0' ? cp.node : (job->prog_node[0] ? job->prog_node : NULL);
    pv.mime = cp.mime;
    pv.data = cp.image;
    pv.len = cp.len;
    notify(job, JE_PREVIEW, &pv);
}

static void
on_progress_msg(struct job *job, const struct cmsg *m)
{
    struct job_progress pr;

    if (m->node != NULL)
        snprintf(job->prog_node, sizeof(job->prog_node), "%s", m->node);
    if (m->kind == CMSG_EXECUTING) {
        json_object_set_new(job->node_starts, m->node,
                            json_pack("{s:I}", "start", (json_int_t)util_epoch_ms()));
        job->prog_value = 0;
        job->prog_max = 0;
    } else {
        job->prog_value = m->value;
        job->prog_max = m->max;
    }
    job->last_progress = util_mono_ms();
    if (job->state == JS_SUBMITTING)
        return; /* told after JE_QUEUED, see on_submitted */
    mark_started(job);
    pr.node = job->prog_node;
    pr.value = job->prog_value;
    pr.max = job->prog_max;
    pr.overall = overall(job);
    notify(job, JE_PROGRESS, &pr);
}

void
jobs_on_ws(struct jobs *jobs, enum ws_kind kind, const unsigned char *data,
           size_t len)
{
    struct cmsg m;
    struct job *job;

    jobs->last_ws_msg = util_mono_ms();
    switch (kind) {
    case WS_UP:
        jobs->ws_up = 1;
        /* Progress is only observable with a websocket: hang detection
         * counts from the moment it is back. */
        jobs->last_ws_up = util_mono_ms();
        /* Events sent while we were away are lost for good: ask. */
        if (jobs->n > 0)
            reconcile(jobs);
        return;
    case WS_DOWN:
        jobs->ws_up = 0;
        return;
    case WS_BINARY:
        on_preview(jobs, data, len);
        return;
    case WS_TEXT:
        break;
    }
    if (cmsg_parse(data, len, &m) < 0)
        return;
    if (m.kind == CMSG_STATUS) {
        if (m.queue_remaining >= 0)
            jobs->queue_depth = m.queue_remaining;
        goto out;
    }
    if (m.prompt_id == NULL || m.kind == CMSG_OTHER)
        goto out;
    if ((job = find_job(jobs, m.prompt_id)) == NULL) {
        if (m.kind == CMSG_EXECUTION_START)
            interrupt_if_cancelled(jobs, m.prompt_id);
        goto out;
    }
    if (job->cancelling)
        goto out;
    if ((m.kind == CMSG_EXECUTION_START || m.kind == CMSG_PROGRESS ||
         (m.kind == CMSG_EXECUTING && !m.node_null)) && job->t_first_start == 0)
        job->t_first_start = util_mono_ms();
    if (job->state == JS_SUBMITTING &&
        (m.kind == CMSG_EXECUTION_START || m.kind == CMSG_PROGRESS ||
         (m.kind == CMSG_EXECUTING && !m.node_null)))
        job->early_start = 1;
    if (job->state == JS_QUEUED &&
        (m.kind == CMSG_EXECUTION_START || m.kind == CMSG_EXECUTING || m.kind == CMSG_PROGRESS))
        job->state = JS_RUNNING;
    switch (m.kind) {
    case CMSG_EXECUTION_START:
        job->exec_start_ms = m.timestamp;
        job->last_progress = util_mono_ms();
        if (job->state != JS_SUBMITTING)
            mark_started(job);
        break;
    case CMSG_EXECUTION_CACHED:
        job->n_cached = m.n_cached;
        break;
    case CMSG_EXECUTING:
        if (m.node_null) {
            job->exec_done = 1;
            job->t_exec_done = util_mono_ms();
            job_advance(job);
        } else {
            on_progress_msg(job, &m);
        }
        break;
    case CMSG_PROGRESS:
        if (!job->finished)
            on_progress_msg(job, &m);
        break;
    case CMSG_EXECUTED:
        job->last_progress = util_mono_ms();
        break;
    case CMSG_SUCCESS:
        job->exec_end_ms = m.timestamp;
        break;
    case CMSG_ERROR:
    case CMSG_INTERRUPTED:
        if (m.blocked)
            break;
        json_decref(job->exec_error);
        job->exec_error = json_incref(m.data);
        job->interrupted = m.kind == CMSG_INTERRUPTED;
        job->exec_end_ms = m.timestamp;
        job_advance(job);
        break;
    default:
        break;
    }
out:
    cmsg_clear(&m);
}

/* ---- reconcile: where is each job, according to /queue? ------------------- */

static int
queue_has(json_t *list, const char *pid)
{
    size_t i;
    json_t *item;

    json_array_foreach(list, i, item) {
        const char *p = json_string_value(json_array_get(item, 1));
        if (p != NULL && strcmp(p, pid) == 0)
            return 1;
    }
    return 0;
}

static void
on_queue(struct httpc_result *res, void *arg)
{
    struct jobs *jobs = arg;
    json_t *root, *running, *pending;
    struct job *job;
    char **pids;
    size_t i, n;

    jobs->queue_call = NULL;
    if (!res->ok || res->status != 200) {
        char why[300];

        snprintf(why, sizeof(why), "%s",
                 !res->ok ? (res->error != NULL ? res->error : "no answer")
                          : "unexpected status from GET /queue");
        log_warn("reconcile: ComfyUI's /queue failed: %s", why);
        if (!res->ok) {
            /* Whatever ComfyUI had queued is gone with it. */
            char msg[400];
            snprintf(msg, sizeof(msg), "ComfyUI became unreachable: %s", why);
            note_unreachable(jobs, res);
            jobs_fail_all(jobs, 502, msg);
        }
        return;
    }
    root = json_loadb((const char *)res->body, res->body_len, 0, NULL);
    running = json_object_get(root, "queue_running");
    pending = json_object_get(root, "queue_pending");
    if (!json_is_array(running) || !json_is_array(pending)) {
        json_decref(root);
        return;
    }
    /* Finishing a job runs its waiter's callback, which may finish others:
     * walk a snapshot of prompt ids, not the list. */
    n = 0;
    pids = xcalloc((size_t)jobs->n + 1, sizeof(*pids));
    TAILQ_FOREACH(job, &jobs->list, link)
        pids[n++] = xstrdup(job->prompt_id);
    for (i = 0; i < n; i++) {
        job = find_job(jobs, pids[i]);
        if (job == NULL || job->state == JS_SUBMITTING ||
            job->state == JS_COLLECTING || job->call != NULL)
            continue;
        if (queue_has(running, job->prompt_id)) {
            job->state = JS_RUNNING;
            mark_started(job);
        } else if (queue_has(pending, job->prompt_id)) {
            job->state = JS_QUEUED;
        } else {
            /* Off the queue means its history entry is written (ComfyUI
             * removes it from the queue only after that). */
            rlog_debug(job->id, "reconcile: prompt %s has left ComfyUI's queue",
                       job->prompt_id);
            job->exec_done = 1;
            job_advance(job);
        }
    }
    for (i = 0; i < n; i++)
        free(pids[i]);
    free(pids);
    json_decref(root);
}

static void
reconcile(struct jobs *jobs)
{
    if (jobs->queue_call != NULL || jobs->n == 0)
        return;
    jobs->queue_call = comfy_call(jobs, "GET", "/queue", NULL, 64u << 20, on_queue, jobs);
}

static void
on_tick(evutil_socket_t fd, short what, void *arg)
{
    struct jobs *jobs = arg;
    double quiet = util_mono_ms() - jobs->last_ws_msg;

    (void)fd;
    (void)what;
    if (jobs->n > 0 && (!jobs->ws_up || quiet >= jobs->cfg->reconcile_interval_ms))
        reconcile(jobs);
    evict(jobs, 1);
}

/* Idle for IDLE_TRIM_S after a burst: give the freed image buffers back to
 * the system (or glibc keeps the high-water mark resident) and the library
 * pages the burst touched (see mem.c). Not sooner, so that requests in a
 * steady stream never pay for faulting them back in. */
static void
on_idle(evutil_socket_t fd, short what, void *arg)
{
    struct jobs *jobs = arg;

    (void)fd;
    (void)what;
    if (jobs->n == 0) /* else a job started since: its end re-arms us */
        mem_trim("idle");
}

/* Time limits of jobs in flight: queue wait, execution, and silence. */
static void
on_deadlines(evutil_socket_t fd, short what, void *arg)
{
    struct jobs *jobs = arg;
    const struct config *cfg = jobs->cfg;
    double now = util_mono_ms();
    char **pids, why[300];
    struct job *job;
    size_t i, n = 0;

    (void)fd;
    (void)what;
    if (jobs->n == 0)
        return;
    /* Aborting runs watchers that may end other jobs: walk a snapshot. */
    pids = xcalloc((size_t)jobs->n + 1, sizeof(*pids));
    TAILQ_FOREACH(job, &jobs->list, link)
        pids[n++] = xstrdup(job->prompt_id);
    for (i = 0; i < n; i++) {
        job = find_job(jobs, pids[i]);
        if (job == NULL || job->cancelling || job->state == JS_SUBMITTING)
            continue;
        if (job->state == JS_QUEUED && cfg->queue_timeout_s > 0 && job->t_accepted > 0 &&
            now - job->t_accepted > cfg->queue_timeout_s * 1000.0) {
            snprintf(why, sizeof(why), "the job waited more than QUEUE_TIMEOUT_S=%d s in "
                     "ComfyUI's queue and was removed from it", cfg->queue_timeout_s);
            job_abort(job, 504, "queue_timeout", why);
        } else if (job->state == JS_RUNNING && cfg->execution_timeout_s > 0 &&
                   job->t_started > 0 &&
                   now - job->t_started > cfg->execution_timeout_s * 1000.0) {
            snprintf(why, sizeof(why), "the job ran longer than EXECUTION_TIMEOUT_S=%d s and "
                     "was interrupted", cfg->execution_timeout_s);
            job_abort(job, 504, "execution_timeout", why);
        } else if (job->state == JS_RUNNING && cfg->hang_timeout_s > 0 && jobs->ws_up &&
                   job->last_progress > 0 && now - jobs->last_ws_up > cfg->hang_timeout_s * 1000.0 &&
                   now - job->last_progress > cfg->hang_timeout_s * 1000.0) {
            snprintf(why, sizeof(why), "ComfyUI made no progress on this job for %d s "
                     "(HANG_TIMEOUT_S): it seems hung", cfg->hang_timeout_s);
            /* A hung ComfyUI will not act on an interrupt: end the job now
             * and let the owner restart ComfyUI. */
            job->cancelling = 1;
            job->abort_status = 504;
            job->abort_type = "hang";
            snprintf(job->cancel_why, sizeof(job->cancel_why), "%s", why);
            rlog_error(job->id, "%s", why);
            job_finish(job, 504, cancelled_body(job));
            if (jobs->hang != NULL)
                jobs->hang(why, jobs->hang_arg);
        }
    }
    for (i = 0; i < n; i++)
        free(pids[i]);
    free(pids);
}

void
jobs_set_local_outputs(struct jobs *jobs, int on)
{
    jobs->local_outputs = on;
}

void
jobs_set_converter(struct jobs *jobs, struct conv *conv)
{
    jobs->conv = conv;
}

void
job_set_convert(struct job *job, const struct conv_opts *opts)
{
    free(job->convert);
    job->convert = xmalloc(sizeof(*job->convert));
    *job->convert = *opts;
}

void
jobs_set_hang_cb(struct jobs *jobs, jobs_hang_fn fn, void *arg)
{
    jobs->hang = fn;
    jobs->hang_arg = arg;
}

int
jobs_retry_after_s(const struct jobs *jobs, int excess)
{
    double s = (jobs->avg_ms > 0 ? jobs->avg_ms : 5000) / 1000.0 * (excess > 0 ? excess : 1);

    return s < 1 ? 1 : s > 300 ? 300 : (int)(s + 0.999);
}

/* ---- finished jobs ---------------------------------------------------------- */

static int
evictable(const struct job *job)
{
    return job->dispatching == 0 && !job->hook.pending && !has_live_watch(job);
}

/* Drop finished jobs past JOB_HISTORY_TTL_S, and the oldest ones beyond
 * JOB_HISTORY_MAX (expired_only: just the first). A job someone still
 * watches, or whose webhook is still being delivered, stays. */
static void
evict(struct jobs *jobs, int expired_only)
{
    long long cutoff = util_epoch_ms() - (long long)jobs->cfg->job_history_ttl_s * 1000;
    struct job *job, *next;

    for (job = TAILQ_FIRST(&jobs->done); job != NULL; job = next) {
        int over = jobs->n_done > jobs->cfg->job_history_max;
        int expired = job->finished_ms <= cutoff;

        next = TAILQ_NEXT(job, link);
        if (!expired && (expired_only || !over))
            break;
        if (!evictable(job))
            continue;
        TAILQ_REMOVE(&jobs->done, job, link);
        jobs->n_done--;
        job_free(job);
    }
}

struct job *
jobs_find(struct jobs *jobs, const char *id)
{
    struct job *job;

    TAILQ_FOREACH(job, &jobs->list, link)
        if (strcmp(job->id, id) == 0)
            return job;
    TAILQ_FOREACH_REVERSE(job, &jobs->done, job_list, link)
        if (strcmp(job->id, id) == 0)
            return job;
    return NULL;
}

const char *
job_id(const struct job *job)
{
    return job->id;
}

enum job_status
job_get_status(const struct job *job)
{
    return job->status;
}

int
job_finished(const struct job *job)
{
    return job->finished;
}

const struct job_result *
job_last_result(const struct job *job)
{
    return job->finished ? &job->result : NULL;
}

struct job_hook_status *
job_hook(struct job *job)
{
    return &job->hook;
}

static json_t *
iso_time(long long ms)
{
    char buf[40];

    if (ms <= 0)
        return json_null();
    util_iso_time(ms, buf, sizeof(buf));
    return json_string(buf);
}

json_t *
job_status_json(const struct job *job)
{
    static const char *const names[] = {"queued", "running", "completed", "failed",
                                        "cancelled"};
    json_t *o = json_object(), *files = json_array();
    size_t i;

    json_object_set_new(o, "id", json_string(job->id));
    json_object_set_new(o, "status", json_string(names[job->status]));
    /* Until ComfyUI has answered, the job has no place in its queue yet. */
    if (!job->finished && job->status == JOB_QUEUED && job->number >= 0)
        json_object_set_new(o, "queue_position", json_integer(queue_position(job)));
    if (!job->finished && job->status == JOB_RUNNING)
        json_object_set_new(o, "progress",
                            json_pack("{s:s?, s:i, s:i, s:f}", "node",
                                      job->prog_node[0] ? job->prog_node : NULL,
                                      "value", job->prog_value, "max", job->prog_max,
                                      "overall", overall(job)));
    json_object_set_new(o, "created_at", iso_time(job->created_ms));
    json_object_set_new(o, "started_at", iso_time(job->started_ms));
    json_object_set_new(o, "finished_at", iso_time(job->finished_ms));
    if (job->finished && job->result.status == 200) {
        for (i = 0; i < job->n_outputs; i++) {
            const struct job_output *out = &job->outputs[i];
            char name[1024];

            snprintf(name, sizeof(name), "%s%s%s", out->subfolder,
                     out->subfolder[0] ? "/" : "", out->filename);
            json_array_append_new(files, json_string(name));
        }
    }
    json_object_set_new(o, "filenames", files);
    json_object_set(o, "stats", job->finished ? job->result.stats : json_null());
    if (job->finished && job->result.status != 200) {
        json_object_set(o, "error", job->result.error);
        json_object_set_new(o, "http_status", json_integer(job->result.status));
    } else {
        json_object_set_new(o, "error", json_null());
    }
    if (job->input != NULL)
        json_object_set(o, "input", job->input);
    if (job->hook.kind != NULL) {
        json_t *h = json_pack("{s:s, s:s, s:i}", "kind", job->hook.kind, "state",
                              job->hook.state != NULL ? job->hook.state : "pending",
                              "attempts", job->hook.attempts);
        if (job->hook.last_status > 0)
            json_object_set_new(h, "last_status", json_integer(job->hook.last_status));
        if (job->hook.last_error[0] != '\0')
            json_object_set_new(h, "last_error", json_string(job->hook.last_error));
        json_object_set_new(o, "webhook", h);
    }
    return o;
}

/* ---- fetching a finished job's outputs again ------------------------------- */

struct fetch {
    struct fetch *next;
    struct jobs *jobs;
    struct job_output *outs;
    size_t n, next_i;
    struct httpc_call *call;
    struct event *start;
    job_fetch_fn done;
    void *arg;
};

static void
fetch_free(struct fetch *f)
{
    struct fetch **pf = &f->jobs->fetches;
    size_t i;

    while (*pf != NULL && *pf != f)
        pf = &(*pf)->next;
    if (*pf == f)
        *pf = f->next;
    for (i = 0; i < f->n; i++)
        output_clear(&f->outs[i]);
    free(f->outs);
    event_free(f->start);
    free(f);
}

static void fetch_step(struct fetch *f);

static void
on_fetch_view(struct httpc_result *res, void *arg)
{
    struct fetch *f = arg;
    char msg[300];

    f->call = NULL;
    if (!res->ok || res->status != 200 || res->too_big) {
        snprintf(msg, sizeof(msg), "could not fetch %s from ComfyUI: %s",
                 f->outs[f->next_i].filename,
                 !res->ok ? (res->error != NULL ? res->error : "no answer")
                          : res->too_big ? "too large" : "unexpected status");
        f->done(NULL, 0, msg, f->arg);
        fetch_free(f);
        return;
    }
    f->outs[f->next_i].data = res->body;
    f->outs[f->next_i].len = res->body_len;
    res->body = NULL;
    f->next_i++;
    fetch_step(f);
}

static void
fetch_step(struct fetch *f)
{
    if (f->next_i >= f->n) {
        f->done(f->outs, f->n, NULL, f->arg);
        fetch_free(f);
        return;
    }
    f->call = view_call(f->jobs, &f->outs[f->next_i], on_fetch_view, f);
    if (f->call == NULL) {
        f->done(NULL, 0, "could not start a request to ComfyUI", f->arg);
        fetch_free(f);
    }
}

static void
on_fetch_start(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    fetch_step(arg);
}

void
job_fetch_outputs(struct jobs *jobs, const struct job *job, job_fetch_fn done,
                  void *arg)
{
    struct fetch *f = xcalloc(1, sizeof(*f));
    size_t i;

    f->jobs = jobs;
    f->done = done;
    f->arg = arg;
    f->n = job->n_outputs;
    f->outs = xcalloc(f->n + 1, sizeof(*f->outs));
    for (i = 0; i < f->n; i++) {
        f->outs[i].node_id = xstrdup(job->outputs[i].node_id);
        f->outs[i].kind = xstrdup(job->outputs[i].kind);
        f->outs[i].mime = job->outputs[i].mime;
        f->outs[i].filename = xstrdup(job->outputs[i].filename);
        f->outs[i].subfolder = xstrdup(job->outputs[i].subfolder);
        f->outs[i].type = xstrdup(job->outputs[i].type);
    }
    f->next = jobs->fetches;
    jobs->fetches = f;
    /* Start on the next turn: the caller expects no synchronous answer. */
    f->start = evtimer_new(jobs->base, on_fetch_start, f);
    event_active(f->start, EV_TIMEOUT, 0);
}

/* ---- registry ---------------------------------------------------------------- */

struct jobs *
jobs_new(struct event_base *base, struct httpc *http, const struct config *cfg,
         const char *client_id)
{
    struct jobs *jobs = xcalloc(1, sizeof(*jobs));
    struct timeval tv;

    jobs->base = base;
    jobs->http = http;
    jobs->cfg = cfg;
    snprintf(jobs->client_id, sizeof(jobs->client_id), "%s", client_id);
    if (strchr(cfg->direct_address, ':') != NULL)
        snprintf(jobs->base_url, sizeof(jobs->base_url), "http://[%s]:%d",
                 cfg->direct_address, cfg->comfy_port);
    else
        snprintf(jobs->base_url, sizeof(jobs->base_url), "http://%s:%d",
                 cfg->direct_address, cfg->comfy_port);
    TAILQ_INIT(&jobs->list);
    TAILQ_INIT(&jobs->done);
    jobs->last_ws_msg = util_mono_ms();
    jobs->tick = event_new(base, -1, EV_PERSIST, on_tick, jobs);
    tv.tv_sec = cfg->reconcile_interval_ms / 1000;
    tv.tv_usec = (cfg->reconcile_interval_ms % 1000) * 1000;
    event_add(jobs->tick, &tv);
    jobs->idle = evtimer_new(base, on_idle, jobs);
    jobs->deadlines = event_new(base, -1, EV_PERSIST, on_deadlines, jobs);
    tv.tv_sec = 0;
    tv.tv_usec = 200000;
    event_add(jobs->deadlines, &tv);
    return jobs;
}

void
jobs_set_unreachable_cb(struct jobs *jobs, jobs_unreachable_fn fn, void *arg)
{
    jobs->unreachable = fn;
    jobs->unreachable_arg = arg;
}

void
jobs_fail_all(struct jobs *jobs, int status, const char *message)
{
    struct job *job;

    if (jobs->queue_call != NULL) {
        httpc_cancel(jobs->queue_call);
        jobs->queue_call = NULL;
    }
    while ((job = TAILQ_FIRST(&jobs->list)) != NULL)
        job_finish(job, status, err_body("comfyui", "%s", message));
    while (jobs->fetches != NULL) {
        struct fetch *f = jobs->fetches;

        if (f->call != NULL)
            httpc_cancel(f->call);
        f->call = NULL;
        f->done(NULL, 0, message, f->arg);
        fetch_free(f);
    }
}

int
jobs_in_flight(const struct jobs *jobs)
{
    return jobs->n;
}

int
jobs_queue_depth(const struct jobs *jobs)
{
    return jobs->queue_depth;
}

void
jobs_free(struct jobs *jobs)
{
    struct job *job;

    if (jobs == NULL)
        return;

    jobs_fail_all(jobs, 503, "the server is shutting down");
    while ((job = TAILQ_FIRST(&jobs->done)) != NULL) {
        TAILQ_REMOVE(&jobs->done, job, link);
        job_free(job);
    }
    event_free(jobs->tick);
    event_free(jobs->idle);
    event_free(jobs->deadlines);
    free(jobs);
}
