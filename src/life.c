/* life.c - ComfyUI's lifecycle (see life.h).
 *
 * Owns the supervisor, the start-up checks (GET /system_stats until it
 * answers), the warmup job, the restart policy and the shutdown sequence.
 * Readiness is derived here from three facts: ComfyUI answers HTTP, the
 * websocket is connected, and the warmup has finished since the last
 * (re)start. */
#include <event2/event.h>
#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "config.h"
#include "httpc.h"
#include "job.h"
#include "life.h"
#include "log.h"
#include "mem.h"
#include "metrics.h"
#include "request.h"
#include "supervisor.h"
#include "util.h"

enum comfy_state { CS_STARTING, CS_UP, CS_DOWN };

struct life {
    struct event_base *base;
    const struct config *cfg;
    struct httpc *http;
    struct jobs *jobs;
    struct ws *ws;
    struct sup *sup;
    json_t *warmup;
    struct job_watch *warmup_watch;
    void (*up_cb)(void *);  /* ComfyUI (re)started answering */
    void *up_arg;
    int (*drain)(void *);  /* work that must finish before exiting */
    void *drain_arg;

    enum comfy_state state;
    int ws_connected;
    int ws_failed; /* a connect attempt failed since the last UP: in backoff */
    int warm, warming, ever_warm;
    int stopping, exit_code;
    int tries;        /* failed checks since the last (re)start */
    int ever_up;
    double restart_delay_s;

    struct event *check_timer;
    struct httpc_call *check_call;
    struct httpc_call *probe_call;
    struct event *restart_timer;
    struct event *stop_timer;
    int stop_phase; /* 0 running; 1..4 see stop_step */
    double grace_deadline, hooks_deadline;
    char url[300];
};

static void schedule_check(struct life *l, double delay_s);

static void
set_timer(struct event *ev, double s)
{
    struct timeval tv;

    tv.tv_sec = (time_t)s;
    tv.tv_usec = (suseconds_t)((s - (double)tv.tv_sec) * 1e6);
    evtimer_add(ev, &tv);
}

/* ---- warmup ----------------------------------------------------------- */

static void maybe_warmup(struct life *l);

/* Start-up's one-off work (loading libraries, connecting, the warmup) is
 * done: give back what it left mapped (see mem.c). */
static void
trim_at_ready(struct life *l)
{
    if (l->cfg->idle_trim_s > 0)
        mem_trim("ready");
}

static void
on_warmup_event(struct job *job, enum job_event ev, const void *data, void *arg)
{
    struct life *l = arg;
    const struct job_result *res = data;

    (void)job;
    if (ev != JE_DONE)
        return;
    job_unwatch(l->warmup_watch);
    l->warmup_watch = NULL;
    l->warming = 0;
    if (l->stopping)
        return;
    if (res->status == 200) {
        l->warm = l->ever_warm = 1;
        l->restart_delay_s = 1;
        log_info("warmup finished: %zu image(s); ready", res->n_outputs);
        trim_at_ready(l);
        return;
    }
    if (res->status == 502 || res->status == 503) {
        /* ComfyUI went away under the warmup; its return re-runs it. */
        log_warn("warmup interrupted by ComfyUI going away; will retry");
        return;
    }
    log_error("warmup failed (status %d): %s; WARMUP_PROMPT_FILE must run "
              "successfully, exiting",
              res->status,
              json_string_value(json_object_get(res->error, "error")));
    life_shutdown(l, 1);
}

static void
maybe_warmup(struct life *l)
{
    if (l->stopping || l->warm || l->warming || l->state != CS_UP ||
        !l->ws_connected)
        return;
    if (l->warmup == NULL) {
        l->warm = 1;
        if (!l->ever_warm)
            log_info("ComfyUI is up and the websocket connected; ready");
        l->ever_warm = 1;
        trim_at_ready(l);
        return;
    }
    {
        struct job *job;
        int conflict;

        log_info("running the warmup prompt from %s", l->cfg->warmup_prompt_file);
        job = job_submit(l->jobs, "warmup", l->warmup, NULL, util_mono_ms(), &conflict);
        if (job == NULL) {
            log_warn("a job with id \"warmup\" is in flight; warmup postponed");
            return;
        }
        l->warming = 1;
        l->warmup_watch = job_watch(job, on_warmup_event, l);
    }
}

