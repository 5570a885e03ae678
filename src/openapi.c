/* openapi.c - the OpenAPI 3.1 document (see openapi.h).
 *
 * Owns the published description of every route: the shared shapes live in
 * components (schemas and error responses), and each workflow template adds
 * one POST /workflow/<path> operation built from tpl_input_schema. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "openapi.h"
#include "util.h"

#define JSON_CT "application/json"

static json_t *
ref(const char *kind, const char *name)
{
    char s[400];

    snprintf(s, sizeof(s), "#/components/%s/%s", kind, name);
    return json_pack("{s:s}", "$ref", s);
}

static json_t *
schema_ref(const char *name)
{
    return ref("schemas", name);
}

/* {"description": d, "content": {"application/json": {"schema": schema}}};
 * steals schema. */
static json_t *
json_response(const char *description, json_t *schema)
{
    return json_pack("{s:s, s:{s:{s:o}}}", "description", description, "content",
                     JSON_CT, "schema", schema);
}

static json_t *
error_response(const char *description)
{
    return json_response(description, schema_ref("Error"));
}

/* The same response, answered with a Retry-After header. */
static json_t *
with_retry_after(json_t *response, const char *description)
{
    json_object_set_new(response, "headers",
                        json_pack("{s:{s:s, s:{s:s}}}", "Retry-After", "description",
                                  description, "schema", "type", "integer"));
    return response;
}

/* ---- components ------------------------------------------------------------ */

static json_t *
webhook_property(int v2)
{
    return json_pack("{s:s, s:s}", "$ref", "#/components/schemas/WebhookUrl", "description",
                     v2 ? "Answer 202 at once, then POST the result here once, signed "
                          "with Standard Webhooks headers (WEBHOOK_SECRET): "
                          "`prompt.complete` or `prompt.failed`"
                        : "comfyui-api's deprecated v1 webhook: answer 202 at once, then "
                          "one unsigned POST per image (`output.complete`), or one "
                          "`prompt.failed`");
}

static json_t *
nullable(const char *type, const char *format)
{
    json_t *s = json_pack("{s:[s, s]}", "type", type, "null");

    if (format != NULL)
        json_object_set_new(s, "format", json_string(format));
    return s;
}

/* GET /prompt/{id}: where a job is. */
static json_t *
job_status_schema(void)
{
    json_t *props = json_object(), *s;

    json_object_set_new(props, "id", schema_ref("RequestId"));
    json_object_set_new(props, "status",
                        json_pack("{s:s, s:[s, s, s, s, s]}", "type", "string", "enum",
                                  "queued", "running", "completed", "failed", "cancelled"));
    json_object_set_new(props, "queue_position",
                        json_pack("{s:s, s:i, s:s}", "type", "integer", "minimum", 0,
                                  "description", "queued: jobs ahead of it (0 = next)"));
    json_object_set_new(
        props, "progress",
        json_pack("{s:s, s:s, s:{s:o, s:{s:s}, s:{s:s}, s:{s:s, s:i, s:i}}}", "type", "object",
                  "description", "running: the node ComfyUI executes, its step, and the "
                  "share of the graph done", "properties", "node", nullable("string", NULL),
                  "value", "type", "integer", "max", "type", "integer", "overall", "type",
                  "number", "minimum", 0, "maximum", 1));
    json_object_set_new(props, "created_at", nullable("string", "date-time"));
    json_object_set_new(props, "started_at", nullable("string", "date-time"));
    json_object_set_new(props, "finished_at", nullable("string", "date-time"));
    json_object_set_new(props, "filenames",
                        json_pack("{s:s, s:{s:s}}", "type", "array", "items", "type", "string"));
    json_object_set_new(props, "images",
                        json_pack("{s:s, s:s, s:{s:s, s:s}}", "type", "array", "description",
                                  "completed, with ?images=true: the images again, base64",
                                  "items", "type", "string", "contentEncoding", "base64"));
    json_object_set_new(props, "stats",
                        json_pack("{s:[o, {s:s}]}", "oneOf", schema_ref("ExecutionStats"),
                                  "type", "null"));
    json_object_set_new(props, "error",
                        json_pack("{s:[o, {s:s}], s:s}", "oneOf", schema_ref("Error"), "type",
                                  "null", "description",
                                  "failed or cancelled: the body the synchronous request "
                                  "would have had"));
    json_object_set_new(props, "http_status",
                        json_pack("{s:s, s:s}", "type", "integer", "description",
                                  "failed or cancelled: the status the synchronous request "
                                  "would have had"));
    json_object_set_new(props, "input",
                        json_pack("{s:s, s:s}", "type", "object", "description",
                                  "/workflow/... jobs: the input used"));
    json_object_set_new(
        props, "webhook",
        json_pack("{s:s, s:[s, s, s], s:{s:{s:s, s:[s, s]}, s:{s:s, s:[s, s, s, s, s]},"
                  " s:{s:s}, s:{s:s}, s:{s:s}}}",
                  "type", "object", "required", "kind", "state", "attempts", "properties",
                  "kind", "type", "string", "enum", "v1", "v2", "state", "type", "string",
                  "enum", "pending", "delivering", "retrying", "delivered", "failed",
                  "attempts", "type", "integer", "last_status", "type", "integer",
                  "last_error", "type", "string"));
    s = json_pack("{s:s, s:s, s:[s, s, s, s, s, s, s, s]}", "type", "object", "description",
                  "A job in flight, or finished and kept JOB_HISTORY_TTL_S seconds (at most "
                  "JOB_HISTORY_MAX of them)",
                  "required", "id", "status", "created_at", "started_at", "finished_at",
                  "filenames", "stats", "error");
    json_object_set_new(s, "properties", props);
    return s;
}

