/* job.c - generation jobs and their conversation with ComfyUI (see job.h).
 *
 * Owns every job in flight, the one reconcile timer, and the mapping from
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
#include <sys/queue.h>

#include "config.h"
#include "httpc.h"
#include "job.h"
#include "log.h"
#include "request.h"
#include "util.h"

enum job_state {
    JS_SUBMITTING, /* POST /prompt in flight */
    JS_QUEUED,     /* accepted by ComfyUI, not started */
    JS_RUNNING,    /* ComfyUI is executing it */
    JS_COLLECTING, /* finished in ComfyUI: reading /history and /view */
};

struct job {
    TAILQ_ENTRY(job) link;
    struct jobs *jobs;
    char id[REQ_ID_MAX + 1];
    char prompt_id[64];
    json_t *prompt;
    enum job_state state;
    job_done_fn done;
    void *done_arg;
    struct httpc_call *call; /* at most one ComfyUI call per job */

    int exec_done;       /* saw executing{node:null} or reconcile said so */
    json_t *exec_error;  /* data of execution_error / execution_interrupted */
    int interrupted;

    struct job_output *outputs;
    size_t n_outputs, next_fetch;

    double t_received, t_submitted, t_exec_done;
    long long exec_start_ms, exec_end_ms;
    json_t *node_starts;
    struct event *defer; /* only for failures that must not be synchronous */
};

TAILQ_HEAD(job_list, job);

struct jobs {
    struct event_base *base;
    struct httpc *http;
    const struct config *cfg;
    char client_id[64];
    char base_url[300];
    struct job_list list;
    int n;
    int queue_depth;
    int ws_up;
    double last_ws_msg;
    struct event *tick;
    struct httpc_call *queue_call;
    jobs_unreachable_fn unreachable;
    void *unreachable_arg;
};

static void job_advance(struct job *job);
static void reconcile(struct jobs *jobs);

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
    return json_pack("{s:s, s:s}", "error", msg, "location", location);
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
    if (!res->ok && jobs->unreachable != NULL)
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

