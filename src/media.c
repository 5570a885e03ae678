/* media.c - input images: decode, download, check, upload, clean up (see
 * media.h).
 *
 * Owns the preps in progress (one per request with inputs to upload): the
 * list of inputs still to do, the current HTTP call, and the names uploaded
 * so far, which outlive the prep as a cleanup watch on the job. Inputs are
 * handled one after the other: they are few, and it keeps the state small. */
#include <arpa/inet.h>
#include <errno.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>

#include "b64.h"
#include "config.h"
#include "httpc.h"
#include "job.h"
#include "log.h"
#include "media.h"
#include "request.h"
#include "util.h"

#define MAX_REDIRECTS 5

struct media {
    struct event_base *base;
    struct httpc *http;
    const struct config *cfg;
    char comfy_url[300];
};

struct input {
    char node[128];
    char name[64];   /* the input, e.g. "image" */
    char *value;     /* as the client gave it */
    int bad_scheme;  /* a URL of a scheme other than http(s) */
};

struct media_prep {
    struct media *m;
    json_t *graph;
    char id[REQ_ID_MAX + 1];
    media_done_fn done;
    void *arg;
    struct input *inputs;
    size_t n, cur;
    struct httpc_call *call;
    unsigned char *bytes; /* current input's content */
    size_t len;
    char **uploaded;      /* "sidecar/<name>" */
    size_t n_up;
    struct job_watch *watch;
    struct event *start;
};

static const struct {
    const char *cls, *input;
} loaders[] = {
    {"LoadImage", "image"},
    {"LoadImageMask", "image"},
};

/* ---- pure helpers --------------------------------------------------------- */

const char *
media_sniff(const unsigned char *d, size_t n)
{
    if (n >= 8 && memcmp(d, "\x89PNG\r\n\x1a\n", 8) == 0)
        return "png";
    if (n >= 3 && d[0] == 0xff && d[1] == 0xd8 && d[2] == 0xff)
        return "jpg";
    if (n >= 12 && memcmp(d, "RIFF", 4) == 0 && memcmp(d + 8, "WEBP", 4) == 0)
        return "webp";
    if (n >= 6 && (memcmp(d, "GIF87a", 6) == 0 || memcmp(d, "GIF89a", 6) == 0))
        return "gif";
    if (n >= 14 && d[0] == 'B' && d[1] == 'M')
        return "bmp";
    return NULL;
}

static int
v4_allowed(uint32_t a, int allow_private)
{
    /* The metadata service of every major cloud: never, whatever the
     * configuration says. */
    if (a == 0xa9fea9feu)
        return 0;
    if (allow_private)
        return 1;
    return !((a >> 24) == 0 ||                /* 0.0.0.0/8 */
             (a >> 24) == 10 ||               /* 10/8 */
             (a >> 24) == 127 ||              /* loopback */
             (a >> 22) == (100u << 2 | 1) ||  /* 100.64/10 */
             (a >> 16) == 0xa9fe ||           /* 169.254/16 link-local */
             (a >> 20) == (172u << 4 | 1) ||  /* 172.16/12 */
             (a >> 16) == 0xc0a8 ||           /* 192.168/16 */
             (a >> 28) >= 14);                /* multicast, reserved, broadcast */
}

int
media_addr_allowed(const struct sockaddr *sa, int allow_private)
{
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)(const void *)sa;
        return v4_allowed(ntohl(in->sin_addr.s_addr), allow_private);
    }
    if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)(const void *)sa;
        const unsigned char *b = in6->sin6_addr.s6_addr;
        static const unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

        /* IPv4-mapped and IPv4-compatible forms name an IPv4 host. */
        if (memcmp(b, mapped, 12) == 0 ||
            (memcmp(b, mapped, 10) == 0 && b[10] == 0 && b[11] == 0 &&
             (b[12] | b[13]) != 0))
            return v4_allowed((uint32_t)b[12] << 24 | (uint32_t)b[13] << 16 |
                                  (uint32_t)b[14] << 8 | b[15],
                              allow_private);
        if (allow_private)
            return 1;
        return !(IN6_IS_ADDR_LOOPBACK(&in6->sin6_addr) ||
                 IN6_IS_ADDR_UNSPECIFIED(&in6->sin6_addr) ||
                 IN6_IS_ADDR_LINKLOCAL(&in6->sin6_addr) ||
                 IN6_IS_ADDR_MULTICAST(&in6->sin6_addr) ||
                 (b[0] & 0xfe) == 0xfc);            /* fc00::/7 unique local */
    }
    return 0;
}

