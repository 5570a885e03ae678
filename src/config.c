/* config.c - table-driven configuration from environment variables.
 *
 * One array describes every variable: its type, default, bounds, help text
 * and where it lands in struct config. Parsing, validation, --help and the
 * start-up dump all walk that array, so a variable is added in one place. */
#include <errno.h>
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "config.h"
#include "log.h"

enum cfg_type { CFG_STR, CFG_INT, CFG_DOUBLE, CFG_BOOL, CFG_LEVEL, CFG_LOGFMT };

struct cfg_entry {
    const char *env;
    enum cfg_type type;
    const char *def; /* as the user would write it; NULL = empty */
    double min, max; /* numbers only */
    size_t offset;
    const char *help;
};

#define OFF(f) offsetof(struct config, f)

static const struct cfg_entry entries[] = {
    {"HOST", CFG_STR, "::", 0, 0, OFF(host),
     "listen address (:: is dual stack, IPv6 and IPv4)"},
    {"PORT", CFG_INT, "3000", 1, 65535, OFF(port), "listen port"},
    {"DIRECT_ADDRESS", CFG_STR, "127.0.0.1", 0, 0, OFF(direct_address),
     "address of ComfyUI"},
    {"COMFYUI_PORT_HOST", CFG_INT, "8188", 1, 65535, OFF(comfy_port),
     "port of ComfyUI"},
    {"CMD", CFG_STR, NULL, 0, 0, OFF(cmd),
     "command that launches ComfyUI (split on whitespace, no shell); "
     "empty: attach to a running ComfyUI"},
    {"COMFY_HOME", CFG_STR, "/opt/ComfyUI", 0, 0, OFF(comfy_home),
     "working directory of the ComfyUI child"},
    {"OUTPUT_DIR", CFG_STR, NULL, 0, 0, OFF(output_dir),
     "ComfyUI's output folder (default $COMFY_HOME/output)"},
    {"READ_OUTPUT_DIR", CFG_BOOL, "true", 0, 0, OFF(read_output_dir),
     "read outputs from OUTPUT_DIR when it is ComfyUI's output folder on this host "
     "(checked at start); false: always through /view"},
    {"INPUT_DIR", CFG_STR, NULL, 0, 0, OFF(input_dir),
     "ComfyUI's input folder (default $COMFY_HOME/input)"},
    {"STARTUP_CHECK_INTERVAL_S", CFG_DOUBLE, "1", 0.01, 3600,
     OFF(startup_check_interval_s),
     "seconds between start-up checks of ComfyUI"},
    {"STARTUP_CHECK_MAX_TRIES", CFG_INT, "20", 1, 1000000,
     OFF(startup_check_max_tries),
     "start-up checks before giving up (then exit 1)"},
    {"ALWAYS_RESTART_COMFYUI", CFG_BOOL, "false", 0, 0, OFF(always_restart),
     "restart ComfyUI whenever it exits (false: the sidecar exits 1)"},
    {"WARMUP_PROMPT_FILE", CFG_STR, NULL, 0, 0, OFF(warmup_prompt_file),
     "API-format graph run before reporting ready"},
    {"MAX_BODY_SIZE_MB", CFG_INT, "100", 1, 4096, OFF(max_body_size_mb),
     "largest request body in MiB (bigger: 413)"},
    {"PREPEND_FILENAMES", CFG_BOOL, "true", 0, 0, OFF(prepend_filenames),
     "filename_prefix becomes <id>_<prefix> (false: <id>)"},
    {"LOG_LEVEL", CFG_LEVEL, "info", 0, 0, OFF(log_level),
     "debug, info, warn or error"},
    {"LOG_FORMAT", CFG_LOGFMT, "text", 0, 0, OFF(log_json),
     "text, or json for one JSON object per line"},
    {"COMFY_TIMEOUT_S", CFG_INT, "30", 1, 86400, OFF(comfy_timeout_s),
     "time limit of each HTTP call to ComfyUI"},
    {"RECONCILE_INTERVAL_MS", CFG_INT, "2000", 10, 3600000,
     OFF(reconcile_interval_ms),
     "with jobs in flight and a quiet websocket, poll ComfyUI this often"},
    {"MAX_OUTPUT_MB", CFG_INT, "256", 1, 65536, OFF(max_output_mb),
     "largest output file fetched from ComfyUI, in MiB"},
    {"COMFY_STOP_TIMEOUT_S", CFG_INT, "10", 0, 3600, OFF(comfy_stop_timeout_s),
     "on shutdown, seconds between SIGTERM and SIGKILL for ComfyUI"},
    {"WEBHOOK_SECRET", CFG_STR, NULL, 0, 0, OFF(webhook_secret),
     "webhook_v2 signing key, base64, with or without whsec_"},
    {"PROMPT_WEBHOOK_RETRIES", CFG_INT, "3", 1, 100, OFF(webhook_retries),
     "delivery attempts per webhook, the first included"},
    {"WEBHOOK_TIMEOUT_S", CFG_INT, "10", 1, 3600, OFF(webhook_timeout_s),
     "time limit of one webhook delivery attempt"},
    {"WEBHOOK_MAX_TOTAL_S", CFG_INT, "300", 1, 86400, OFF(webhook_max_total_s),
     "time limit of all attempts of one webhook"},
    {"WEBHOOK_BACKOFF_MS", CFG_INT, "1000", 10, 3600000, OFF(webhook_backoff_ms),
     "wait before the second attempt; doubles, with jitter"},
    {"JOB_HISTORY_MAX", CFG_INT, "1000", 0, 10000000, OFF(job_history_max),
     "finished jobs kept for GET /prompt/{id}"},
    {"JOB_HISTORY_TTL_S", CFG_INT, "3600", 0, 31536000, OFF(job_history_ttl_s),
     "seconds a finished job is kept"},
    {"CANCEL_ON_DISCONNECT", CFG_BOOL, "true", 0, 0, OFF(cancel_on_disconnect),
     "a client hanging up on a synchronous /prompt cancels its job"},
    {"SSE_HEARTBEAT_S", CFG_INT, "15", 1, 3600, OFF(sse_heartbeat_s),
     "interval of the heartbeat comment on event streams"},
    {"WORKFLOW_DIR", CFG_STR, "comfy-workflows", 0, 0, OFF(workflow_dir),
     "folder of workflow templates (POST /workflow/<path>); SIGHUP reloads"},
    {"WEB_DIR", CFG_STR, "web", 0, 0, OFF(web_dir),
     "folder of the pages served at /docs (Swagger UI) and /"},
    {"PLAYGROUND", CFG_BOOL, "true", 0, 0, OFF(playground),
     "serve the playground page at / (false: API only)"},
    {"MAX_QUEUE_DEPTH", CFG_INT, "0", 0, 1000000, OFF(max_queue_depth),
     "jobs waiting or running at which new ones get 429 and /ready 503; 0: no limit"},
    {"MAX_CONNECTIONS", CFG_INT, "4096", 16, 1000000, OFF(max_connections),
     "client connections at once (more wait in the kernel's backlog)"},
    {"REQUEST_TIMEOUT_S", CFG_INT, "30", 1, 3600, OFF(request_timeout_s),
     "time a client may stay silent while sending a request; idle keep-alive limit"},
    {"MAX_GRAPH_NODES", CFG_INT, "1000", 1, 1000000, OFF(max_graph_nodes),
     "nodes allowed in one graph"},
    {"QUEUE_TIMEOUT_S", CFG_INT, "0", 0, 604800, OFF(queue_timeout_s),
     "longest wait in ComfyUI's queue, then 504; 0: no limit"},
    {"EXECUTION_TIMEOUT_S", CFG_INT, "600", 0, 604800, OFF(execution_timeout_s),
     "longest execution, then interrupted and 504; 0: no limit"},
    {"HANG_TIMEOUT_S", CFG_INT, "300", 0, 86400, OFF(hang_timeout_s),
     "no progress from ComfyUI this long: 504 and restart; 0: off"},
    {"IDLE_TRIM_S", CFG_INT, "5", 0, 86400, OFF(idle_trim_s),
     "after this many seconds with no job, give memory back (0: never)"},
    {"SHUTDOWN_GRACE_S", CFG_INT, "20", 0, 3600, OFF(shutdown_grace_s),
     "on SIGTERM/SIGINT, time for jobs in flight and their webhooks"},
    {"SALAD_METADATA_URL", CFG_STR, "http://169.254.169.254", 0, 0, OFF(salad_metadata_url),
     "SaladCloud's instance metadata service (used when SALAD_* variables are set)"},
    {"MAX_INPUT_MB", CFG_INT, "50", 1, 4096, OFF(max_input_mb),
     "largest input image (base64, data: URL or download), in MiB"},
    {"INPUT_DOWNLOAD_TIMEOUT_S", CFG_INT, "30", 1, 3600, OFF(input_download_timeout_s),
     "time limit of downloading an input image"},
    {"ALLOW_PRIVATE_URLS", CFG_BOOL, "false", 0, 0, OFF(allow_private_urls),
     "let input URLs reach loopback, private and link-local addresses (never 169.254.169.254)"},
};