/* ---- start-up checks ------------------------------------------------------ */

/* Is OUTPUT_DIR the folder this ComfyUI writes to, on this host? ComfyUI
 * reports its command line: with --output-directory D, compare D with
 * OUTPUT_DIR; without it, ComfyUI writes under its own folder, which is
 * COMFY_HOME when we launched it. Same real path: read outputs directly. */
static void
check_output_dir(struct life *l, json_t *argv)
{
    char mine[PATH_MAX], theirs[PATH_MAX], def[PATH_MAX + 16];
    const char *dir = NULL;
    size_t i;
    int local = 0;

    for (i = 0; i + 1 < json_array_size(argv); i++) {
        const char *a = json_string_value(json_array_get(argv, i));
        if (a != NULL && strcmp(a, "--output-directory") == 0)
            dir = json_string_value(json_array_get(argv, i + 1));
    }
    if (dir == NULL && l->cfg->cmd != NULL) {
        snprintf(def, sizeof(def), "%s/output", l->cfg->comfy_home);
        dir = def;
    }
    if (l->cfg->read_output_dir && dir != NULL && realpath(l->cfg->output_dir, mine) != NULL &&
        realpath(dir, theirs) != NULL && strcmp(mine, theirs) == 0)
        local = 1;
    jobs_set_local_outputs(l->jobs, local);
    log_info("outputs are read %s", local ? "from OUTPUT_DIR directly (ComfyUI's output folder)"
                                          : "through ComfyUI's /view");
}

static void
on_check(struct httpc_result *res, void *arg)
{
    struct life *l = arg;

    l->check_call = NULL;
    if (l->stopping)
        return;
    if (res->ok && res->status == 200) {
        json_t *root = json_loadb((const char *)res->body, res->body_len, 0, NULL);
        const char *ver = json_string_value(json_object_get(
            json_object_get(root, "system"), "comfyui_version"));

        log_info("ComfyUI is up (version %s) after %d failed check(s)",
                 ver != NULL ? ver : "unknown", l->tries);
        check_output_dir(l, json_object_get(json_object_get(root, "system"), "argv"));
        json_decref(root);
        l->state = CS_UP;
        l->ever_up = 1;
        l->tries = 0;
        if (l->up_cb != NULL)
            l->up_cb(l->up_arg);
        if (!l->ws_connected && l->ws_failed && l->ws != NULL)
            ws_kick(l->ws); /* skip whatever backoff the ws thread is in */
        maybe_warmup(l);
        return;
    }
    l->tries++;
    log_debug("ComfyUI check %d failed: %s", l->tries,
              res->ok ? "unexpected status" : (res->error ? res->error : "?"));
    /* Before ComfyUI ever answered, give up after the configured tries;
     * afterwards (attached mode, lost ComfyUI) keep waiting for it. */
    if (!l->ever_up && l->tries >= l->cfg->startup_check_max_tries) {
        log_error("ComfyUI did not answer at %s after %d checks %g s apart "
                  "(STARTUP_CHECK_MAX_TRIES, STARTUP_CHECK_INTERVAL_S); exiting",
                  l->url, l->tries, l->cfg->startup_check_interval_s);
        life_shutdown(l, 1);
        return;
    }
    schedule_check(l, l->cfg->startup_check_interval_s);
}

static void
on_check_timer(evutil_socket_t fd, short what, void *arg)
{
    struct life *l = arg;
    struct httpc_request rq;
    char url[400];
    long t = (long)(l->cfg->startup_check_interval_s * 1000);

    (void)fd;
    (void)what;
    if (l->stopping || l->check_call != NULL || l->state == CS_UP)
        return;
    snprintf(url, sizeof(url), "%s/system_stats", l->url);
    memset(&rq, 0, sizeof(rq));
    rq.method = "GET";
    rq.url = url;
    rq.timeout_ms = t < 1000 ? 1000 : t;
    rq.connect_timeout_ms = rq.timeout_ms;
    rq.max_body = 1u << 20;
    l->check_call = httpc_start(l->http, &rq, on_check, l);
    if (l->check_call == NULL)
        schedule_check(l, l->cfg->startup_check_interval_s);
}

static void
schedule_check(struct life *l, double delay_s)
{
    set_timer(l->check_timer, delay_s);
}

