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

/* ---- components ------------------------------------------------------------ */

static json_t *
shared_schemas(void)
{
    json_t *s = json_object();

    json_object_set_new(
        s, "Error",
        json_pack("{s:s, s:s, s:[s], s:{s:{s:s, s:s}, s:{s:s, s:s}, s:{s:s}, s:{s:s},"
                  " s:{s:s}, s:{s:s}, s:{s:s}, s:{s:s}, s:{s:s, s:{s:s}, s:s}}}",
                  "type", "object", "description",
                  "Every error answer. `location` names the culprit: a body field "
                  "(`id`, `prompt.<node>.inputs.<input>`, `input.<parameter>`), "
                  "`body`, `path`, or `comfyui`.",
                  "required", "error", "properties", "error", "type", "string",
                  "description", "What went wrong, for humans", "location", "type",
                  "string", "description", "Where: a dotted path into the request, or a component",
                  "error_type", "type", "string", "node_id", "type", "string",
                  "node_type", "type", "string", "exception_type", "type", "string",
                  "exception_message", "type", "string", "node_errors", "type",
                  "object", "available", "type", "array", "items", "type", "string",
                  "description", "404 on /workflow/...: the template paths that exist"));
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
        s, "PromptRequest",
        json_pack("{s:s, s:[s], s:b, s:{s:o, s:o}}", "type", "object", "required",
                  "prompt", "additionalProperties", 0, "properties", "prompt",
                  schema_ref("Graph"), "id", schema_ref("RequestId")));
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
    json_object_set_new(unavailable, "headers",
                        json_pack("{s:{s:s, s:{s:s}}}", "Retry-After", "description",
                                  "Seconds to wait before retrying", "schema", "type",
                                  "integer"));
    json_object_set_new(r, "Unavailable", unavailable);
    return r;
}

/* The error responses every generation route shares. */
static void
add_error_responses(json_t *responses, int with_404)
{
    json_object_set_new(responses, "400", ref("responses", "BadRequest"));
    if (with_404)
        json_object_set_new(responses, "404", ref("responses", "NotFound"));
    json_object_set_new(responses, "413", ref("responses", "PayloadTooLarge"));
    json_object_set_new(responses, "500", ref("responses", "InternalError"));
    json_object_set_new(responses, "502", ref("responses", "BadGateway"));
    json_object_set_new(responses, "503", ref("responses", "Unavailable"));
}

/* ---- fixed routes ------------------------------------------------------------ */

static json_t *
prompt_operation(void)
{
    json_t *responses = json_pack(
        "{s:o}", "200",
        json_response("The finished prompt: its outputs and timings",
                      schema_ref("PromptResponse")));

    add_error_responses(responses, 0);
    return json_pack("{s:{s:s, s:[s], s:s, s:s, s:{s:b, s:{s:{s:o}}}, s:o}}", "post",
                     "operationId", "postPrompt", "tags", "prompt", "summary",
                     "Run a ComfyUI graph", "description",
                     "Queue an API-format graph on ComfyUI, wait for it and answer "
                     "with the output images. Every output file name is prefixed "
                     "with the request id.",
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

/* ---- workflow routes ------------------------------------------------------- */

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
    char dot[300], name[340], op_id[340], url[300];
    char *table = tpl_params_markdown(t, object_info);
    const char *summary = tpl_summary(t), *desc = tpl_description(t);
    json_t *responses, *op, *req, *resp, *input_ref;
    size_t n;
    char *text;

    dotted(dot, sizeof(dot), tpl_path(t));
    snprintf(name, sizeof(name), "%s.Input", dot);
    json_object_set_new(schemas, name, tpl_input_schema(t, object_info));
    input_ref = schema_ref(name);

    req = json_pack("{s:s, s:b, s:{s:O, s:o}}", "type", "object",
                    "additionalProperties", 0, "properties", "input", input_ref, "id",
                    schema_ref("RequestId"));
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
    json_decref(input_ref);

    responses = json_pack(
        "{s:o}", "200",
        json_response("The finished workflow: outputs, timings, and the input used",
                      schema_ref(name)));
    add_error_responses(responses, 1);

    n = strlen(desc) + strlen(table) + 4;
    text = xmalloc(n);
    snprintf(text, n, "%s%s%s", desc, *desc != '\0' ? "\n\n" : "", table);
    operation_id(op_id, sizeof(op_id), tpl_path(t), seen);
    snprintf(name, sizeof(name), "%s.Request", dot);
    op = json_pack("{s:s, s:[s], s:s, s:s, s:{s:b, s:{s:{s:o, s:{s:{s:s, s:{s:o}}}}}},"
                   " s:o}",
                   "operationId", op_id, "tags", "workflows", "summary",
                   *summary != '\0' ? summary : tpl_path(t), "description", text,
                   "requestBody", "required", 1, "content", JSON_CT, "schema",
                   schema_ref(name), "examples", "defaults", "summary",
                   "The defaults (seed left out: random)", "value", "input",
                   tpl_input_example(t, object_info), "responses", responses);
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
    json_object_set_new(paths, "/docs/json", docs_operation("getDocsJson"));
    json_object_set_new(paths, "/openapi.json", docs_operation("getOpenapiJson"));
    for (i = 0; set != NULL && i < tpl_count(set); i++)
        add_workflow(paths, schemas, tpl_at(set, i), object_info, seen);
    json_decref(seen);

    doc = json_pack(
        "{s:s, s:{s:s, s:s, s:s}, s:[{s:s, s:s}, {s:s, s:s}, {s:s, s:s}, {s:s, s:s}],"
        " s:o, s:{s:o, s:o}}",
        "openapi", "3.1.0", "info", "title", "comfy-sidecar", "version",
        SIDECAR_VERSION, "description",
        "A REST API in front of ComfyUI: run API-format graphs (POST /prompt) or "
        "the workflow templates (POST /workflow/...), which take a few "
        "validated parameters instead of a graph.",
        "tags", "name", "prompt", "description", "Run a raw ComfyUI graph", "name",
        "workflows", "description", "Workflow templates", "name", "status",
        "description", "Health and readiness", "name", "docs", "description",
        "This document",
        "paths", paths, "components", "schemas", schemas, "responses",
        shared_responses());
    if (server_url != NULL)
        json_object_set_new(doc, "servers", json_pack("[{s:s}]", "url", server_url));
    return doc;
}