static json_t *
shared_schemas(void)
{
    json_t *s = json_object();

    json_object_set_new(
        s, "Error",
        json_pack("{s:s, s:s, s:[s], s:{s:{s:s, s:s}, s:{s:s, s:s}, s:{s:s, s:s}, s:{s:s},"
                  " s:{s:s}, s:{s:s}, s:{s:s}, s:{s:s}, s:{s:s, s:{s:s}, s:s},"
                  " s:{s:s, s:s}, s:o}}",
                  "type", "object", "description",
                  "Every error answer. `location` names the culprit: a body field "
                  "(`id`, `prompt.<node>.inputs.<input>`, `input.<parameter>`), "
                  "`body`, `path`, `queue`, or `comfyui`.",
                  "required", "error", "properties", "error", "type", "string",
                  "description", "What went wrong, for humans", "location", "type",
                  "string", "description", "Where: a dotted path into the request, or a component",
                  "error_type", "type", "string", "description",
                  "Machine-readable kind where there is one: ComfyUI's validation type "
                  "(e.g. `prompt_outputs_failed_validation`), `cancelled`, `id_in_use`, "
                  "`queue_full`, `queue_timeout`, `execution_timeout` or `hang`",
                  "node_id", "type", "string",
                  "node_type", "type", "string", "exception_type", "type", "string",
                  "exception_message", "type", "string", "node_errors", "type",
                  "object", "available", "type", "array", "items", "type", "string",
                  "description", "404 on /workflow/...: the template paths that exist",
                  "retry_after", "type", "integer", "description",
                  "429: seconds to wait, as in the Retry-After header",
                  "job", schema_ref("JobStatus")));
    json_object_set_new(
        s, "WebhookUrl",
        json_pack("{s:s, s:s, s:s, s:i, s:s}", "type", "string", "format", "uri", "pattern",
                  "^[Hh][Tt][Tt][Pp][Ss]?://[^/?#\\s\\x7f][^\\s\\x7f]*$", "maxLength", 4096,
                  "description", "An http:// or https:// URL with a host"));
    json_object_set_new(s, "RequestId",
                        json_pack("{s:s, s:s, s:s}", "type", "string", "pattern",
                                  "^[A-Za-z0-9._-]{1,128}$", "description",
                                  "Request id, used as the output file name prefix. "
                                  "A random UUID when omitted."));
    json_object_set_new(
        s, "Node",
        json_pack("{s:s, s:[s, s], s:{s:{s:s}, s:{s:s}, s:{s:s}}}", "type", "object",
                  "required", "class_type", "inputs", "properties", "class_type",
                  "type", "string", "inputs", "type", "object", "_meta", "type",
                  "object"));
    json_object_set_new(
        s, "Graph",
        json_pack("{s:s, s:s, s:i, s:o}", "type", "object", "description",
                  "A ComfyUI graph in API format (ComfyUI's \"Export (API)\"): node "
                  "id -> node. It needs an output node with a `filename_prefix` "
                  "such as SaveImage.",
                  "minProperties", 1, "additionalProperties", schema_ref("Node")));
    json_object_set_new(
        s, "ConvertOutput",
        json_pack("{s:s, s:s, s:[s], s:b, s:{s:{s:s, s:[s, s, s, s]}, s:{s:s, s:s, s:b, "
                  "s:{s:{s:s, s:i, s:i}, s:{s:s}, s:{s:s, s:[s, s]}, s:{s:s}, s:{s:s}, s:{s:s}, "
                  "s:{s:s}, s:{s:s}, s:{s:s, s:i, s:i}, s:{s:s, s:i, s:i}, s:{s:s}, s:{s:s}, "
                  "s:{s:s}, s:{s:s, s:[s, s, s, s, s, s]}, s:{s:s, s:i, s:i}, s:{s:s, s:i, s:i}}}}}",
                  "type", "object", "description",
                  "Re-encode still images (libvips). Each format takes only its own options: "
                  "JPEG quality, progressive, chromaSubsampling, optimizeCoding, mozjpeg, "
                  "trellisQuantisation, overshootDeringing, optimizeScans, quantisationTable; "
                  "WebP quality, alphaQuality, lossless, nearLossless, smartSubsample, preset, "
                  "effort; PNG compressionLevel. Another format's option is a 400.",
                  "required", "format", "additionalProperties", 0, "properties", "format",
                  "type", "string", "enum", "jpeg", "jpg", "webp", "png", "options", "type",
                  "object", "description", "Options of the chosen format",
                  "additionalProperties", 0, "properties", "quality", "type", "integer",
                  "minimum", 1, "maximum", 100, "progressive", "type", "boolean",
                  "chromaSubsampling", "type", "string", "enum", "4:2:0", "4:4:4",
                  "optimizeCoding", "type", "boolean", "mozjpeg", "type", "boolean",
                  "trellisQuantisation", "type", "boolean", "overshootDeringing", "type",
                  "boolean", "optimizeScans", "type", "boolean", "quantisationTable", "type",
                  "integer", "minimum", 0, "maximum", 8, "alphaQuality", "type", "integer",
                  "minimum", 0, "maximum", 100, "lossless", "type", "boolean", "nearLossless",
                  "type", "boolean", "smartSubsample", "type", "boolean", "preset", "type",
                  "string", "enum", "default", "photo", "picture", "drawing", "icon", "text",
                  "effort", "type", "integer", "minimum", 0, "maximum", 6, "compressionLevel",
                  "type", "integer", "minimum", 0, "maximum", 9));
    json_object_set_new(
        s, "PromptRequest",
        json_pack("{s:s, s:[s], s:b, s:{s:o, s:o, s:o, s:o, s:o}}", "type", "object", "required",
                  "prompt", "additionalProperties", 0, "properties", "prompt",
                  schema_ref("Graph"), "id", schema_ref("RequestId"), "webhook",
                  webhook_property(0), "webhook_v2", webhook_property(1), "convert_output",
                  schema_ref("ConvertOutput")));
    json_object_set_new(
        s, "ExecutionStats",
        json_pack("{s:s, s:s, s:{s:{s:s, s:{s:{s:s}, s:{s:s}, s:{s:s}, s:{s:s, s:{s:s,"
                  " s:{s:{s:s}}}}}}, s:{s:s}, s:{s:s}, s:{s:s}, s:{s:s}, s:{s:s}}}",
                  "type", "object", "description",
                  "Timings: epoch milliseconds in comfy_execution, durations in "
                  "milliseconds elsewhere.",
                  "properties", "comfy_execution", "type", "object", "properties",
                  "start", "type", "integer", "end", "type", "integer", "duration",
                  "type", "integer", "nodes", "type", "object",
                  "additionalProperties", "type", "object", "properties", "start",
                  "type", "integer", "preprocess_time", "type", "number",
                  "comfy_round_trip_time", "type", "number", "postprocess_time",
                  "type", "number", "upload_time", "type", "number", "total_time",
                  "type", "number"));
    json_object_set_new(
        s, "PromptResponse",
        json_pack("{s:s, s:[s, s, s, s, s], s:{s:o, s:o, s:{s:s, s:s, s:{s:s, s:s}},"
                  " s:{s:s, s:s, s:{s:s}}, s:o}}",
                  "type", "object", "required", "id", "prompt", "images", "filenames",
                  "stats", "properties", "id", schema_ref("RequestId"), "prompt",
                  schema_ref("Graph"), "images", "type", "array", "description",
                  "The output images, base64 encoded, in the order of filenames",
                  "items", "type", "string", "contentEncoding", "base64", "filenames",
                  "type", "array", "description", "Output file names as ComfyUI wrote them",
                  "items", "type", "string", "stats", schema_ref("ExecutionStats")));
    json_object_set_new(
        s, "Status",
        json_pack("{s:s, s:[s, s], s:{s:{s:s}, s:{s:s, s:[s, s, s, s]}, s:{s:s},"
                  " s:{s:s, s:[s, s]}, s:{s:s}, s:{s:s}, s:{s:s}}}",
                  "type", "object", "required", "version", "status", "properties",
                  "version", "type", "string", "status", "type", "string", "enum",
                  "healthy", "not healthy", "ready", "not ready", "comfyui", "type",
                  "string", "websocket", "type", "string", "enum", "connected",
                  "disconnected", "warm", "type", "boolean", "queue_depth", "type",
                  "integer", "jobs_in_flight", "type", "integer"));
    json_object_set_new(
        s, "Accepted",
        json_pack("{s:s, s:s, s:[s, s, s], s:{s:o, s:{s:s, s:s}, s:o, s:{s:s, s:s}}}",
                  "type", "object", "description",
                  "With `webhook` or `webhook_v2`: ComfyUI has queued the graph; the "
                  "result is POSTed to the webhook (and shows in GET /prompt/{id})",
                  "required", "id", "status", "prompt", "properties", "id",
                  schema_ref("RequestId"), "status", "type", "string", "const", "ok",
                  "prompt", schema_ref("Graph"), "input", "type", "object", "description",
                  "/workflow/... only: the input with every default and the seed filled in"));
    json_object_set_new(s, "JobStatus", job_status_schema());
    json_object_set_new(
        s, "InterruptRequest",
        json_pack("{s:s, s:[s], s:{s:o}}", "type", "object", "required", "id", "properties",
                  "id", schema_ref("RequestId")));
    json_object_set_new(
        s, "InterruptResult",
        json_pack("{s:s, s:[s, s], s:{s:{s:s}, s:{s:s, s:[s, s]}}}", "type", "object",
                  "required", "id", "interrupted", "properties", "id", "type", "string",
                  "interrupted", "type", "string", "enum", "success", "failed"));
    return s;
}

