/* metrics.h - counters, gauges and histograms for GET /metrics, rendered in
 * Prometheus' text format. Process-wide, main thread only. */
#ifndef SIDECAR_METRICS_H
#define SIDECAR_METRICS_H

#include <stddef.h>

struct evbuffer;

enum met_job_outcome { MET_COMPLETED, MET_FAILED, MET_CANCELLED, MET_TIMEOUT, MET_N_OUTCOMES };
enum met_hook_outcome { MET_HOOK_DELIVERED, MET_HOOK_FAILED, MET_HOOK_N };

/* One answered HTTP request. route is a bounded label ("/prompt",
 * "/workflow/sdxl/txt2img", "other"); copied. */
void met_http(const char *route, int status, size_t bytes);

/* A finished job: seconds waiting in the queue, executing, and in total
 * (negative when that phase did not happen). */
void met_job(enum met_job_outcome outcome, double queue_s, double exec_s, double total_s);

/* Response body bytes written (counted where bodies are sent). */
void met_bytes(size_t n);

void met_comfy_restart(void);
void met_webhook(enum met_hook_outcome outcome);
void met_webhook_attempt(void);
/* Memory given back when idle (mem_trim). */
void met_trim(void);

/* Values known only to other modules, read at scrape time. */
struct met_gauges {
    int queue_depth;     /* jobs waiting or running */
    int jobs_in_flight;  /* ours */
    int comfyui_up;
    int websocket_up;
    int ready;
    int webhooks_pending;
    int connections_waiting; /* requests waiting on a job or streaming */
};

void met_render(struct evbuffer *out, const struct met_gauges *g);

#endif