#define N_ENTRIES (sizeof(entries) / sizeof(entries[0]))

static int
parse_bool(const char *s, int *out)
{
    if (strcasecmp(s, "true") == 0 || strcmp(s, "1") == 0 ||
        strcasecmp(s, "yes") == 0 || strcasecmp(s, "on") == 0)
        *out = 1;
    else if (strcasecmp(s, "false") == 0 || strcmp(s, "0") == 0 ||
             strcasecmp(s, "no") == 0 || strcasecmp(s, "off") == 0)
        *out = 0;
    else
        return -1;
    return 0;
}

/* strtonum-like: the whole string must be a base-10 integer in range. */
static int
parse_int(const char *s, long long min, long long max, long long *out)
{
    char *end;
    long long v;

    errno = 0;
    v = strtoll(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v < min || v > max)
        return -1;
    *out = v;
    return 0;
}

static int
parse_double(const char *s, double min, double max, double *out)
{
    char *end;
    double v;

    errno = 0;
    v = strtod(s, &end);
    if (errno != 0 || end == s || *end != '\0' || !isfinite(v) || v < min ||
        v > max)
        return -1;
    *out = v;
    return 0;
}

static char *
xstrdup_or_null(const char *s)
{
    char *d;

    if (s == NULL || *s == '\0')
        return NULL;
    d = strdup(s);
    if (d == NULL)
        abort();
    return d;
}