static json_t *
shared_responses(void)
{
    json_t *r = json_object(), *unavailable;

    json_object_set_new(r, "BadRequest",
                        error_response("Invalid request; `location` names the field "
                                       "and `error` the rule it breaks"));
    json_object_set_new(r, "NotFound",
                        error_response("No such route or template; for /workflow/... "
                                       "`available` lists the templates"));
    json_object_set_new(r, "PayloadTooLarge",
                        error_response("The body is larger than MAX_BODY_SIZE_MB"));
    json_object_set_new(r, "InternalError",
                        error_response("ComfyUI rejected or failed the prompt, or the "
                                       "sidecar failed"));
    json_object_set_new(r, "BadGateway",
                        error_response("ComfyUI gave an answer the sidecar could not use"));
    unavailable = error_response("ComfyUI is not running (starting, restarting or "
                                 "shutting down); retry after Retry-After seconds");
    json_object_set_new(r, "Unavailable",
                        with_retry_after(unavailable, "Seconds to wait before retrying"));
    json_object_set_new(r, "Conflict",
                        error_response("The job was cancelled (`error_type: cancelled`: "
                                       "DELETE /prompt/{id}, POST /interrupt, or its client "
                                       "hung up), or another job with this id is still in "
                                       "flight (`error_type: id_in_use`)"));
    json_object_set_new(
        r, "TooManyRequests",
        with_retry_after(error_response("The queue is full (MAX_QUEUE_DEPTH): "
                                        "`error_type: queue_full`, and `retry_after` "
                                        "seconds as in the Retry-After header"),
                         "Seconds after which the queue is expected to have room"));
    json_object_set_new(r, "Timeout",
                        error_response("A time limit ended the job: `error_type` is "
                                       "`queue_timeout` (QUEUE_TIMEOUT_S), "
                                       "`execution_timeout` (EXECUTION_TIMEOUT_S) or `hang` "
                                       "(HANG_TIMEOUT_S: ComfyUI made no progress)"));
    json_object_set_new(r, "JobNotFound",
                        error_response("No job with this id (never seen, or dropped from "
                                       "the history)"));
    return r;
}

