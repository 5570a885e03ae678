/* convert.c - output conversion with libvips on a worker thread (see
 * convert.h).
 *
 * Owns the worker thread, its queue of tasks, and the pipe through which
 * finished tasks come back to the event loop (the same hand-off as the
 * websocket thread). libvips is loaded (dlopen) and initialised by the
 * worker at the first conversion: it drags in a hundred libraries, and a
 * sidecar that never converts should not carry their pages (idle RSS went
 * from 11 to 25 MB when it was linked in). A task is owned by the
 * queue until the worker takes it, by the worker while it runs, and by the
 * main thread once it is back; a cancelled task is freed by whoever holds
 * it then. */
#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>
#include <dlfcn.h>
#include <vips/vips.h>

#include "convert.h"
#include "log.h"
#include "request.h"
#include "utf8.h"
#include "util.h"

struct conv_task {
    struct conv_task *next;
    struct conv *c;
    struct conv_opts o;
    unsigned char *in, *out;
    size_t in_len, out_len;
    char err[256];
    conv_done_fn done;
    void *arg;
    int cancelled; /* main thread only */
};

struct conv {
    struct event_base *base;
    pthread_t thread;
    int started;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    struct conv_task *head, *tail; /* waiting, under lock */
    struct conv_task *running;     /* under lock */
    int stop;
    int pipe_r, pipe_w;
    struct event *ev;
};

/* ---- validation (pure) ------------------------------------------------------------ */