/* ---- ComfyUI going away ------------------------------------------------------ */

static void
mark_down(struct life *l, const char *why)
{
    if (l->state == CS_UP)
        log_warn("ComfyUI is down: %s", why);
    l->state = CS_DOWN;
    l->warm = 0;
}

static void
on_unreachable(const char *why, void *arg)
{
    struct life *l = arg;

    if (l->stopping || l->state != CS_UP)
        return;
    mark_down(l, why);
    l->tries = 0;
    schedule_check(l, 0);
}

static void
on_hang(const char *why, void *arg)
{
    struct life *l = arg;

    (void)why;
    if (l->stopping)
        return;
    if (sup_running(l->sup)) {
        log_error("ComfyUI seems hung; killing it (ALWAYS_RESTART_COMFYUI=%s)",
                  l->cfg->always_restart ? "true: it will be restarted" : "false: exiting");
        mark_down(l, "hung"); /* not ready from now, not from when it is reaped */
        sup_kill(l->sup); /* on_child_exit applies the restart policy */
    } else {
        log_error("ComfyUI seems hung, and it is not ours to restart (CMD is empty)");
    }
}

static void
on_restart_timer(evutil_socket_t fd, short what, void *arg)
{
    struct life *l = arg;

    (void)fd;
    (void)what;
    if (l->stopping)
        return;
    l->state = CS_STARTING;
    l->tries = 0;
    l->ever_up = 0;
    met_comfy_restart();
    if (sup_start(l->sup) < 0) {
        log_error("cannot restart ComfyUI; exiting");
        life_shutdown(l, 1);
        return;
    }
    schedule_check(l, l->cfg->startup_check_interval_s);
}

static void stop_step(struct life *l);

static void
on_stop_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    stop_step(arg);
}

/* The shutdown, one step per tick of stop_timer:
 *   1. jobs in flight get until the grace deadline to finish;
 *   2. the rest fail (503, prompt.failed) and the webhooks owed get a last
 *      short window to be delivered;
 *   3. ComfyUI is stopped (SIGTERM, SIGKILL after COMFY_STOP_TIMEOUT_S);
 *   4. the loop ends a moment later, once the last replies are written. */
static void
stop_step(struct life *l)
{
    struct timeval tick = {0, 100000};
    double now = util_mono_ms();

    switch (l->stop_phase) {
    case 1:
        if (jobs_in_flight(l->jobs) > 0 && now < l->grace_deadline)
            break;
        if (jobs_in_flight(l->jobs) > 0) {
            log_warn("shutdown: %d job(s) did not finish within SHUTDOWN_GRACE_S=%d s",
                     jobs_in_flight(l->jobs), l->cfg->shutdown_grace_s);
            jobs_fail_all(l->jobs, 503,
                          "the server is shutting down and the job did not finish "
                          "within SHUTDOWN_GRACE_S");
        }
        l->stop_phase = 2;
        {
            double last = (l->cfg->webhook_timeout_s < 5 ? l->cfg->webhook_timeout_s : 5) * 1000.0;
            l->hooks_deadline = now + last > l->grace_deadline ? now + last : l->grace_deadline;
        }
        /* fall through */
    case 2:
        if (l->drain != NULL && l->drain(l->drain_arg) > 0 && now < l->hooks_deadline)
            break;
        if (l->drain != NULL && l->drain(l->drain_arg) > 0)
            log_warn("shutdown: %d webhook(s) not delivered in time", l->drain(l->drain_arg));
        l->stop_phase = 3;
        if (sup_running(l->sup)) {
            sup_stop(l->sup, l->cfg->comfy_stop_timeout_s);
            return; /* on_child_exit continues with phase 4 */
        }
        /* fall through */
    case 3:
        if (sup_running(l->sup))
            return;
        l->stop_phase = 4;
        /* A moment for the last replies to reach their clients. */
        set_timer(l->stop_timer, 0.2);
        return;
    case 4:
        event_base_loopexit(l->base, NULL);
        return;
    default:
        return;
    }
    evtimer_add(l->stop_timer, &tick);
}