static void
job_free(struct job *job)
{
    size_t i;

    for (i = 0; i < job->n_outputs; i++) {
        free(job->outputs[i].node_id);
        free(job->outputs[i].filename);
        free(job->outputs[i].subfolder);
        free(job->outputs[i].type);
        free(job->outputs[i].data);
    }
    free(job->outputs);
    json_decref(job->prompt);
    json_decref(job->exec_error);
    json_decref(job->node_starts);
    if (job->defer != NULL)
        event_free(job->defer);
    free(job);
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

/* End the job: exactly one done call, then free. error is stolen. */
static void
job_finish(struct job *job, int status, json_t *error)
{
    struct jobs *jobs = job->jobs;
    struct job_result res;

    if (job->call != NULL) {
        httpc_cancel(job->call);
        job->call = NULL;
    }
    TAILQ_REMOVE(&jobs->list, job, link);
    jobs->n--;
    memset(&res, 0, sizeof(res));
    res.status = status;
    res.error = error;
    res.id = job->id;
    res.prompt = job->prompt;
    if (status == 200) {
        res.outputs = job->outputs;
        res.n_outputs = job->n_outputs;
    }
    res.stats = build_stats(job);
    if (status == 200)
        rlog_info(job->id, "job done: prompt_id=%s %zu output(s) in %.1f ms",
                  job->prompt_id, job->n_outputs,
                  util_mono_ms() - job->t_received);
    else {
        char esc[600];
        json_t *m = json_object_get(error, "error");
        const char *msg = json_is_string(m) ? json_string_value(m) : "?";
        rlog_warn(job->id, "job failed: prompt_id=%s status=%d: %s",
                  job->prompt_id, status,
                  log_escape(esc, sizeof(esc), msg, strlen(msg)));
    }
    if (job->done != NULL)
        job->done(&res, job->done_arg);
    json_decref(res.stats);
    json_decref(error);
    job_free(job);
}

/* ---- errors from ComfyUI ----------------------------------------------- */

/* The first node error, in node order, names the field to blame. */
static json_t *
validation_error(const unsigned char *body, size_t len)
{
    json_t *root = json_loadb((const char *)body, len, 0, NULL);
    json_t *e, *node_errors, *out;
    const char *type = "", *message = "", *details = "";
    const char *first_node = NULL, *key;
    char location[300] = "prompt", text[1024];
    json_t *v;

    if (root == NULL || !json_is_object(root)) {
        out = err_body("prompt", "ComfyUI rejected the prompt: %.*s",
                       (int)(len > 500 ? 500 : len), body != NULL ? (const char *)body : "");
        json_decref(root);
        return out;
    }
    e = json_object_get(root, "error");
    if (json_is_object(e)) {
        type = json_string_value(json_object_get(e, "type"));
        message = json_string_value(json_object_get(e, "message"));
        details = json_string_value(json_object_get(e, "details"));
    } else if (json_is_string(e)) {
        message = json_string_value(e);
    }
    type = type != NULL ? type : "";
    message = message != NULL ? message : "";
    details = details != NULL ? details : "";
    snprintf(text, sizeof(text), "ComfyUI rejected the prompt: %s%s%s", message,
             *details != '\0' ? ": " : "", details);

    node_errors = json_object_get(root, "node_errors");
    json_object_foreach(node_errors, key, v) {
        if (first_node == NULL || preq_node_cmp(key, first_node) < 0)
            first_node = key;
    }
    if (first_node != NULL) {
        json_t *ne = json_object_get(node_errors, first_node);
        json_t *e0 = json_array_get(json_object_get(ne, "errors"), 0);
        const char *cls = json_string_value(json_object_get(ne, "class_type"));
        const char *m = json_string_value(json_object_get(e0, "message"));
        const char *d = json_string_value(json_object_get(e0, "details"));
        const char *input = json_string_value(
            json_object_get(json_object_get(e0, "extra_info"), "input_name"));
        size_t n = strlen(text);

        if (input != NULL)
            snprintf(location, sizeof(location), "prompt.%.100s.inputs.%.100s",
                     first_node, input);
        else
            snprintf(location, sizeof(location), "prompt.%.100s", first_node);
        snprintf(text + n, sizeof(text) - n, "; node %s (%s): %s%s%s", first_node,
                 cls != NULL ? cls : "?", m != NULL ? m : "error",
                 d != NULL && *d != '\0' ? ": " : "", d != NULL ? d : "");
    } else if (strncmp(details, "Node ID '#", 10) == 0) {
        /* invalid_prompt names the node only in its details. */
        size_t l = strcspn(details + 10, "'");
        snprintf(location, sizeof(location), "prompt.%.*s", (int)l, details + 10);
    }
    out = json_pack("{s:s, s:s, s:s}", "error", text, "location", location,
                    "error_type", type);
    if (json_is_object(node_errors))
        json_object_set(out, "node_errors", node_errors);
    json_decref(root);
    return out;
}

static json_t *
execution_error(json_t *data, int interrupted)
{
    const char *node = json_string_value(json_object_get(data, "node_id"));
    const char *cls = json_string_value(json_object_get(data, "node_type"));
    const char *xtype = json_string_value(json_object_get(data, "exception_type"));
    const char *xmsg = json_string_value(json_object_get(data, "exception_message"));
    char location[200], text[1024], first[600];
    json_t *out;

    node = node != NULL ? node : "?";
    cls = cls != NULL ? cls : "?";
    snprintf(location, sizeof(location), "prompt.%.150s", node);
    if (interrupted) {
        snprintf(text, sizeof(text),
                 "the prompt was interrupted in ComfyUI at node %s (%s)", node, cls);
        return json_pack("{s:s, s:s, s:s, s:s, s:s}", "error", text, "location",
                         location, "error_type", "execution_interrupted",
                         "node_id", node, "node_type", cls);
    }
    xmsg = xmsg != NULL ? xmsg : "";
    xtype = xtype != NULL ? xtype : "";
    /* The message's first line is the exception; what follows is a tip. */
    snprintf(first, sizeof(first), "%.*s", (int)strcspn(xmsg, "\n"), xmsg);
    if (strstr(xtype, "OutOfMemory") != NULL)
        snprintf(text, sizeof(text),
                 "ComfyUI ran out of memory at node %s (%s): %s", node, cls, first);
    else
        snprintf(text, sizeof(text), "ComfyUI failed at node %s (%s): %s%s%s",
                 node, cls, xtype, *xtype != '\0' ? ": " : "", first);
    out = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s}", "error", text,
                    "location", location, "error_type", "execution_error",
                    "node_id", node, "node_type", cls, "exception_type", xtype,
                    "exception_message", xmsg);
    return out;
}

/* ---- outputs ------------------------------------------------------------ */

