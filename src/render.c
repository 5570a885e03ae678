/* render.c - result JSON written straight into an evbuffer (see render.h).
 *
 * Owns nothing; it exists so the three places that answer with a job's
 * images (sync reply, event stream, webhook) produce the same bytes and
 * share the one copy-free base64 path. */
#include <event2/buffer.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "b64.h"
#include "job.h"
#include "render.h"
#include "util.h"

int
render_dump_cb(const char *buf, size_t size, void *data)
{
    return evbuffer_add(data, buf, size);
}

static void
dump(struct evbuffer *out, json_t *v)
{
    json_dump_callback(v, render_dump_cb, out, JSON_COMPACT | JSON_ENCODE_ANY);
}

void
render_b64_string(struct evbuffer *out, const unsigned char *data, size_t len)
{
    size_t n = b64_encoded_len(len);
    struct evbuffer_iovec vec;

    evbuffer_add(out, "\"", 1);
    /* Encode into space reserved in the buffer itself: no second copy. */
    if (n > 0 && evbuffer_reserve_space(out, (ev_ssize_t)n, &vec, 1) == 1) {
        vec.iov_len = b64_encode(data, len, vec.iov_base);
        evbuffer_commit_space(out, &vec, 1);
    }
    evbuffer_add(out, "\"", 1);
}

json_t *
render_filename(const struct job_output *o)
{
    size_t len = strlen(o->subfolder) + strlen(o->filename) + 2;
    char *name = xmalloc(len);
    json_t *s;

    snprintf(name, len, "%s%s%s", o->subfolder, o->subfolder[0] ? "/" : "",
             o->filename);
    s = json_string(name);
    free(name);
    return s;
}

void
render_result(struct evbuffer *out, const struct job_result *res, json_t *head,
              int with_prompt, int with_images, const struct job_output *outs,
              size_t n_outs)
{
    const char *key;
    json_t *v, *id;
    size_t i;

    if (outs == NULL) {
        outs = res->outputs;
        n_outs = res->n_outputs;
    }
    evbuffer_add(out, "{", 1);
    json_object_foreach(head, key, v) {
        json_t *k = json_string(key);
        dump(out, k);
        json_decref(k);
        evbuffer_add(out, ":", 1);
        dump(out, v);
        evbuffer_add(out, ",", 1);
    }
    evbuffer_add(out, "\"id\":", 5);
    id = json_string(res->id);
    dump(out, id);
    json_decref(id);
    if (with_prompt) {
        evbuffer_add(out, ",\"prompt\":", 10);
        dump(out, res->prompt);
    }
    if (with_images) {
        evbuffer_add(out, ",\"images\":[", 11);
        for (i = 0; i < n_outs; i++) {
            if (i > 0)
                evbuffer_add(out, ",", 1);
            render_b64_string(out, outs[i].data, outs[i].len);
        }
        evbuffer_add(out, "]", 1);
    }
    evbuffer_add(out, ",\"filenames\":[", 14);
    for (i = 0; i < n_outs; i++) {
        json_t *s = render_filename(&outs[i]);
        if (i > 0)
            evbuffer_add(out, ",", 1);
        dump(out, s);
        json_decref(s);
    }
    /* What each image is: nothing a save node made is dropped, so clients
     * must be able to tell a PNG from a GIF, a video or a sound. */
    evbuffer_add(out, "],\"outputs\":[", 13);
    for (i = 0; i < n_outs; i++) {
        json_t *d = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s}", "node", outs[i].node_id,
                              "kind", outs[i].kind != NULL ? outs[i].kind : "images",
                              "filename", outs[i].filename, "subfolder", outs[i].subfolder,
                              "type", outs[i].type,
                              "mime", outs[i].mime != NULL ? outs[i].mime : "image/png");
        if (i > 0)
            evbuffer_add(out, ",", 1);
        dump(out, d);
        json_decref(d);
    }
    evbuffer_add(out, "]", 1);
    if (res->texts != NULL) {
        evbuffer_add(out, ",\"texts\":", 9);
        dump(out, res->texts);
    }
    evbuffer_add(out, ",\"stats\":", 9);
    dump(out, res->stats);
    if (res->input != NULL) {
        evbuffer_add(out, ",\"input\":", 9);
        dump(out, res->input);
    }
    evbuffer_add(out, "}", 1);
}