static int
addr_check(const struct sockaddr *sa, void *arg)
{
    const struct media *m = arg;

    return media_addr_allowed(sa, m->cfg->allow_private_urls);
}

static int
is_b64(const char *s, size_t n)
{
    size_t i;

    if (n < 16)
        return 0;
    for (i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '+' || c == '/' || (c == '=' && i >= n - 2)))
            return 0;
    }
    return 1;
}

/* ---- one prep ------------------------------------------------------------------ */

static void next_input(struct media_prep *p);

static void
prep_fail(struct media_prep *p, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void
prep_fail(struct media_prep *p, int status, const char *fmt, ...)
{
    char msg[600], loc[300];
    va_list ap;
    media_done_fn done = p->done;
    void *arg = p->arg;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    snprintf(loc, sizeof(loc), "prompt.%s.inputs.%s", p->inputs[p->cur].node,
             p->inputs[p->cur].name);
    rlog_warn(p->id, "input %s refused: %s", loc, msg);
    p->done = NULL;
    done(status, json_pack("{s:s, s:s}", "error", msg, "location", loc), arg);
}

static void
on_upload(struct httpc_result *res, void *arg)
{
    struct media_prep *p = arg;
    struct input *in = &p->inputs[p->cur];
    json_t *root;
    const char *name, *sub;
    char ref[600];

    p->call = NULL;
    if (!res->ok || res->status != 200) {
        prep_fail(p, 502, "ComfyUI refused the upload of this image: %s",
                  !res->ok ? (res->error ? res->error : "no answer") : "unexpected status");
        return;
    }
    root = json_loadb((const char *)res->body, res->body_len, 0, NULL);
    name = json_string_value(json_object_get(root, "name"));
    sub = json_string_value(json_object_get(root, "subfolder"));
    if (name == NULL) {
        json_decref(root);
        prep_fail(p, 502, "ComfyUI's /upload/image answered without a name");
        return;
    }
    snprintf(ref, sizeof(ref), "%s%s%s", sub != NULL && *sub ? sub : "",
             sub != NULL && *sub ? "/" : "", name);
    json_decref(root);
    json_object_set_new(json_object_get(json_object_get(p->graph, in->node), "inputs"),
                        in->name, json_string(ref));
    p->uploaded = xrealloc(p->uploaded, (p->n_up + 1) * sizeof(*p->uploaded));
    p->uploaded[p->n_up++] = xstrdup(ref);
    rlog_debug(p->id, "uploaded prompt.%s.inputs.%s as %s (%zu bytes)", in->node, in->name,
               ref, p->len);
    free(p->bytes);
    p->bytes = NULL;
    p->cur++;
    next_input(p);
}

/* POST /upload/image into <input>/sidecar/, overwriting: the one request
 * both the upload and the later shrinking of a remote upload make. */
static struct httpc_call *
upload_call(struct media *m, const char *fname, const char *type, const void *data,
            size_t len, httpc_done_cb cb, void *arg)
{
    struct httpc_part parts[4];
    struct httpc_request rq;
    char url[400];

    memset(parts, 0, sizeof(parts));
    parts[0].name = "image";
    parts[0].filename = fname;
    parts[0].content_type = type;
    parts[0].data = data;
    parts[0].len = len;
    parts[1].name = "type";
    parts[1].data = "input";
    parts[1].len = 5;
    parts[2].name = "subfolder";
    parts[2].data = "sidecar";
    parts[2].len = 7;
    parts[3].name = "overwrite";
    parts[3].data = "true";
    parts[3].len = 4;
    snprintf(url, sizeof(url), "%s/upload/image", m->comfy_url);
    memset(&rq, 0, sizeof(rq));
    rq.method = "POST";
    rq.url = url;
    rq.parts = parts;
    rq.n_parts = 4;
    rq.timeout_ms = (long)m->cfg->comfy_timeout_s * 1000;
    rq.max_body = 1 << 20;
    return httpc_start(m->http, &rq, cb, arg);
}

/* Check the bytes we have for the current input and upload them. */
static void
upload(struct media_prep *p)
{
    struct media *m = p->m;
    const char *ext = media_sniff(p->bytes, p->len);
    char fname[300];
    unsigned rnd = 0;

    if ((size_t)m->cfg->max_input_mb << 20 < p->len) {
        prep_fail(p, 400, "the image is larger than MAX_INPUT_MB (%d MiB)", m->cfg->max_input_mb);
        return;
    }
    if (ext == NULL) {
        prep_fail(p, 400, "not an image: expected PNG, JPEG, WebP, GIF or BMP (base64, a "
                          "data: URL or an http(s) URL), or the name of a file in ComfyUI's "
                          "input folder");
        return;
    }
    if (getrandom(&rnd, sizeof(rnd), 0) != sizeof(rnd))
        rnd = (unsigned)rand();
    /* Unique per job and node: ComfyUI would otherwise reuse an identical
     * upload's name, and one job's cleanup would delete another's input. */
    snprintf(fname, sizeof(fname), "%s_%s_%08x.%s", p->id, p->inputs[p->cur].node, rnd, ext);
    for (char *c = fname; *c; c++)
        if (*c == '/' || *c == ':' || *c == ' ')
            *c = '_';
    p->call = upload_call(m, fname, strcmp(ext, "jpg") == 0 ? "image/jpeg" : NULL, p->bytes,
                          p->len, on_upload, p);
    if (p->call == NULL)
        prep_fail(p, 502, "could not start the upload to ComfyUI");
}

static void
on_download(struct httpc_result *res, void *arg)
{
    struct media_prep *p = arg;
    char host[300];

    p->call = NULL;
    if (res->blocked) {
        snprintf(host, sizeof(host), "%s", p->inputs[p->cur].value);
        prep_fail(p, 400, "refused to download %.200s: it leads to a loopback, private, "
                          "link-local or metadata address (ALLOW_PRIVATE_URLS=%s)",
                  host, p->m->cfg->allow_private_urls ? "true; 169.254.169.254 is never allowed"
                                                      : "false");
        return;
    }
    if (res->too_many_redirects) {
        prep_fail(p, 400, "download failed: more than %d redirects", MAX_REDIRECTS);
        return;
    }
    if (res->too_big) {
        prep_fail(p, 400, "the image is larger than MAX_INPUT_MB (%d MiB)",
                  p->m->cfg->max_input_mb);
        return;
    }
    if (!res->ok) {
        prep_fail(p, 400, "download failed: %s%s", res->timed_out ? "timed out: " : "",
                  res->error != NULL ? res->error : "no answer");
        return;
    }
    if (res->status >= 300) {
        prep_fail(p, 400, "download failed: the server answered HTTP %ld", res->status);
        return;
    }
    p->bytes = res->body;
    p->len = res->body_len;
    res->body = NULL;
    upload(p);
}

static void
download(struct media_prep *p, const char *url)
{
    struct httpc_request rq;

    memset(&rq, 0, sizeof(rq));
    rq.method = "GET";
    rq.url = url;
    rq.timeout_ms = (long)p->m->cfg->input_download_timeout_s * 1000;
    rq.connect_timeout_ms = rq.timeout_ms;
    rq.max_body = (size_t)p->m->cfg->max_input_mb << 20;
    rq.max_redirects = MAX_REDIRECTS;
    rq.allow_addr = addr_check;
    rq.allow_arg = p->m;
    p->call = httpc_start(p->m->http, &rq, on_download, p);
    if (p->call == NULL)
        prep_fail(p, 400, "cannot download this URL");
}

static void
next_input(struct media_prep *p)
{
    struct input *in;
    const char *v, *comma;
    size_t n;
    long got;

    if (p->cur >= p->n) {
        media_done_fn done = p->done;
        p->done = NULL;
        done(200, NULL, p->arg);
        return;
    }
    in = &p->inputs[p->cur];
    v = in->value;
    if (in->bad_scheme == 2) {
        prep_fail(p, 400, "the image is empty: give base64, a data: or http(s) URL, or the "
                          "name of a file in ComfyUI's input folder");
        return;
    }
    if (in->bad_scheme) {
        prep_fail(p, 400, "unsupported URL scheme: only http://, https:// and data: URLs, "
                          "base64, or a file name in ComfyUI's input folder");
        return;
    }
    if (strncasecmp(v, "http://", 7) == 0 || strncasecmp(v, "https://", 8) == 0) {
        download(p, v);
        return;
    }
    if (strncasecmp(v, "data:", 5) == 0) {
        comma = strchr(v, ',');
        if (comma == NULL || comma - v < 12 || strncasecmp(comma - 7, ";base64", 7) != 0) {
            prep_fail(p, 400, "a data: URL must be base64: data:<type>;base64,<data>");
            return;
        }
        v = comma + 1;
    }
    n = strlen(v);
    p->bytes = xmalloc(n / 4 * 3 + 4);
    got = b64_decode(v, n, p->bytes);
    if (got < 0) {
        prep_fail(p, 400, "the image is not valid base64");
        return;
    }
    p->len = (size_t)got;
    upload(p);
}

static void
on_start(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    next_input(arg);
}

/* Which value needs work: a URL, a data: URL or base64. A file name (it
 * has a dot, which base64 has not) is left to ComfyUI. */
static int
needs_upload(const char *v, int *bad_scheme)
{
    const char *colon = strstr(v, "://");
    size_t i;

    *bad_scheme = 0;
    if (strncasecmp(v, "http://", 7) == 0 || strncasecmp(v, "https://", 8) == 0 ||
        strncasecmp(v, "data:", 5) == 0)
        return 1;
    if (colon != NULL) {
        for (i = 0; v + i < colon; i++)
            if (!((v[i] >= 'a' && v[i] <= 'z') || (v[i] >= 'A' && v[i] <= 'Z') ||
                  (i > 0 && ((v[i] >= '0' && v[i] <= '9') || v[i] == '+' || v[i] == '-' ||
                             v[i] == '.'))))
                break;
        if (v + i == colon && i > 0) {
            *bad_scheme = 1;
            return 0;
        }
    }
    return is_b64(v, strlen(v));
}

struct media_prep *
media_prepare(struct media *m, json_t *graph, const char *id, media_done_fn done, void *arg)
{
    struct media_prep *p = NULL;
    const char *node;
    json_t *v;
    size_t k;

    json_object_foreach(graph, node, v) {
        const char *cls = json_string_value(json_object_get(v, "class_type"));
        json_t *inputs = json_object_get(v, "inputs");

        if (cls == NULL)
            continue;
        for (k = 0; k < sizeof(loaders) / sizeof(loaders[0]); k++) {
            const char *val;
            int bad;

            if (strcmp(cls, loaders[k].cls) != 0)
                continue;
            val = json_string_value(json_object_get(inputs, loaders[k].input));
            if (val == NULL)
                continue;
            /* An empty name would make ComfyUI open its input folder itself
             * and fail at run time: refuse it here, as the client's error. */
            bad = 0;
            if (*val != '\0' && !needs_upload(val, &bad) && !bad)
                continue;
            if (*val == '\0')
                bad = 2;
            if (p == NULL) {
                p = xcalloc(1, sizeof(*p));
                p->m = m;
                p->graph = json_incref(graph);
                snprintf(p->id, sizeof(p->id), "%s", id);
                p->done = done;
                p->arg = arg;
            }
            p->inputs = xrealloc(p->inputs, (p->n + 1) * sizeof(*p->inputs));
            memset(&p->inputs[p->n], 0, sizeof(*p->inputs));
            snprintf(p->inputs[p->n].node, sizeof(p->inputs[0].node), "%s", node);
            snprintf(p->inputs[p->n].name, sizeof(p->inputs[0].name), "%s", loaders[k].input);
            /* A value with an unknown scheme fails when its turn comes. */
            p->inputs[p->n].value = xstrdup(val);
            p->inputs[p->n].bad_scheme = bad;
            p->n++;
        }
    }
    if (p != NULL) {
        p->start = evtimer_new(m->base, on_start, p);
        event_active(p->start, EV_TIMEOUT, 0);
    }
    return p;
}

/* ---- cleanup ------------------------------------------------------------------- */

/* A 1x1 transparent PNG: what a remote upload is overwritten with. */
static const unsigned char tiny_png[] = {
    0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48,
    0x44, 0x52, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x06, 0x00, 0x00,
    0x00, 0x1f, 0x15, 0xc4, 0x89, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x44, 0x41, 0x54, 0x78,
    0x9c, 0x63, 0x60, 0x00, 0x02, 0x00, 0x00, 0x05, 0x00, 0x01, 0xe9, 0xfa, 0xdc, 0xd8,
    0x00, 0x00, 0x00, 0x00, 0x49, 0x45, 0x4e, 0x44, 0xae, 0x42, 0x60, 0x82,
};

static void
on_shrunk(struct httpc_result *res, void *arg)
{
    (void)arg;
    if (!res->ok || res->status != 200)
        log_debug("could not shrink an uploaded input in ComfyUI");
}

/* ComfyUI has no API to delete an input. When INPUT_DIR is its input
 * folder on this host (the container case) the file is deleted; otherwise
 * it is overwritten, through /upload/image, with a 1x1 image, which gives
 * the space back without a shared filesystem. */
static void
delete_uploads(struct media_prep *p)
{
    size_t i;

    for (i = 0; i < p->n_up; i++) {
        char path[2048];
        const char *name = strrchr(p->uploaded[i], '/');

        if (strstr(p->uploaded[i], "..") != NULL)
            continue;
        snprintf(path, sizeof(path), "%s/%s", p->m->cfg->input_dir, p->uploaded[i]);
        if (unlink(path) == 0 || errno != ENOENT)
            continue;
        name = name != NULL ? name + 1 : p->uploaded[i];
        upload_call(p->m, name, NULL, tiny_png, sizeof(tiny_png), on_shrunk, NULL);
    }
}

static void
prep_free(struct media_prep *p)
{
    size_t i;

    if (p->call != NULL)
        httpc_cancel(p->call);
    if (p->watch != NULL)
        job_unwatch(p->watch);
    for (i = 0; i < p->n; i++)
        free(p->inputs[i].value);
    free(p->inputs);
    for (i = 0; i < p->n_up; i++)
        free(p->uploaded[i]);
    free(p->uploaded);
    free(p->bytes);
    if (p->start != NULL)
        event_free(p->start);
    json_decref(p->graph);
    free(p);
}

static void
on_job_done(struct job *job, enum job_event ev, const void *data, void *arg)
{
    struct media_prep *p = arg;

    (void)job;
    (void)data;
    if (ev != JE_DONE)
        return;
    delete_uploads(p);
    prep_free(p);
}

void
media_finish(struct media_prep *p, struct job *job)
{
    if (p == NULL)
        return;
    if (job == NULL || job_finished(job)) {
        delete_uploads(p);
        prep_free(p);
        return;
    }
    p->watch = job_watch(job, on_job_done, p);
}

void
media_discard(struct media_prep *p)
{
    if (p == NULL)
        return;
    delete_uploads(p);
    prep_free(p);
}

struct media *
media_new(struct event_base *base, struct httpc *http, const struct config *cfg)
{
    struct media *m = xcalloc(1, sizeof(*m));

    m->base = base;
    m->http = http;
    m->cfg = cfg;
    if (strchr(cfg->direct_address, ':') != NULL)
        snprintf(m->comfy_url, sizeof(m->comfy_url), "http://[%s]:%d", cfg->direct_address,
                 cfg->comfy_port);
    else
        snprintf(m->comfy_url, sizeof(m->comfy_url), "http://%s:%d", cfg->direct_address,
                 cfg->comfy_port);
    return m;
}

void
media_free(struct media *m)
{
    free(m);
}