static void fetch_next_output(struct job *job);

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

static void
fetch_next_output(struct job *job)
{
    struct job_output *o;
    char *f = NULL, *s = NULL, *t = NULL, path[3000];

    if (job->next_fetch >= job->n_outputs) {
        job_finish(job, 200, NULL);
        return;
    }
    o = &job->outputs[job->next_fetch];
    f = evhttp_uriencode(o->filename, -1, 0);
    s = evhttp_uriencode(o->subfolder, -1, 0);
    t = evhttp_uriencode(o->type, -1, 0);
    snprintf(path, sizeof(path), "/view?filename=%s&subfolder=%s&type=%s", f, s, t);
    free(f);
    free(s);
    free(t);
    job->call = comfy_call(job->jobs, "GET", path, NULL,
                           (size_t)job->jobs->cfg->max_output_mb << 20, on_view, job);
    if (job->call == NULL)
        job_finish(job, 502, err_body("comfyui", "could not start a request to ComfyUI"));
}

static int
output_cmp(const void *a, const void *b)
{
    const struct job_output *x = a, *y = b;

    return preq_node_cmp(x->node_id, y->node_id);
}

/* Collect image entries in a stable order: output node id, then index. */
static void
collect_outputs(struct job *job, json_t *outputs)
{
    const char *node;
    json_t *v;
    size_t cap = 0;

    json_object_foreach(outputs, node, v) {
        json_t *images = json_object_get(v, "images"), *im;
        size_t i;

        json_array_foreach(images, i, im) {
            const char *fn = json_string_value(json_object_get(im, "filename"));
            const char *sub = json_string_value(json_object_get(im, "subfolder"));
            const char *type = json_string_value(json_object_get(im, "type"));
            struct job_output *o;

            if (fn == NULL)
                continue;
            if (job->n_outputs == cap) {
                cap = cap ? cap * 2 : 4;
                job->outputs = xrealloc(job->outputs, cap * sizeof(*job->outputs));
            }
            o = &job->outputs[job->n_outputs++];
            memset(o, 0, sizeof(*o));
            o->node_id = xstrdup(node);
            o->filename = xstrdup(fn);
            o->subfolder = xstrdup(sub != NULL ? sub : "");
            o->type = xstrdup(type != NULL ? type : "output");
        }
    }
    /* qsort is not stable, but within one node the order is the array
     * order, so sort by node and rely on equal keys being adjacent runs. */
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
            job_finish(job, 500, execution_error(err, job->interrupted));
        else
            job_finish(job, 500, err_body("prompt", "ComfyUI reports the prompt as %s",
                                          status_str));
        goto out;
    }
    collect_outputs(job, json_object_get(entry, "outputs"));
    if (job->n_outputs == 0) {
        job_finish(job, 500, err_body("prompt", "ComfyUI finished the prompt but it produced no image"));
        goto out;
    }
    fetch_next_output(job);
out:
    json_decref(root);
}

/* ---- the state machine ---------------------------------------------------- */