static int
apply(struct config *cfg, const struct cfg_entry *e, const char *val,
      char *err, size_t errlen)
{
    char *base = (char *)cfg + e->offset;
    long long iv;
    double dv;
    int bv;
    enum log_level lv;

    switch (e->type) {
    case CFG_STR:
        *(char **)(void *)base = xstrdup_or_null(val);
        return 0;
    case CFG_INT:
        if (parse_int(val, (long long)e->min, (long long)e->max, &iv) < 0)
            goto bad;
        *(int *)(void *)base = (int)iv;
        return 0;
    case CFG_DOUBLE:
        if (parse_double(val, e->min, e->max, &dv) < 0)
            goto bad;
        *(double *)(void *)base = dv;
        return 0;
    case CFG_BOOL:
        if (parse_bool(val, &bv) < 0) {
            snprintf(err, errlen, "%s=\"%s\" is not a boolean (true or false)",
                     e->env, val);
            return -1;
        }
        *(int *)(void *)base = bv;
        return 0;
    case CFG_LOGFMT:
        if (strcasecmp(val, "text") != 0 && strcasecmp(val, "json") != 0) {
            snprintf(err, errlen, "%s=\"%s\" is not a log format (text or json)", e->env, val);
            return -1;
        }
        *(int *)(void *)base = strcasecmp(val, "json") == 0;
        return 0;
    case CFG_LEVEL:
        if (log_level_parse(val, &lv) < 0) {
            snprintf(err, errlen,
                     "%s=\"%s\" is not a log level (debug, info, warn, error)",
                     e->env, val);
            return -1;
        }
        *(int *)(void *)base = (int)lv;
        return 0;
    }
bad:
    if (e->type == CFG_DOUBLE)
        snprintf(err, errlen, "%s=\"%s\" is not a number between %g and %g",
                 e->env, val, e->min, e->max);
    else
        snprintf(err, errlen, "%s=\"%s\" is not an integer between %.0f and %.0f",
                 e->env, val, e->min, e->max);
    return -1;
}

