/* main.c - start-up and tear-down of comfy-sidecar.
 *
 * The only file that knows every module: it reads the configuration,
 * creates the modules in dependency order on one event_base, wires the
 * websocket handler to the lifecycle, runs the loop, and frees everything
 * in reverse order so that sanitizer and valgrind runs end with no leaks. */
#include <curl/curl.h>
#include <event2/event.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "comfy_ws.h"
#include "config.h"
#include "httpc.h"
#include "job.h"
#include "life.h"
#include "log.h"
#include "util.h"
#include "webhook.h"
#include "workflows.h"
#include "salad.h"
#include "media.h"
#include "convert.h"

static void
on_signal(evutil_socket_t sig, short what, void *arg)
{
    struct life *l = arg;

    (void)what;
    log_info("received %s", sig == SIGTERM ? "SIGTERM" : "SIGINT");
    life_shutdown(l, 0);
}

static void
on_sighup(evutil_socket_t sig, short what, void *arg)
{
    (void)sig;
    (void)what;
    log_info("SIGHUP: reloading workflow templates");
    wf_reload(arg);
}

static void
on_comfy_up(void *arg)
{
    wf_refresh_object_info(arg);
}

/* What SaladCloud should weigh when choosing an instance to remove. */
static int
salad_depth_cb(void *arg)
{
    int ours = jobs_in_flight(arg), theirs = jobs_queue_depth(arg);

    return ours > theirs ? ours : theirs;
}

static int
hooks_pending_cb(void *arg)
{
    return hooks_pending(arg);
}

int
main(int argc, char **argv)
{
    struct config cfg;
    struct event_base *base = NULL;
    struct httpc *http = NULL;
    struct jobs *jobs = NULL;
    struct life *life = NULL;
    struct ws *ws = NULL;
    struct api *api = NULL;
    struct hooks *hooks = NULL;
    struct wf *wf = NULL;
    struct salad *salad = NULL;
    struct media *media = NULL;
    struct conv *conv = NULL;
    struct event *sighup = NULL;
    struct event *sigterm = NULL, *sigint = NULL;
    struct ws_options wo;
    char err[512], uuid[37], client_id[33];
    int i, j, rc = 1;

    for (i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            cfg_print_help(stdout, argv[0]);
            return 0;
        }
        if (strcmp(argv[i], "--version") == 0) {
            printf("comfy-sidecar %s\n", SIDECAR_VERSION);
            return 0;
        }
        fprintf(stderr, "comfy-sidecar: unknown argument \"%s\" (try --help; "
                        "configuration comes from environment variables)\n",
                argv[i]);
        return 2;
    }
    if (cfg_load(&cfg, err, sizeof(err)) < 0) {
        fprintf(stderr, "comfy-sidecar: invalid configuration: %s\n", err);
        return 1;
    }
    log_set_level((enum log_level)cfg.log_level);
    log_set_json(cfg.log_json);
    log_hook_libraries();
    log_info("comfy-sidecar %s starting", SIDECAR_VERSION);
    cfg_log(&cfg);
    /* lws ignores SIGPIPE process-wide anyway; say so explicitly. */
    signal(SIGPIPE, SIG_IGN);
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != 0) {
        log_error("curl_global_init failed");
        goto out_cfg;
    }

    base = event_base_new();
    if (base == NULL) {
        log_error("cannot create the event loop");
        goto out;
    }
    http = httpc_new(base);
    util_uuid4(uuid);
    for (i = 0, j = 0; uuid[i] != '\0'; i++)
        if (uuid[i] != '-')
            client_id[j++] = uuid[i];
    client_id[j] = '\0';
    hooks = hooks_new(base, http, &cfg, err, sizeof(err));
    if (hooks == NULL) {
        log_error("invalid configuration: %s", err);
        goto out;
    }
    jobs = jobs_new(base, http, &cfg, client_id);
    life = life_new(base, &cfg, http, jobs);
    life_set_drain(life, hooks_pending_cb, hooks);
    wf = wf_new(base, http, &cfg);
    life_set_up_cb(life, on_comfy_up, wf);
    media = media_new(base, http, &cfg);
    conv = conv_new(base);
    jobs_set_converter(jobs, conv);
    api = api_new(base, &cfg, jobs, life, hooks, wf, media);
    salad = salad_new(base, http, &cfg, salad_depth_cb, jobs);
    if (api_listen(api, err, sizeof(err)) < 0) {
        log_error("%s", err);
        goto out;
    }
    sigterm = evsignal_new(base, SIGTERM, on_signal, life);
    sigint = evsignal_new(base, SIGINT, on_signal, life);
    sighup = evsignal_new(base, SIGHUP, on_sighup, wf);
    evsignal_add(sigterm, NULL);
    evsignal_add(sigint, NULL);
    evsignal_add(sighup, NULL);

    memset(&wo, 0, sizeof(wo));
    wo.address = cfg.direct_address;
    wo.port = cfg.comfy_port;
    wo.client_id = client_id;
    /* Previews then name their prompt (type 4 frames). */
    wo.announce_preview_metadata = 1;
    ws = ws_start(base, &wo, life_on_ws, life);
    if (ws == NULL)
        goto out;
    life_set_ws(life, ws);
    if (life_start(life, err, sizeof(err)) < 0) {
        log_error("%s", err);
        goto out;
    }

    event_base_dispatch(base);
    rc = life_exit_code(life);
    log_info("exiting with status %d", rc);
out:
    /* Reverse order of creation. Jobs are failed (and answered) before the
     * HTTP server goes, since their waiters hold its requests. */
    if (ws != NULL)
        ws_stop(ws);
    if (jobs != NULL)
        jobs_fail_all(jobs, 503, "the server is shutting down");
    if (sigterm != NULL)
        event_free(sigterm);
    if (sigint != NULL)
        event_free(sigint);
    if (sighup != NULL)
        event_free(sighup);
    salad_free(salad);
    api_free(api);
    media_free(media);
    wf_free(wf);
    hooks_free(hooks);
    life_free(life);
    jobs_free(jobs);
    conv_free(conv);
    if (http != NULL)
        httpc_free(http);
    if (base != NULL)
        event_base_free(base);
    curl_global_cleanup();
    libevent_global_shutdown();
out_cfg:
    cfg_free(&cfg);
    return rc;
}
