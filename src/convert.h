/* convert.h - convert_output: re-encode output images as JPEG, WebP or PNG
 * with libvips, on a worker thread so that encoding never blocks the event
 * loop. conv_parse is pure (request validation); the rest is the worker. */
#ifndef SIDECAR_CONVERT_H
#define SIDECAR_CONVERT_H

#include <jansson.h>
#include <stddef.h>

struct event_base;
struct req_error;
struct conv;
struct conv_task;

enum conv_format { CONV_JPEG, CONV_WEBP, CONV_PNG };

struct conv_opts {
    enum conv_format format;
    char ext[8]; /* "jpeg", "jpg", "webp", "png": the file name's new extension */
    /* JPEG */
    int quality, progressive, subsample444, optimize_coding, mozjpeg, trellis,
        overshoot, optimize_scans, quant_table;
    /* WebP (quality shared) */
    int alpha_quality, lossless, near_lossless, smart_subsample, preset, effort;
    /* PNG */
    int compression;
};

/* Validate comfyui-api's {format, options} (contract §5.3) into out. Each
 * format takes only its own options. -1 with err (400, location
 * convert_output.<field>) on a bad value. */
int conv_parse(json_t *spec, struct conv_opts *out, struct req_error *err);

struct conv *conv_new(struct event_base *base);
void conv_free(struct conv *c);

/* out is malloc'd and owned by the callee; on failure out is NULL and err
 * says why. Runs on the main thread. */
typedef void (*conv_done_fn)(unsigned char *out, size_t len, const char *err, void *arg);

/* Encode a copy of data (the caller keeps data). Never calls done
 * synchronously. */
struct conv_task *conv_run(struct conv *c, const struct conv_opts *o,
                           const unsigned char *data, size_t len, conv_done_fn done, void *arg);

/* Drop a task; its done will not be called. */
void conv_cancel(struct conv_task *t);

#endif