static void
job_advance(struct job *job)
{
    char path[200];

    if (job->call != NULL || job->state == JS_SUBMITTING ||
        job->state == JS_COLLECTING)
        return;
    if (job->exec_error != NULL) {
        json_t *e = json_incref(job->exec_error);
        job_finish(job, 500, execution_error(e, job->interrupted));
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

static void
on_submitted(struct httpc_result *res, void *arg)
{
    struct job *job = arg;
    json_t *root;

    job->call = NULL;
    if (!res->ok) {
        note_unreachable(job->jobs, res);
        job_finish(job, 503, err_body("comfyui", "ComfyUI is not reachable: %s",
                                      res->error != NULL ? res->error : "no answer"));
        return;
    }
    if (res->status == 400) {
        job_finish(job, 400, validation_error(res->body, res->body_len));
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
        if (pid != NULL && strcmp(pid, job->prompt_id) != 0) {
            rlog_warn(job->id, "ComfyUI chose prompt_id %s instead of %s", pid,
                      job->prompt_id);
            snprintf(job->prompt_id, sizeof(job->prompt_id), "%s", pid);
        }
        rlog_debug(job->id, "queued in ComfyUI: prompt_id=%s number=%lld",
                   job->prompt_id,
                   (long long)json_integer_value(json_object_get(root, "number")));
    }
    json_decref(root);
    if (job->state == JS_SUBMITTING)
        job->state = JS_QUEUED;
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
job_submit(struct jobs *jobs, const char *id, json_t *prompt,
           double t_received_ms, job_done_fn done, void *arg)
{
    struct job *job = xcalloc(1, sizeof(*job));
    json_t *body;
    char *text;

    job->jobs = jobs;
    snprintf(job->id, sizeof(job->id), "%s", id);
    util_uuid4(job->prompt_id);
    job->prompt = json_incref(prompt);
    job->done = done;
    job->done_arg = arg;
    job->t_received = t_received_ms;
    job->node_starts = json_object();
    job->state = JS_SUBMITTING;
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
        /* Never call done synchronously: finish from the loop instead. */
        job->defer = evtimer_new(jobs->base, on_submit_failed, job);
        event_active(job->defer, EV_TIMEOUT, 0);
    }
    return job;
}

void
job_detach(struct job *job)
{
    job->done = NULL;
    job->done_arg = NULL;
}

/* ---- websocket events ----------------------------------------------------- */

void
jobs_on_ws(struct jobs *jobs, enum ws_kind kind, const unsigned char *data,
           size_t len)
{
    json_t *root = NULL, *d;
    const char *type, *pid;
    struct job *job;

    jobs->last_ws_msg = util_mono_ms();
    switch (kind) {
    case WS_UP:
        jobs->ws_up = 1;
        /* Events sent while we were away are lost for good: ask. */
        if (jobs->n > 0)
            reconcile(jobs);
        return;
    case WS_DOWN:
        jobs->ws_up = 0;
        return;
    case WS_BINARY:
        return; /* previews: not used yet */
    case WS_TEXT:
        break;
    }
    root = json_loadb((const char *)data, len, 0, NULL);
    type = json_string_value(json_object_get(root, "type"));
    d = json_object_get(root, "data");
    if (type == NULL || !json_is_object(d))
        goto out;
    if (strcmp(type, "status") == 0) {
        json_t *qr = json_object_get(
            json_object_get(json_object_get(d, "status"), "exec_info"),
            "queue_remaining");
        if (json_is_integer(qr))
            jobs->queue_depth = (int)json_integer_value(qr);
        goto out;
    }
    pid = json_string_value(json_object_get(d, "prompt_id"));
    if (pid == NULL || (job = find_job(jobs, pid)) == NULL)
        goto out;
    if (strcmp(type, "execution_start") == 0) {
        job->exec_start_ms = json_integer_value(json_object_get(d, "timestamp"));
        if (job->state == JS_QUEUED)
            job->state = JS_RUNNING;
    } else if (strcmp(type, "executing") == 0) {
        json_t *node = json_object_get(d, "node");
        if (json_is_null(node)) {
            job->exec_done = 1;
            job->t_exec_done = util_mono_ms();
            if (job->state == JS_QUEUED)
                job->state = JS_RUNNING;
            job_advance(job);
        } else if (json_is_string(node)) {
            json_object_set_new(job->node_starts, json_string_value(node),
                                json_pack("{s:I}", "start",
                                          (json_int_t)util_epoch_ms()));
            if (job->state == JS_QUEUED)
                job->state = JS_RUNNING;
        }
    } else if (strcmp(type, "execution_success") == 0) {
        job->exec_end_ms = json_integer_value(json_object_get(d, "timestamp"));
    } else if (strcmp(type, "execution_error") == 0 ||
               strcmp(type, "execution_interrupted") == 0) {
        /* A "blocked" execution_error (no timestamp) does not stop the run. */
        json_t *xt = json_object_get(d, "exception_type");
        if (json_is_string(xt) && strcmp(json_string_value(xt), "ExecutionBlocked") == 0)
            goto out;
        json_decref(job->exec_error);
        job->exec_error = json_incref(d);
        job->interrupted = type[10] == 'i';
        job->exec_end_ms = json_integer_value(json_object_get(d, "timestamp"));
        job_advance(job);
    }
out:
    json_decref(root);
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
    jobs->last_ws_msg = util_mono_ms();
    jobs->tick = event_new(base, -1, EV_PERSIST, on_tick, jobs);
    tv.tv_sec = cfg->reconcile_interval_ms / 1000;
    tv.tv_usec = (cfg->reconcile_interval_ms % 1000) * 1000;
    event_add(jobs->tick, &tv);
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
    if (jobs == NULL)
        return;
    jobs_fail_all(jobs, 503, "the server is shutting down");
    event_free(jobs->tick);
    free(jobs);
}