/* The error responses every generation route shares. */
static void
add_error_responses(json_t *responses, int with_404)
{
    json_object_set_new(responses, "400", ref("responses", "BadRequest"));
    if (with_404)
        json_object_set_new(responses, "404", ref("responses", "NotFound"));
    json_object_set_new(responses, "409", ref("responses", "Conflict"));
    json_object_set_new(responses, "413", ref("responses", "PayloadTooLarge"));
    json_object_set_new(responses, "429", ref("responses", "TooManyRequests"));
    json_object_set_new(responses, "500", ref("responses", "InternalError"));
    json_object_set_new(responses, "502", ref("responses", "BadGateway"));
    json_object_set_new(responses, "503", ref("responses", "Unavailable"));
    json_object_set_new(responses, "504", ref("responses", "Timeout"));
}

/* 200 of a generation route: JSON, or with Accept: text/event-stream the
 * job's event stream. Steals schema. */
static json_t *
result_response(const char *description, json_t *schema)
{
    json_t *r = json_response(description, schema);

    json_object_set_new(json_object_get(r, "content"), "text/event-stream",
                        json_pack("{s:{s:s, s:s}}", "schema", "type", "string", "description",
                                  "With `Accept: text/event-stream`: the job's event stream "
                                  "(see GET /prompt/{id}/events); `completed` carries the "
                                  "images"));
    return r;
}

