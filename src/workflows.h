/* workflows.h - the live set of workflow templates and what they depend on:
 * the templates loaded from WORKFLOW_DIR (reloaded on SIGHUP), ComfyUI's
 * /object_info (fetched whenever ComfyUI comes up, and refreshed), and the
 * OpenAPI document built from both. */
#ifndef SIDECAR_WORKFLOWS_H
#define SIDECAR_WORKFLOWS_H

#include <jansson.h>

struct event_base;
struct httpc;
struct config;
struct tpl_set;
struct wf;

struct wf *wf_new(struct event_base *base, struct httpc *http,
                  const struct config *cfg);
void wf_free(struct wf *wf);

/* Load WORKFLOW_DIR again; broken files are logged and skipped. */
void wf_reload(struct wf *wf);

/* Fetch ComfyUI's /object_info (sampler, scheduler and model lists). */
void wf_refresh_object_info(struct wf *wf);

/* GET /models for the API: ComfyUI's model folder types, each with its
 * files ({"checkpoints": ["a.safetensors"], ...}). done gets a new
 * reference, or NULL and a reason. Never synchronous. */
typedef void (*wf_models_fn)(json_t *models, const char *error, void *arg);
void wf_fetch_models(struct wf *wf, wf_models_fn done, void *arg);

/* Borrowed; valid until the next reload/refresh on the main loop. */
const struct tpl_set *wf_set(const struct wf *wf);
const json_t *wf_object_info(const struct wf *wf);

/* The OpenAPI document (borrowed; rebuilt when templates or object_info
 * change). */
json_t *wf_openapi(struct wf *wf);

#endif
