/* metrics.c - the process's metrics and their Prometheus rendering (see
 * metrics.h).
 *
 * Owns a small fixed table of (route, status) counters, three job-time
 * histograms, and a few counters. Labels come from bounded sets chosen by
 * the callers, so the table cannot grow with client input. */
#include <event2/buffer.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "config.h"
#include "metrics.h"

#define MAX_SERIES 256

static const double buckets[] = {0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600};
#define N_BUCKETS (sizeof(buckets) / sizeof(buckets[0]))

struct histogram {
    unsigned long long counts[N_BUCKETS];
    unsigned long long count;
    double sum;
};

static struct {
    char route[80];
    int status;
    unsigned long long n;
} http[MAX_SERIES];
static int n_http;
static unsigned long long http_dropped; /* series beyond MAX_SERIES */
static unsigned long long bytes_sent;
static unsigned long long jobs[MET_N_OUTCOMES];
static struct histogram h_queue, h_exec, h_total;
static unsigned long long restarts;
static unsigned long long hooks[MET_HOOK_N];
static unsigned long long hook_attempts;
static unsigned long long trims;
static time_t started = 0;

void
met_http(const char *route, int status, size_t bytes)
{
    int i;

    if (started == 0)
        started = time(NULL);
    bytes_sent += bytes;
    for (i = 0; i < n_http; i++) {
        if (http[i].status == status && strcmp(http[i].route, route) == 0) {
            http[i].n++;
            return;
        }
    }
    if (n_http == MAX_SERIES) {
        http_dropped++;
        return;
    }
    snprintf(http[n_http].route, sizeof(http[n_http].route), "%s", route);
    http[n_http].status = status;
    http[n_http].n = 1;
    n_http++;
}

static void
observe(struct histogram *h, double v)
{
    size_t i;

    if (v < 0)
        return;
    for (i = 0; i < N_BUCKETS; i++)
        if (v <= buckets[i])
            h->counts[i]++;
    h->count++;
    h->sum += v;
}

void
met_job(enum met_job_outcome outcome, double queue_s, double exec_s, double total_s)
{
    if (outcome >= 0 && outcome < MET_N_OUTCOMES)
        jobs[outcome]++;
    observe(&h_queue, queue_s);
    observe(&h_exec, exec_s);
    observe(&h_total, total_s);
}

void
met_bytes(size_t n)
{
    bytes_sent += n;
}

void
met_comfy_restart(void)
{
    restarts++;
}

void
met_webhook(enum met_hook_outcome outcome)
{
    if (outcome >= 0 && outcome < MET_HOOK_N)
        hooks[outcome]++;
}

void
met_webhook_attempt(void)
{
    hook_attempts++;
}

void
met_trim(void)
{
    trims++;
}

/* Label values come from our own bounded sets, but escape anyway. */
static void
label(struct evbuffer *out, const char *s)
{
    for (; *s != '\0'; s++) {
        if (*s == '"' || *s == '\\')
            evbuffer_add_printf(out, "\\%c", *s);
        else if (*s == '\n')
            evbuffer_add(out, "\\n", 2);
        else
            evbuffer_add(out, s, 1);
    }
}