/* ---- fixed routes ------------------------------------------------------------ */

static json_t *
prompt_operation(void)
{
    json_t *responses = json_pack(
        "{s:o, s:o}", "200",
        result_response("The finished prompt: its outputs and timings",
                        schema_ref("PromptResponse")),
        "202",
        json_response("With `webhook` or `webhook_v2`: queued; the result goes to the webhook",
                      schema_ref("Accepted")));

    add_error_responses(responses, 0);
    return json_pack("{s:{s:s, s:[s], s:s, s:s, s:{s:b, s:{s:{s:o}}}, s:o}}", "post",
                     "operationId", "postPrompt", "tags", "prompt", "summary",
                     "Run a ComfyUI graph", "description",
                     "Queue an API-format graph on ComfyUI, wait for it and answer "
                     "with the output images. Every output file name is prefixed "
                     "with the request id. With `webhook` or `webhook_v2` the answer is "
                     "202 as soon as ComfyUI has queued it, and the result is POSTed "
                     "there.",
                     "requestBody", "required", 1, "content", JSON_CT, "schema",
                     schema_ref("PromptRequest"), "responses", responses);
}

static json_t *
status_operation(const char *op_id, const char *summary, const char *ok,
                 const char *bad_code, const char *bad)
{
    json_t *responses = json_pack("{s:o}", "200",
                                  json_response(ok, schema_ref("Status")));

    json_object_set_new(responses, bad_code, json_response(bad, schema_ref("Status")));
    return json_pack("{s:{s:s, s:[s], s:s, s:o}}", "get", "operationId", op_id, "tags",
                     "status", "summary", summary, "responses", responses);
}

static json_t *
docs_operation(const char *op_id)
{
    return json_pack("{s:{s:s, s:[s], s:s, s:{s:o}}}", "get", "operationId", op_id,
                     "tags", "docs", "summary", "This OpenAPI 3.1 document", "responses",
                     "200",
                     json_response("The OpenAPI document",
                                   json_pack("{s:s}", "type", "object")));
}

static json_t *
query_flag(const char *name, const char *description)
{
    return json_pack("{s:s, s:s, s:s, s:b, s:{s:s, s:b}}", "name", name, "in", "query",
                     "description", description, "required", 0, "schema", "type", "boolean",
                     "default", 0);
}

static json_t *
text_response(const char *description, const char *media_type)
{
    return json_pack("{s:s, s:{s:{s:{s:s}}}}", "description", description, "content",
                     media_type, "schema", "type", "string");
}

/* /prompt/{id}: GET the status, DELETE to cancel. */
static json_t *
job_item(void)
{
    json_t *get, *del;

    get = json_pack("{s:s, s:[s], s:s, s:s, s:[o], s:{s:o, s:o}}", "operationId",
                    "getPromptStatus", "tags", "jobs", "summary", "Where a job is",
                    "description",
                    "`queued` (with `queue_position`), `running` (with `progress`), "
                    "`completed` (with `filenames` and `stats`), `failed` (with `error` "
                    "and `http_status`) or `cancelled`; `webhook` when the job has one.",
                    "parameters",
                    query_flag("images", "completed jobs: fetch the images from ComfyUI "
                                         "again and add them as `images`"),
                    "responses", "200", json_response("The job's status", schema_ref("JobStatus")),
                    "404", ref("responses", "JobNotFound"));
    del = json_pack("{s:s, s:[s], s:s, s:s, s:{s:o, s:o, s:o}}", "operationId",
                    "cancelPrompt", "tags", "jobs", "summary", "Cancel a job",
                    "description",
                    "A queued job is deleted from ComfyUI's queue, a running one is "
                    "interrupted. Its waiting client gets 409 `cancelled`, its webhook "
                    "`prompt.failed`.",
                    "responses", "200",
                    json_response("Cancelled: the job's status (`cancelled`)",
                                  schema_ref("JobStatus")),
                    "404", ref("responses", "JobNotFound"), "409",
                    error_response("The job had already finished; `job` is its status"));
    return json_pack("{s:[{s:s, s:s, s:b, s:s, s:o}], s:o, s:o}", "parameters", "name", "id",
                     "in", "path", "required", 1, "description", "The request id", "schema",
                     schema_ref("RequestId"), "get", get, "delete", del);
}

