/* render.h - the JSON of a finished job's result, written straight into an
 * evbuffer: the synchronous answer, the SSE `completed` event and the
 * webhook bodies share it. Images are base64-encoded into the buffer
 * without an intermediate copy or JSON tree. */
#ifndef SIDECAR_RENDER_H
#define SIDECAR_RENDER_H

#include <jansson.h>

struct evbuffer;
struct job_result;
struct job_output;

/* Append {<head fields...>, "id", "prompt"?, "images"?, "filenames",
 * "stats", "input"?} for a successful result. head (borrowed, may be NULL)
 * supplies leading fields such as "type" and "timestamp". outs/n_outs
 * override res->outputs when not NULL (outputs fetched again). */
void render_result(struct evbuffer *out, const struct job_result *res,
                   json_t *head, int with_prompt, int with_images,
                   const struct job_output *outs, size_t n_outs);

/* Append one output as a JSON string of its base64. */
void render_b64_string(struct evbuffer *out, const unsigned char *data,
                       size_t len);

/* "sub/name" or "name" as a new JSON string. */
json_t *render_filename(const struct job_output *o);

/* jansson -> evbuffer, for json_dump_callback. */
int render_dump_cb(const char *buf, size_t size, void *evbuffer);

#endif