static void
on_child_exit(int status, void *arg)
{
    struct life *l = arg;
    char desc[128], msg[300];

    sup_describe_status(status, desc, sizeof(desc));
    mark_down(l, desc);
    if (l->check_call != NULL) {
        httpc_cancel(l->check_call);
        l->check_call = NULL;
    }
    evtimer_del(l->check_timer);
    snprintf(msg, sizeof(msg), "ComfyUI exited (%s) while this prompt was in flight",
             desc);
    jobs_fail_all(l->jobs, 502, msg);
    if (l->stopping) {
        if (l->stop_phase == 3)
            stop_step(l);
        return;
    }
    if (!l->cfg->always_restart) {
        log_error("ComfyUI exited (%s) and ALWAYS_RESTART_COMFYUI is false; exiting",
                  desc);
        life_shutdown(l, 1);
        return;
    }
    log_warn("restarting ComfyUI in %g s", l->restart_delay_s);
    set_timer(l->restart_timer, l->restart_delay_s);
    /* Back off when it keeps dying; a successful warmup resets this. */
    l->restart_delay_s = l->restart_delay_s * 2 > 30 ? 30 : l->restart_delay_s * 2;
}

/* A one-off liveness check when the websocket drops while ComfyUI was
 * up: a refused connection means it is gone (on_unreachable). */
static void
on_probe(struct httpc_result *res, void *arg)
{
    struct life *l = arg;

    l->probe_call = NULL;
    if (!res->ok && !res->timed_out)
        on_unreachable(res->error != NULL ? res->error : "no answer", l);
}

static void
probe(struct life *l)
{
    struct httpc_request rq;
    char url[400];

    if (l->probe_call != NULL || l->state != CS_UP || l->stopping)
        return;
    snprintf(url, sizeof(url), "%s/system_stats", l->url);
    memset(&rq, 0, sizeof(rq));
    rq.method = "GET";
    rq.url = url;
    rq.timeout_ms = 5000;
    rq.connect_timeout_ms = 2000;
    rq.max_body = 1u << 20;
    l->probe_call = httpc_start(l->http, &rq, on_probe, l);
}

/* ---- public ----------------------------------------------------------------- */

void
life_on_ws(enum ws_kind kind, const unsigned char *data, size_t len, void *arg)
{
    struct life *l = arg;

    if (kind == WS_UP) {
        l->ws_connected = 1;
        l->ws_failed = 0;
        log_info("websocket to ComfyUI connected");
        /* A websocket means ComfyUI answers: do not wait for the next check. */
        if (l->state != CS_UP && !l->stopping) {
            evtimer_del(l->check_timer);
            schedule_check(l, 0);
        }
    } else if (kind == WS_DOWN) {
        if (l->ws_connected) {
            char esc[300];
            log_warn("websocket to ComfyUI lost: %s",
                     log_escape(esc, sizeof(esc), (const char *)data, len));
            /* Is ComfyUI itself gone? An attached one dies unseen otherwise. */
            probe(l);
        }
        l->ws_connected = 0;
        l->ws_failed = 1;
    }
    jobs_on_ws(l->jobs, kind, data, len);
    if (kind == WS_UP)
        maybe_warmup(l);
}

struct life *
life_new(struct event_base *base, const struct config *cfg, struct httpc *http,
         struct jobs *jobs)
{
    struct life *l = xcalloc(1, sizeof(*l));

    l->base = base;
    l->cfg = cfg;
    l->http = http;
    l->jobs = jobs;
    l->state = CS_STARTING;
    l->restart_delay_s = 1;
    l->check_timer = evtimer_new(base, on_check_timer, l);
    l->restart_timer = evtimer_new(base, on_restart_timer, l);
    l->stop_timer = evtimer_new(base, on_stop_timer, l);
    if (strchr(cfg->direct_address, ':') != NULL)
        snprintf(l->url, sizeof(l->url), "http://[%s]:%d", cfg->direct_address,
                 cfg->comfy_port);
    else
        snprintf(l->url, sizeof(l->url), "http://%s:%d", cfg->direct_address,
                 cfg->comfy_port);
    jobs_set_unreachable_cb(jobs, on_unreachable, l);
    jobs_set_hang_cb(jobs, on_hang, l);
    return l;
}

void
life_set_ws(struct life *l, struct ws *ws)
{
    l->ws = ws;
}

void
life_set_up_cb(struct life *l, void (*fn)(void *), void *arg)
{
    l->up_cb = fn;
    l->up_arg = arg;
}

void
life_set_drain(struct life *l, int (*pending)(void *), void *arg)
{
    l->drain = pending;
    l->drain_arg = arg;
}