static void
head(struct evbuffer *out, const char *name, const char *type, const char *help)
{
    evbuffer_add_printf(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void
histogram(struct evbuffer *out, const char *name, const char *help, const struct histogram *h)
{
    size_t i;

    head(out, name, "histogram", help);
    for (i = 0; i < N_BUCKETS; i++)
        evbuffer_add_printf(out, "%s_bucket{le=\"%g\"} %llu\n", name, buckets[i], h->counts[i]);
    evbuffer_add_printf(out, "%s_bucket{le=\"+Inf\"} %llu\n%s_sum %.6f\n%s_count %llu\n", name,
                        h->count, name, h->sum, name, h->count);
}

void
met_render(struct evbuffer *out, const struct met_gauges *g)
{
    static const char *const outcomes[] = {"completed", "failed", "cancelled", "timeout"};
    static const char *const hook_outcomes[] = {"delivered", "failed"};
    int i;

    if (started == 0)
        started = time(NULL);
    head(out, "comfy_sidecar_info", "gauge", "Version of comfy-sidecar.");
    evbuffer_add_printf(out, "comfy_sidecar_info{version=\"%s\"} 1\n", SIDECAR_VERSION);
    head(out, "comfy_sidecar_uptime_seconds", "gauge", "Seconds since the first request or scrape.");
    evbuffer_add_printf(out, "comfy_sidecar_uptime_seconds %lld\n",
                        (long long)(time(NULL) - started));

    head(out, "comfy_sidecar_http_requests_total", "counter",
         "HTTP requests answered, by route and status.");
    for (i = 0; i < n_http; i++) {
        evbuffer_add(out, "comfy_sidecar_http_requests_total{route=\"", 41);
        label(out, http[i].route);
        evbuffer_add_printf(out, "\",status=\"%d\"} %llu\n", http[i].status, http[i].n);
    }
    head(out, "comfy_sidecar_http_series_dropped_total", "counter",
         "Requests not counted because the route/status table was full.");
    evbuffer_add_printf(out, "comfy_sidecar_http_series_dropped_total %llu\n", http_dropped);
    head(out, "comfy_sidecar_http_response_bytes_total", "counter", "Bytes of response bodies sent.");
    evbuffer_add_printf(out, "comfy_sidecar_http_response_bytes_total %llu\n", bytes_sent);

    head(out, "comfy_sidecar_jobs_total", "counter", "Finished jobs, by outcome.");
    for (i = 0; i < MET_N_OUTCOMES; i++)
        evbuffer_add_printf(out, "comfy_sidecar_jobs_total{outcome=\"%s\"} %llu\n", outcomes[i],
                            jobs[i]);
    histogram(out, "comfy_sidecar_job_queue_wait_seconds",
              "Time jobs waited in ComfyUI's queue before running.", &h_queue);
    histogram(out, "comfy_sidecar_job_execution_seconds",
              "Time ComfyUI spent executing jobs.", &h_exec);
    histogram(out, "comfy_sidecar_job_total_seconds",
              "Time from a request's arrival to its job's end.", &h_total);

    head(out, "comfy_sidecar_queue_depth", "gauge",
         "Jobs waiting or running (ours, or ComfyUI's queue if longer).");
    evbuffer_add_printf(out, "comfy_sidecar_queue_depth %d\n", g->queue_depth);
    head(out, "comfy_sidecar_jobs_in_flight", "gauge", "Jobs of this sidecar not finished yet.");
    evbuffer_add_printf(out, "comfy_sidecar_jobs_in_flight %d\n", g->jobs_in_flight);
    head(out, "comfy_sidecar_comfyui_up", "gauge", "1 if ComfyUI answers HTTP.");
    evbuffer_add_printf(out, "comfy_sidecar_comfyui_up %d\n", g->comfyui_up);
    head(out, "comfy_sidecar_websocket_up", "gauge", "1 if the websocket to ComfyUI is connected.");
    evbuffer_add_printf(out, "comfy_sidecar_websocket_up %d\n", g->websocket_up);
    head(out, "comfy_sidecar_ready", "gauge", "1 if /ready answers 200.");
    evbuffer_add_printf(out, "comfy_sidecar_ready %d\n", g->ready);
    head(out, "comfy_sidecar_waiting_requests", "gauge",
         "Client requests waiting on a job or streaming its events.");
    evbuffer_add_printf(out, "comfy_sidecar_waiting_requests %d\n", g->connections_waiting);
    head(out, "comfy_sidecar_comfyui_restarts_total", "counter", "Times ComfyUI was restarted.");
    evbuffer_add_printf(out, "comfy_sidecar_comfyui_restarts_total %llu\n", restarts);

    head(out, "comfy_sidecar_webhook_deliveries_total", "counter",
         "Webhook deliveries that ended, by outcome.");
    for (i = 0; i < MET_HOOK_N; i++)
        evbuffer_add_printf(out, "comfy_sidecar_webhook_deliveries_total{outcome=\"%s\"} %llu\n",
                            hook_outcomes[i], hooks[i]);
    head(out, "comfy_sidecar_webhook_attempts_total", "counter", "Webhook POST attempts.");
    evbuffer_add_printf(out, "comfy_sidecar_webhook_attempts_total %llu\n", hook_attempts);
    head(out, "comfy_sidecar_memory_trims_total", "counter",
         "Times memory was given back: at ready, and after IDLE_TRIM_S without a job.");
    evbuffer_add_printf(out, "comfy_sidecar_memory_trims_total %llu\n", trims);
    head(out, "comfy_sidecar_webhooks_pending", "gauge", "Webhook deliveries in progress.");
    evbuffer_add_printf(out, "comfy_sidecar_webhooks_pending %d\n", g->webhooks_pending);
}
