/* template.h - workflow templates: an exported ComfyUI graph plus a
 * parameter block, turned into a validated, filled-in graph (pure: jansson
 * and libc; the only I/O is the directory walk in tpl_load_dir).
 *
 * The file format is documented for operators in comfy-workflows/README.md.
 * A template file is
 *   {"summary", "description", "parameters": {name: {...}}, "rules": [...],
 *    "graph": {<ComfyUI "Export (API)" graph, unmodified>}}
 * and POST /workflow/<path> serves it, <path> being the file's path under
 * the template folder without ".json". */
#ifndef SIDECAR_TEMPLATE_H
#define SIDECAR_TEMPLATE_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "request.h"

/* Seeds and other "random" defaults are drawn from 0..TPL_RANDOM_MAX: the
 * largest integer a JSON client (JavaScript double) holds exactly. */
#define TPL_RANDOM_MAX 9007199254740991LL /* 2^53 - 1 */

struct tpl;     /* one template; immutable once loaded */
struct tpl_set; /* every template loaded from one folder, plus the errors */

/* Load every *.json under dir (recursively, in sorted order), except the
 * top-level folder warmup/ (plain graphs for WARMUP_PROMPT_FILE) and names
 * starting with '.'. A file that fails to load is recorded as an error
 * "<file>: <reason>" and skipped; the others still load. Never returns
 * NULL; caller frees with tpl_set_free. */
struct tpl_set *tpl_load_dir(const char *dir);

void tpl_set_free(struct tpl_set *set);

size_t tpl_count(const struct tpl_set *set);
/* Borrowed; templates are sorted by path. i < tpl_count(). */
const struct tpl *tpl_at(const struct tpl_set *set, size_t i);
size_t tpl_error_count(const struct tpl_set *set);
/* Borrowed "file: reason" text; i < tpl_error_count(). */
const char *tpl_error_at(const struct tpl_set *set, size_t i);
/* Borrowed, or NULL if no template has this path ("sdxl/txt2img"). */
const struct tpl *tpl_find(const struct tpl_set *set, const char *path);

/* Build one template from a parsed file (root is borrowed; the graph is
 * copied). path is its URL path, file the name used in errors. Returns NULL
 * and writes "reason" (without the file name) to err on failure. For tests
 * and fuzzing; tpl_load_dir uses it for each file. Free with tpl_free. */
struct tpl *tpl_from_json(const char *path, const char *file, const json_t *root,
                          char *err, size_t errlen);
void tpl_free(struct tpl *t);

/* Borrowed strings; summary and description are "" when the file has none. */
const char *tpl_path(const struct tpl *t);
const char *tpl_file(const struct tpl *t);
const char *tpl_summary(const struct tpl *t);
const char *tpl_description(const struct tpl *t);
/* Borrowed: the graph as exported (never modified). */
const json_t *tpl_graph(const struct tpl *t);

/* Validate input (borrowed; NULL means {}) against t, fill in defaults
 * (a "random" default is rand64(rng) reduced to the parameter's range) and
 * write every value into a deep copy of the graph.
 *
 * object_info (borrowed, may be NULL) is ComfyUI's merged /object_info
 * (class -> info); it supplies the allowed values of enum_from parameters.
 * Without it, or when it lacks the class or input, or offers no values,
 * such a parameter accepts any string and ComfyUI judges it.
 *
 * On success returns 0 and sets *graph_out (the graph to submit; filename
 * prefixes not yet rewritten) and *input_out (every parameter, in template
 * order, with defaults and drawn seeds filled in), both new references. On
 * failure returns -1 and fills err: status 400 with location
 * "input.<name>" or "input" (500 if a random value is needed and rand64 is
 * NULL). */
int tpl_render(const struct tpl *t, json_t *input, const json_t *object_info,
               uint64_t (*rand64)(void *), void *rng, json_t **graph_out,
               json_t **input_out, struct req_error *err);

/* JSON Schema (2020-12, as OpenAPI 3.1 uses it) of t's `input` object, with
 * live enum lists from object_info (may be NULL). New reference. */
json_t *tpl_input_schema(const struct tpl *t, const json_t *object_info);

/* An example `input` built from each parameter's example or default; random
 * seeds and derived defaults are left out. New reference. */
json_t *tpl_input_example(const struct tpl *t, const json_t *object_info);

/* A Markdown table of t's parameters for documentation. Caller frees. */
char *tpl_params_markdown(const struct tpl *t, const json_t *object_info);

/* The allowed values of a combo input, spec "Class.input", in object_info
 * (class -> info). Understands the classic [[values...], {opts}] and the V3
 * ["COMBO", {"options": [...]}] forms, required or optional inputs. Returns
 * a borrowed array inside object_info, or NULL if not found / not a combo. */
const json_t *tpl_object_info_choices(const json_t *object_info, const char *spec);

#endif