static json_t *
events_item(void)
{
    json_t *op = json_pack(
        "{s:s, s:[s], s:s, s:s, s:[o, o], s:{s:o, s:o}}", "operationId", "getPromptEvents",
        "tags", "jobs", "summary", "A job's Server-Sent Events",
        "description",
        "Events `queued` (`position`), `started`, `progress` (`node`, `value`, `max`, "
        "`overall`), `preview` (`node`, `mime`, `image`; with ?previews=true), and one "
        "final `completed` (`filenames`, `stats`, `images` with ?images=true), `failed` "
        "(`http_status`, `error`) or `cancelled` (`error`), after which the stream ends. "
        "Each event's data is a JSON object with the job's `id`. A `: heartbeat` comment "
        "every SSE_HEARTBEAT_S seconds.",
        "parameters", query_flag("images", "add the images to `completed`"),
        query_flag("previews", "send ComfyUI's sampler previews as `preview` events"),
        "responses", "200", text_response("The event stream", "text/event-stream"), "404",
        ref("responses", "JobNotFound"));

    return json_pack("{s:[{s:s, s:s, s:b, s:o}], s:o}", "parameters", "name", "id", "in",
                     "path", "required", 1, "schema", schema_ref("RequestId"), "get", op);
}

static json_t *
interrupt_item(void)
{
    return json_pack(
        "{s:{s:s, s:[s], s:s, s:s, s:{s:b, s:{s:{s:o}}}, s:{s:o, s:o, s:o}}}", "post",
        "operationId", "postInterrupt", "tags", "jobs", "summary",
        "Cancel a job (comfyui-api's form)", "description",
        "The same as DELETE /prompt/{id}, answered as comfyui-api does.", "requestBody",
        "required", 1, "content", JSON_CT, "schema", schema_ref("InterruptRequest"),
        "responses", "200",
        json_response("Cancelled: `interrupted: success`", schema_ref("InterruptResult")),
        "404",
        json_response("No such job in flight: `interrupted: failed`",
                      schema_ref("InterruptResult")),
        "400", ref("responses", "BadRequest"));
}

static json_t *
page_item(const char *op_id, const char *tag, const char *summary, const char *ok,
          const char *media_type, const char *not_found)
{
    json_t *responses = json_pack("{s:o}", "200", text_response(ok, media_type));

    if (not_found != NULL)
        json_object_set_new(responses, "404", error_response(not_found));
    return json_pack("{s:{s:s, s:[s], s:s, s:o}}", "get", "operationId", op_id, "tags", tag,
                     "summary", summary, "responses", responses);
}

/* ---- workflow routes ------------------------------------------------------- */

/* Keep an input schema self-consistent with the live enum lists: a property
 * whose enum (ComfyUI's list) lacks the template's default loses "default",
 * and its description says so; the example gets a value the list has. The
 * template's defaults are those of the schema built without object_info. */
static void
reconcile_defaults(json_t *schema, const json_t *offline, json_t *example, json_t *notes)
{
    json_t *props = json_object_get(schema, "properties"), *p;
    const char *name;

    json_object_foreach(props, name, p) {
        json_t *list = json_object_get(p, "enum");
        json_t *def = json_object_get(p, "default");
        json_t *tdef = json_object_get(json_object_get(json_object_get(offline, "properties"),
                                                       name),
                                       "default");
        json_t *ex = json_object_get(example, name), *e;
        size_t i;
        int has_def = 0, has_ex = 0;

        if (!json_is_array(list) || json_array_size(list) == 0)
            continue;
        if (def == NULL)
            def = tdef;
        json_array_foreach(list, i, e) {
            if (def != NULL && json_equal(e, def))
                has_def = 1;
            if (ex != NULL && json_equal(e, ex))
                has_ex = 1;
        }
        if (ex != NULL && !has_ex)
            json_object_set(example, name, json_array_get(list, 0));
        if (def == NULL || has_def)
            continue;
        json_object_del(p, "default");
        if (json_is_string(def)) {
            const char *d = json_string_value(def);
            const char *cur = json_string_value(json_object_get(p, "description"));
            char *text, *old_note, *at;
            size_t n = (cur != NULL ? strlen(cur) : 0) + 2 * strlen(d) + 200;

            /* template.c's own shorter note, if any, gives way to this one. */
            old_note = xmalloc(strlen(d) + 64);
            snprintf(old_note, strlen(d) + 64, " Default: %s (ComfyUI does not offer it right "
                     "now).", d);
            if (cur != NULL && (at = strstr(cur, old_note)) != NULL) {
                char *trimmed = xstrdup(cur);
                memmove(trimmed + (at - cur), trimmed + (at - cur) + strlen(old_note),
                        strlen(at + strlen(old_note)) + 1);
                json_object_set_new(p, "description", json_string(trimmed));
                free(trimmed);
                cur = json_string_value(json_object_get(p, "description"));
            }
            free(old_note);
            text = xmalloc(n);
            snprintf(text, n,
                     "%s%sThe template's default, `%s`, is not installed in ComfyUI: "
                     "a request that leaves `%s` out is refused (400); send one of the "
                     "listed values.",
                     cur != NULL ? cur : "",
                     cur == NULL || *cur == '\0'          ? ""
                     : cur[strlen(cur) - 1] == '.' ? " "
                                                   : ". ",
                     d, name);
            json_object_set_new(p, "description", json_string(text));
            free(text);
            json_array_append_new(notes, json_pack("{s:s, s:s}", "name", name, "default", d));
        }
    }
}

