/* config.h - the sidecar's configuration: one validated table read from the
 * environment (variable names follow SaladCloud's comfyui-api). Loaded once
 * at start; immutable afterwards. */
#ifndef SIDECAR_CONFIG_H
#define SIDECAR_CONFIG_H

#include <stdio.h>

#define SIDECAR_VERSION "0.1.0"

struct config {
    char *host;
    int port;
    char *direct_address;
    int comfy_port;
    char *cmd;
    char *comfy_home;
    char *output_dir;
    char *input_dir;
    double startup_check_interval_s;
    int startup_check_max_tries;
    int always_restart;
    char *warmup_prompt_file;
    int max_body_size_mb;
    int prepend_filenames;
    int log_level; /* enum log_level */
    int log_json;  /* LOG_FORMAT=json */
    int comfy_timeout_s;
    int reconcile_interval_ms;
    int max_output_mb;
    int comfy_stop_timeout_s;
    char *webhook_secret;
    int webhook_retries;
    int webhook_timeout_s;
    int webhook_max_total_s;
    int webhook_backoff_ms;
    int job_history_max;
    int job_history_ttl_s;
    int cancel_on_disconnect;
    int sse_heartbeat_s;
    char *workflow_dir;
    char *web_dir;
    int playground;
    int max_queue_depth;
    int max_connections;
    int request_timeout_s;
    int max_graph_nodes;
    int queue_timeout_s;
    int execution_timeout_s;
    int hang_timeout_s;
    int shutdown_grace_s;
    int idle_trim_s;
    char *salad_metadata_url;
    int max_input_mb;
    int input_download_timeout_s;
    int allow_private_urls;
    int read_output_dir;
};

/* Fill cfg from the environment (getenv), applying defaults and validating
 * every value. On failure returns -1 with a message naming the variable in
 * err, and cfg holds nothing that needs freeing. On success the caller
 * frees with cfg_free. */
int cfg_load(struct config *cfg, char *err, size_t errlen);

void cfg_free(struct config *cfg);

/* --help text: usage plus every variable, its default and meaning. */
void cfg_print_help(FILE *out, const char *argv0);

/* Log the effective configuration at info level, one line. */
void cfg_log(const struct config *cfg);

#endif