static json_t *
load_warmup(const char *path, char *err, size_t errlen)
{
    json_error_t jerr;
    json_t *root = json_load_file(path, 0, &jerr), *graph;
    struct req_options opt = {.prepend_filenames = 1};

    opt.max_nodes = 0; /* the operator's own file */
    struct req_error rerr;

    if (root == NULL) {
        snprintf(err, errlen, "WARMUP_PROMPT_FILE=%s: %s (line %d)", path, jerr.text,
                 jerr.line);
        return NULL;
    }
    /* Accept a bare graph or a /prompt body {"prompt": graph}. */
    graph = json_object_get(root, "prompt");
    if (json_is_object(graph) && json_object_get(graph, "class_type") == NULL)
        json_incref(graph);
    else
        graph = json_incref(root);
    json_decref(root);
    if (preq_check_graph(graph, "warmup", &opt, &rerr) < 0) {
        snprintf(err, errlen, "WARMUP_PROMPT_FILE=%s: %s (at %s)", path,
                 rerr.message, rerr.location);
        json_decref(graph);
        return NULL;
    }
    return graph;
}

int
life_start(struct life *l, char *err, size_t errlen)
{
    if (l->cfg->warmup_prompt_file != NULL) {
        l->warmup = load_warmup(l->cfg->warmup_prompt_file, err, errlen);
        if (l->warmup == NULL)
            return -1;
    }
    if (l->cfg->cmd != NULL) {
        char a[320], p[64];
        const char *env[] = {a, p, NULL};

        /* comfyui-api passes these to the child (ai-dock images read them). */
        snprintf(a, sizeof(a), "DIRECT_ADDRESS=%s", l->cfg->direct_address);
        snprintf(p, sizeof(p), "COMFYUI_PORT_HOST=%d", l->cfg->comfy_port);
        l->sup = sup_new(l->base, l->cfg->cmd, l->cfg->comfy_home, env,
                         on_child_exit, l);
        if (sup_start(l->sup) < 0) {
            snprintf(err, errlen, "CMD: cannot launch \"%s\"", l->cfg->cmd);
            return -1;
        }
    } else {
        log_info("CMD is empty: attaching to the ComfyUI at %s", l->url);
    }
    schedule_check(l, l->sup != NULL ? l->cfg->startup_check_interval_s : 0);
    return 0;
}

int
life_accepting(const struct life *l, int *retry_after_s)
{
    if (l->stopping) {
        *retry_after_s = 0;
        return 0;
    }
    if (l->state != CS_UP) {
        *retry_after_s = 5;
        return 0;
    }
    return 1;
}

void
life_status(const struct life *l, struct life_status *st)
{
    st->comfyui = l->state == CS_UP ? "up" : l->state == CS_STARTING ? "starting" : "down";
    st->ws_connected = l->ws_connected;
    st->warm = l->warm;
    st->ever_warm = l->ever_warm;
    st->stopping = l->stopping;
    st->queue_depth = jobs_queue_depth(l->jobs);
    st->in_flight = jobs_in_flight(l->jobs);
}

void
life_shutdown(struct life *l, int code)
{
    if (l->stopping)
        return;
    l->stopping = 1;
    l->exit_code = code;
    log_info("shutting down (exit status %d): %d job(s) in flight, up to %d s to finish",
             code, jobs_in_flight(l->jobs), l->cfg->shutdown_grace_s);
    if (l->check_call != NULL) {
        httpc_cancel(l->check_call);
        l->check_call = NULL;
    }
    evtimer_del(l->check_timer);
    evtimer_del(l->restart_timer);
    l->grace_deadline = util_mono_ms() + 1000.0 * l->cfg->shutdown_grace_s;
    l->stop_phase = 1;
    stop_step(l);
}

int
life_exit_code(const struct life *l)
{
    return l->exit_code;
}

void
life_free(struct life *l)
{
    if (l == NULL)
        return;
    if (l->check_call != NULL)
        httpc_cancel(l->check_call);
    if (l->probe_call != NULL)
        httpc_cancel(l->probe_call);
    sup_free(l->sup);
    event_free(l->check_timer);
    event_free(l->restart_timer);
    event_free(l->stop_timer);
    json_decref(l->warmup);
    free(l);
}