/* Template paths are [A-Za-z0-9_-] segments joined by '/', so replacing
 * '/' with '.' gives distinct component names. */
static void
dotted(char *dst, size_t n, const char *path)
{
    size_t i;

    snprintf(dst, n, "%s", path);
    for (i = 0; dst[i] != '\0'; i++)
        if (dst[i] == '/')
            dst[i] = '.';
}

/* operationIds are identifiers for code generators: "a-b" and "a_b" both
 * become workflow_a_b, so a counter keeps them unique. */
static void
operation_id(char *dst, size_t n, const char *path, json_t *seen)
{
    char base[300];
    size_t i;
    int k;

    snprintf(base, sizeof(base), "workflow_%s", path);
    for (i = 0; base[i] != '\0'; i++)
        if (base[i] == '/' || base[i] == '-')
            base[i] = '_';
    snprintf(dst, n, "%s", base);
    for (k = 2; json_object_get(seen, dst) != NULL; k++)
        snprintf(dst, n, "%s_%d", base, k);
    json_object_set_new(seen, dst, json_true());
}

static void
add_workflow(json_t *paths, json_t *schemas, const struct tpl *t,
             const json_t *object_info, json_t *seen)
{
    char dot[300], name[340], aname[340], op_id[340], url[300];
    char *table = tpl_params_markdown(t, object_info);
    const char *summary = tpl_summary(t), *desc = tpl_description(t);
    json_t *responses, *op, *req, *resp, *input_ref, *input, *offline, *example, *accepted;
    json_t *notes = json_array();
    size_t n, i, n_notes;
    char *text;

    dotted(dot, sizeof(dot), tpl_path(t));
    snprintf(name, sizeof(name), "%s.Input", dot);
    input = tpl_input_schema(t, object_info);
    offline = tpl_input_schema(t, NULL);
    example = tpl_input_example(t, object_info);
    reconcile_defaults(input, offline, example, notes);
    json_decref(offline);
    json_object_set_new(schemas, name, input);
    input_ref = schema_ref(name);

    req = json_pack("{s:s, s:b, s:{s:O, s:o, s:o, s:o, s:o}}", "type", "object",
                    "additionalProperties", 0, "properties", "input", input_ref, "id",
                    schema_ref("RequestId"), "webhook", webhook_property(0), "webhook_v2",
                    webhook_property(1), "convert_output", schema_ref("ConvertOutput"));
    /* `input` may be left out only if every parameter has a default. */
    if (json_object_get(json_object_get(schemas, name), "required") != NULL)
        json_object_set_new(req, "required", json_pack("[s]", "input"));
    snprintf(name, sizeof(name), "%s.Request", dot);
    json_object_set_new(schemas, name, req);

    /* 3.1 schemas allow siblings next to $ref: the note rides along. */
    resp = json_pack("{s:[o, {s:[s], s:{s:{s:O, s:s}}}]}", "allOf",
                     schema_ref("PromptResponse"), "required", "input", "properties",
                     "input", "$ref", json_object_get(input_ref, "$ref"),
                     "description",
                     "The input with every default and the seed used filled in: "
                     "send it again to reproduce the result");
    snprintf(name, sizeof(name), "%s.Response", dot);
    json_object_set_new(schemas, name, resp);
    accepted = json_pack("{s:[o, {s:[s], s:{s:{s:O, s:s}}}]}", "allOf",
                         schema_ref("Accepted"), "required", "input", "properties", "input",
                         "$ref", json_object_get(input_ref, "$ref"), "description",
                         "The input with every default and the seed used filled in");
    snprintf(aname, sizeof(aname), "%s.Accepted", dot);
    json_object_set_new(schemas, aname, accepted);
    json_decref(input_ref);

    responses = json_pack(
        "{s:o, s:o}", "200",
        result_response("The finished workflow: outputs, timings, and the input used",
                        schema_ref(name)),
        "202",
        json_response("With `webhook` or `webhook_v2`: queued; the result goes to the webhook",
                      schema_ref(aname)));
    add_error_responses(responses, 1);

    /* The table shows the template's defaults; say which ones ComfyUI lacks. */
    n = strlen(desc) + strlen(table) + 4;
    for (i = 0; i < json_array_size(notes); i++)
        n += 200 + 2 * strlen(json_string_value(json_object_get(json_array_get(notes, i),
                                                                "default")));
    text = xmalloc(n);
    snprintf(text, n, "%s%s%s", desc, *desc != '\0' ? "\n\n" : "", table);
    for (i = 0; i < json_array_size(notes); i++) {
        json_t *nt = json_array_get(notes, i);
        size_t len = strlen(text);

        snprintf(text + len, n - len,
                 "%s**Not installed in ComfyUI:** `%s`, the default of `%s`; send one "
                 "of the allowed values.",
                 len > 0 && text[len - 1] == '\n' ? "\n" : "\n\n",
                 json_string_value(json_object_get(nt, "default")),
                 json_string_value(json_object_get(nt, "name")));
    }
    n_notes = json_array_size(notes);
    json_decref(notes);
    operation_id(op_id, sizeof(op_id), tpl_path(t), seen);
    snprintf(name, sizeof(name), "%s.Request", dot);
    op = json_pack("{s:s, s:[s], s:s, s:s, s:{s:b, s:{s:{s:o, s:{s:{s:s, s:{s:o}}}}}},"
                   " s:o}",
                   "operationId", op_id, "tags", "workflows", "summary",
                   *summary != '\0' ? summary : tpl_path(t), "description", text,
                   "requestBody", "required", 1, "content", JSON_CT, "schema",
                   schema_ref(name), "examples", "defaults", "summary",
                   n_notes > 0 ? "The defaults, with an installed value where the "
                                 "template's default is not installed (seed left out: "
                                 "random)"
                               : "The defaults (seed left out: random)",
                   "value", "input",
                   example, "responses", responses);
    snprintf(url, sizeof(url), "/workflow/%s", tpl_path(t));
    json_object_set_new(paths, url, json_pack("{s:o}", "post", op));
    free(text);
    free(table);
}