static char *
join_path(const char *dir, const char *leaf)
{
    size_t n = strlen(dir) + strlen(leaf) + 2;
    char *p = malloc(n);

    if (p == NULL)
        abort();
    snprintf(p, n, "%s%s%s", dir,
             (dir[0] != '\0' && dir[strlen(dir) - 1] == '/') ? "" : "/", leaf);
    return p;
}

int
cfg_load(struct config *cfg, char *err, size_t errlen)
{
    size_t i;

    memset(cfg, 0, sizeof(*cfg));
    for (i = 0; i < N_ENTRIES; i++) {
        const struct cfg_entry *e = &entries[i];
        const char *val = getenv(e->env);

        /* An empty variable means "use the default", as with unset: container
         * platforms often cannot unset a variable, only blank it. */
        if (val == NULL || *val == '\0')
            val = e->def != NULL ? e->def : "";
        if (apply(cfg, e, val, err, errlen) < 0) {
            cfg_free(cfg);
            return -1;
        }
    }
    if (cfg->host == NULL) {
        snprintf(err, errlen, "HOST must not be empty");
        cfg_free(cfg);
        return -1;
    }
    if (cfg->output_dir == NULL)
        cfg->output_dir = join_path(cfg->comfy_home, "output");
    if (cfg->input_dir == NULL)
        cfg->input_dir = join_path(cfg->comfy_home, "input");
    return 0;
}

void
cfg_free(struct config *cfg)
{
    size_t i;

    for (i = 0; i < N_ENTRIES; i++) {
        if (entries[i].type == CFG_STR) {
            char **p = (char **)(void *)((char *)cfg + entries[i].offset);
            free(*p);
            *p = NULL;
        }
    }
}

void
cfg_print_help(FILE *out, const char *argv0)
{
    size_t i;

    fprintf(out,
            "Usage: %s [--help] [--version]\n"
            "\n"
            "comfy-sidecar turns a ComfyUI process into a stateless HTTP inference\n"
            "API: POST /prompt with a ComfyUI graph, get base64 images back.\n"
            "It is configured only through environment variables:\n\n",
            argv0);
    for (i = 0; i < N_ENTRIES; i++) {
        const struct cfg_entry *e = &entries[i];
        fprintf(out, "  %-26s %s\n  %-26s (default: %s)\n", e->env, e->help, "",
                e->def != NULL ? e->def : "empty");
    }
    fprintf(out, "\nRoutes: POST /prompt, GET /health, GET /ready.\n");
}

void
cfg_log(const struct config *cfg)
{
    log_info("config: listen [%s]:%d comfyui %s:%d cmd=%s comfy_home=%s "
             "output_dir=%s input_dir=%s warmup=%s always_restart=%s "
             "max_body=%dMiB startup_check=%gs x%d comfy_timeout=%ds "
             "reconcile=%dms",
             cfg->host, cfg->port, cfg->direct_address, cfg->comfy_port,
             cfg->cmd != NULL ? cfg->cmd : "(attach)", cfg->comfy_home,
             cfg->output_dir, cfg->input_dir,
             cfg->warmup_prompt_file != NULL ? cfg->warmup_prompt_file : "(none)",
             cfg->always_restart ? "true" : "false", cfg->max_body_size_mb,
             cfg->startup_check_interval_s, cfg->startup_check_max_tries,
             cfg->comfy_timeout_s, cfg->reconcile_interval_ms);
}