static int
opt_err(struct req_error *err, const char *field, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int
opt_err(struct req_error *err, const char *field, const char *fmt, ...)
{
    va_list ap;

    err->status = 400;
    snprintf(err->location, sizeof(err->location), "convert_output.%s", field);
    va_start(ap, fmt);
    vsnprintf(err->message, sizeof(err->message), fmt, ap);
    va_end(ap);
    utf8_fix(err->message);
    utf8_fix(err->location);
    return -1;
}

static int
get_bool(json_t *v, const char *key, int *out, struct req_error *err, char *loc)
{
    if (!json_is_boolean(v))
        return opt_err(err, loc, "\"%s\" must be true or false", key);
    *out = json_is_true(v);
    return 0;
}

static int
get_int(json_t *v, const char *key, int lo, int hi, int *out, struct req_error *err, char *loc)
{
    double d;

    if (!json_is_number(v))
        return opt_err(err, loc, "\"%s\" must be a number", key);
    d = json_number_value(v);
    /* Range first: converting 1e300 to an integer is undefined. */
    if (d < lo || d > hi || d != (double)(long long)d)
        return opt_err(err, loc, "\"%s\" must be an integer from %d to %d", key, lo, hi);
    *out = (int)d;
    return 0;
}

int
conv_parse(json_t *spec, struct conv_opts *o, struct req_error *err)
{
    static const char *const presets[] = {"default", "picture", "photo", "drawing",
                                          "icon", "text", NULL};
    const char *fmt, *key;
    json_t *opts, *v;
    char loc[160];

    memset(o, 0, sizeof(*o));
    o->quality = 80;
    o->alpha_quality = 100;
    o->effort = 4;
    o->optimize_coding = 1;
    o->compression = 6;
    if (!json_is_object(spec))
        return opt_err(err, "format", "%s", "\"convert_output\" must be an object with a "
                                           "\"format\": jpeg, webp or png");
    json_object_foreach(spec, key, v) {
        if (strcmp(key, "format") != 0 && strcmp(key, "options") != 0)
            return opt_err(err, key, "unknown field \"%s\" (format, options)", key);
    }
    fmt = json_string_value(json_object_get(spec, "format"));
    if (fmt == NULL || (strcmp(fmt, "jpeg") != 0 && strcmp(fmt, "jpg") != 0 &&
                        strcmp(fmt, "webp") != 0 && strcmp(fmt, "png") != 0))
        return opt_err(err, "format", "%s", "\"format\" must be \"jpeg\", \"jpg\", \"webp\" or \"png\"");
    o->format = fmt[0] == 'j' ? CONV_JPEG : fmt[0] == 'w' ? CONV_WEBP : CONV_PNG;
    snprintf(o->ext, sizeof(o->ext), "%s", fmt);
    opts = json_object_get(spec, "options");
    if (opts == NULL || json_is_null(opts))
        return 0;
    if (!json_is_object(opts))
        return opt_err(err, "options", "%s", "\"options\" must be an object");
    json_object_foreach(opts, key, v) {
        int rc = -2, i;

        snprintf(loc, sizeof(loc), "options.%.100s", key);
        if (strcmp(key, "quality") == 0 && o->format != CONV_PNG)
            rc = get_int(v, key, 1, 100, &o->quality, err, loc);
        else if (o->format == CONV_JPEG) {
            if (strcmp(key, "progressive") == 0)
                rc = get_bool(v, key, &o->progressive, err, loc);
            else if (strcmp(key, "chromaSubsampling") == 0) {
                const char *cs = json_string_value(v);
                if (cs == NULL || (strcmp(cs, "4:2:0") != 0 && strcmp(cs, "4:4:4") != 0))
                    return opt_err(err, loc, "%s", "\"chromaSubsampling\" must be \"4:2:0\" or \"4:4:4\"");
                o->subsample444 = strcmp(cs, "4:4:4") == 0;
                rc = 0;
            } else if (strcmp(key, "optimizeCoding") == 0)
                rc = get_bool(v, key, &o->optimize_coding, err, loc);
            else if (strcmp(key, "mozjpeg") == 0)
                rc = get_bool(v, key, &o->mozjpeg, err, loc);
            else if (strcmp(key, "trellisQuantisation") == 0)
                rc = get_bool(v, key, &o->trellis, err, loc);
            else if (strcmp(key, "overshootDeringing") == 0)
                rc = get_bool(v, key, &o->overshoot, err, loc);
            else if (strcmp(key, "optimizeScans") == 0)
                rc = get_bool(v, key, &o->optimize_scans, err, loc);
            else if (strcmp(key, "quantisationTable") == 0)
                rc = get_int(v, key, 0, 8, &o->quant_table, err, loc);
        } else if (o->format == CONV_WEBP) {
            if (strcmp(key, "alphaQuality") == 0)
                rc = get_int(v, key, 0, 100, &o->alpha_quality, err, loc);
            else if (strcmp(key, "lossless") == 0)
                rc = get_bool(v, key, &o->lossless, err, loc);
            else if (strcmp(key, "nearLossless") == 0)
                rc = get_bool(v, key, &o->near_lossless, err, loc);
            else if (strcmp(key, "smartSubsample") == 0)
                rc = get_bool(v, key, &o->smart_subsample, err, loc);
            else if (strcmp(key, "effort") == 0)
                rc = get_int(v, key, 0, 6, &o->effort, err, loc);
            else if (strcmp(key, "preset") == 0) {
                const char *ps = json_string_value(v);
                for (i = 0; ps != NULL && presets[i] != NULL; i++)
                    if (strcmp(ps, presets[i]) == 0)
                        break;
                if (ps == NULL || presets[i] == NULL)
                    return opt_err(err, loc, "%s", "\"preset\" must be one of default, photo, "
                                                   "picture, drawing, icon, text");
                o->preset = i;
                rc = 0;
            }
        } else if (strcmp(key, "compressionLevel") == 0) {
            rc = get_int(v, key, 0, 9, &o->compression, err, loc);
        }
        if (rc == -1)
            return -1;
        if (rc == -2)
            return opt_err(err, loc, "option \"%s\" does not apply to %s", key, fmt);
    }
    return 0;
}

/* ---- the worker ---------------------------------------------------------------------- */

/* The libvips (and GLib) calls we make, resolved at the first conversion. */
static struct {
    int (*init)(const char *argv0);
    void (*cache_set_max)(int);
    void (*concurrency_set)(int);
    VipsImage *(*new_from_buffer)(const void *, size_t, const char *, ...);
    int (*jpegsave_buffer)(VipsImage *, void **, size_t *, ...);
    int (*webpsave_buffer)(VipsImage *, void **, size_t *, ...);
    int (*pngsave_buffer)(VipsImage *, void **, size_t *, ...);
    const char *(*error_buffer)(void);
    void (*error_clear)(void);
    void (*thread_shutdown)(void);
    void (*shutdown)(void);
    void (*g_free)(void *);
    void (*g_object_unref)(void *);
} vips;

static int
load_vips(char *why, size_t len)
{
    void *h = dlopen("libvips.so.42", RTLD_NOW | RTLD_GLOBAL);

    if (h == NULL) {
        snprintf(why, len, "cannot load libvips (libvips42): %s", dlerror());
        return -1;
    }
#define SYM(field, name)                                                                   \
    do {                                                                                   \
        *(void **)(&vips.field) = dlsym(h, name);                                          \
        if (vips.field == NULL) {                                                          \
            snprintf(why, len, "libvips lacks %s", name);                                  \
            return -1;                                                                     \
        }                                                                                  \
    } while (0)
    SYM(init, "vips_init");
    SYM(cache_set_max, "vips_cache_set_max");
    SYM(concurrency_set, "vips_concurrency_set");
    SYM(new_from_buffer, "vips_image_new_from_buffer");
    SYM(jpegsave_buffer, "vips_jpegsave_buffer");
    SYM(webpsave_buffer, "vips_webpsave_buffer");
    SYM(pngsave_buffer, "vips_pngsave_buffer");
    SYM(error_buffer, "vips_error_buffer");
    SYM(error_clear, "vips_error_clear");
    SYM(thread_shutdown, "vips_thread_shutdown");
    SYM(shutdown, "vips_shutdown");
    SYM(g_free, "g_free");
    SYM(g_object_unref, "g_object_unref");
#undef SYM
    if (vips.init("comfy-sidecar") != 0) {
        snprintf(why, len, "libvips failed to initialise");
        return -1;
    }
    vips.cache_set_max(0); /* each image is seen once */
    vips.concurrency_set(1);
    return 0;
}

static void
encode(struct conv_task *t)
{
    VipsImage *in = vips.new_from_buffer(t->in, t->in_len, "", NULL);
    void *buf = NULL;
    size_t len = 0;
    int rc = -1;
    const struct conv_opts *o = &t->o;

    if (in == NULL)
        goto out;
    if (o->format == CONV_JPEG) {
        int moz = o->mozjpeg;
        /* sharp's mozjpeg switch is these four settings together. */
        rc = vips.jpegsave_buffer(in, &buf, &len, "Q", o->quality, "interlace",
                                  o->progressive || moz, "optimize_coding", o->optimize_coding,
                                  "subsample_mode",
                                  o->subsample444 ? VIPS_FOREIGN_SUBSAMPLE_OFF
                                                  : VIPS_FOREIGN_SUBSAMPLE_ON,
                                  "trellis_quant", o->trellis || moz, "overshoot_deringing",
                                  o->overshoot || moz, "optimize_scans", o->optimize_scans || moz,
                                  "quant_table", moz && o->quant_table == 0 ? 3 : o->quant_table,
                                  "strip", TRUE, NULL);
    } else if (o->format == CONV_WEBP) {
        rc = vips.webpsave_buffer(in, &buf, &len, "Q", o->quality, "lossless", o->lossless,
                                  "near_lossless", o->near_lossless, "smart_subsample",
                                  o->smart_subsample, "alpha_q", o->alpha_quality, "preset",
                                  (VipsForeignWebpPreset)o->preset, "effort", o->effort,
                                  "strip", TRUE, NULL);
    } else {
        rc = vips.pngsave_buffer(in, &buf, &len, "compression", o->compression, NULL);
    }
out:
    if (rc == 0 && buf != NULL) {
        t->out = malloc(len);
        if (t->out != NULL) {
            memcpy(t->out, buf, len);
            t->out_len = len;
        } else {
            snprintf(t->err, sizeof(t->err), "out of memory");
        }
    } else {
        snprintf(t->err, sizeof(t->err), "libvips: %.200s", vips.error_buffer());
        vips.error_clear();
    }
    vips.g_free(buf);
    if (in != NULL)
        vips.g_object_unref(in);
}

static void *
worker(void *arg)
{
    struct conv *c = arg;
    int inited = 0, usable = 0;
    char why[300] = "";

    for (;;) {
        struct conv_task *t;

        pthread_mutex_lock(&c->lock);
        while (c->head == NULL && !c->stop)
            pthread_cond_wait(&c->cond, &c->lock);
        if (c->stop) {
            pthread_mutex_unlock(&c->lock);
            break;
        }
        t = c->head;
        c->head = t->next;
        if (c->head == NULL)
            c->tail = NULL;
        c->running = t;
        pthread_mutex_unlock(&c->lock);

        if (!inited) {
            inited = 1;
            usable = load_vips(why, sizeof(why)) == 0;
            if (!usable)
                log_error("convert: %s; convert_output sends the originals", why);
        }
        if (usable)
            encode(t);
        else
            snprintf(t->err, sizeof(t->err), "%.200s", why);
        pthread_mutex_lock(&c->lock);
        c->running = NULL;
        pthread_mutex_unlock(&c->lock);
        /* Hand the task back; the pipe holds thousands of pointers. */
        while (write(c->pipe_w, &t, sizeof(t)) < 0 && errno == EINTR)
            ;
    }
    if (usable) {
        /* libvips keeps threads of its own: end them with ours, so the
         * process exits with no thread left behind. */
        vips.thread_shutdown();
        vips.shutdown();
    }
    return NULL;
}

static void
task_free(struct conv_task *t)
{
    free(t->in);
    free(t->out);
    free(t);
}

static void
on_pipe(evutil_socket_t fd, short what, void *arg)
{
    struct conv_task *batch[64];
    ssize_t n;
    size_t i;

    (void)what;
    (void)arg;
    n = read(fd, batch, sizeof(batch));
    for (i = 0; n > 0 && i < (size_t)n / sizeof(batch[0]); i++) {
        struct conv_task *t = batch[i];
        if (!t->cancelled) {
            unsigned char *out = t->out;
            t->out = NULL;
            t->done(out, t->out_len, out == NULL ? t->err : NULL, t->arg);
        }
        task_free(t);
    }
}

struct conv *
conv_new(struct event_base *base)
{
    struct conv *c = xcalloc(1, sizeof(*c));
    int fds[2];

    c->base = base;
    pthread_mutex_init(&c->lock, NULL);
    pthread_cond_init(&c->cond, NULL);
    if (pipe2(fds, O_CLOEXEC) < 0) {
        log_error("convert: cannot create a pipe: %s", strerror(errno));
        c->pipe_r = c->pipe_w = -1;
        return c;
    }
    c->pipe_r = fds[0];
    c->pipe_w = fds[1];
    evutil_make_socket_nonblocking(c->pipe_r);
    c->ev = event_new(base, c->pipe_r, EV_READ | EV_PERSIST, on_pipe, c);
    event_add(c->ev, NULL);
    return c;
}

struct conv_task *
conv_run(struct conv *c, const struct conv_opts *o, const unsigned char *data, size_t len,
         conv_done_fn done, void *arg)
{
    struct conv_task *t = xcalloc(1, sizeof(*t));

    t->c = c;
    t->o = *o;
    t->in = xmalloc(len);
    memcpy(t->in, data, len);
    t->in_len = len;
    t->done = done;
    t->arg = arg;
    if (c->pipe_w < 0) {
        free(t->in);
        free(t);
        return NULL;
    }
    /* The thread starts with the first conversion: none, no thread. */
    if (!c->started) {
        if (pthread_create(&c->thread, NULL, worker, c) != 0) {
            log_error("convert: cannot start the worker thread");
            free(t->in);
            free(t);
            return NULL;
        }
        c->started = 1;
    }
    pthread_mutex_lock(&c->lock);
    if (c->tail != NULL)
        c->tail->next = t;
    else
        c->head = t;
    c->tail = t;
    pthread_cond_signal(&c->cond);
    pthread_mutex_unlock(&c->lock);
    return t;
}

void
conv_cancel(struct conv_task *t)
{
    struct conv *c;
    struct conv_task **pt;

    if (t == NULL)
        return;
    c = t->c;
    pthread_mutex_lock(&c->lock);
    for (pt = &c->head; *pt != NULL; pt = &(*pt)->next) {
        if (*pt == t) {
            *pt = t->next;
            if (c->tail == t) {
                struct conv_task *x = c->head;
                c->tail = NULL;
                while (x != NULL) {
                    c->tail = x;
                    x = x->next;
                }
            }
            pthread_mutex_unlock(&c->lock);
            task_free(t);
            return;
        }
    }
    /* Running or on its way back: freed when it arrives. */
    t->cancelled = 1;
    pthread_mutex_unlock(&c->lock);
}

void
conv_free(struct conv *c)
{
    if (c == NULL)
        return;
    pthread_mutex_lock(&c->lock);
    c->stop = 1;
    pthread_cond_signal(&c->cond);
    pthread_mutex_unlock(&c->lock);
    if (c->started)
        pthread_join(c->thread, NULL);
    while (c->head != NULL) {
        struct conv_task *t = c->head;
        c->head = t->next;
        task_free(t);
    }
    if (c->ev != NULL) {
        /* Tasks finished but not yet read: free them unseen. */
        struct conv_task *t;
        while (read(c->pipe_r, &t, sizeof(t)) == (ssize_t)sizeof(t))
            task_free(t);
        event_free(c->ev);
    }
    if (c->pipe_r >= 0)
        close(c->pipe_r);
    if (c->pipe_w >= 0)
        close(c->pipe_w);
    pthread_mutex_destroy(&c->lock);
    pthread_cond_destroy(&c->cond);
    free(c);
}