json_t *
openapi_document(const struct tpl_set *set, const json_t *object_info,
                 const char *server_url)
{
    json_t *doc, *paths = json_object(), *schemas = shared_schemas();
    json_t *seen = json_object();
    size_t i;

    json_object_set_new(paths, "/prompt", prompt_operation());
    json_object_set_new(paths, "/health",
                        status_operation("getHealth", "Liveness",
                                         "Healthy: ComfyUI has been warm at least once",
                                         "500", "Not healthy yet"));
    json_object_set_new(paths, "/ready",
                        status_operation("getReady", "Readiness",
                                         "Ready: ComfyUI is up, connected and warm",
                                         "503", "Not ready: do not send work now"));
    json_object_set_new(paths, "/prompt/{id}", job_item());
    json_object_set_new(paths, "/prompt/{id}/events", events_item());
    json_object_set_new(paths, "/interrupt", interrupt_item());
    json_object_set_new(paths, "/metrics",
                        page_item("getMetrics", "status", "Prometheus metrics",
                                  "Counters, gauges and histograms in Prometheus' text "
                                  "format 0.0.4 (`text/plain; version=0.0.4`)",
                                  "text/plain", NULL));
    json_object_set_new(paths, "/",
                        page_item("getPlayground", "docs", "The playground page",
                                  "A form per workflow template, to run them in a browser",
                                  "text/html", "PLAYGROUND=false: no playground"));
    json_object_set_new(paths, "/docs",
                        page_item("getDocs", "docs", "This document in Swagger UI",
                                  "Swagger UI, served from local files", "text/html", NULL));
    json_object_set_new(paths, "/docs/json", docs_operation("getDocsJson"));
    json_object_set_new(paths, "/openapi.json", docs_operation("getOpenapiJson"));
    for (i = 0; set != NULL && i < tpl_count(set); i++)
        add_workflow(paths, schemas, tpl_at(set, i), object_info, seen);
    json_decref(seen);

    doc = json_pack(
        "{s:s, s:{s:s, s:s, s:s}, s:[{s:s, s:s}, {s:s, s:s}, {s:s, s:s}, {s:s, s:s},"
        " {s:s, s:s}], s:o, s:{s:o, s:o}}",
        "openapi", "3.1.0", "info", "title", "comfy-sidecar", "version",
        SIDECAR_VERSION, "description",
        "A REST API in front of ComfyUI: run API-format graphs (POST /prompt) or "
        "the workflow templates (POST /workflow/...), which take a few "
        "validated parameters instead of a graph.",
        "tags", "name", "prompt", "description", "Run a raw ComfyUI graph", "name",
        "workflows", "description", "Workflow templates", "name", "jobs", "description",
        "Follow or cancel a job by its request id", "name", "status",
        "description", "Health, readiness and metrics", "name", "docs", "description",
        "This document and the pages",
        "paths", paths, "components", "schemas", schemas, "responses",
        shared_responses());
    if (server_url != NULL)
        json_object_set_new(doc, "servers", json_pack("[{s:s}]", "url", server_url));
    return doc;
}
