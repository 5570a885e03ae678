/* media.h - input images in requests: a LoadImage (or LoadImageMask)
 * `image` given as base64, a data: URL or an http(s) URL is decoded or
 * downloaded, checked, uploaded to ComfyUI with /upload/image, and the node
 * rewritten to the uploaded name; the uploads are deleted after the job.
 * Downloads only reach addresses that are not loopback, private or
 * link-local (unless ALLOW_PRIVATE_URLS), and never the cloud metadata
 * address, checked on every connection. */
#ifndef SIDECAR_MEDIA_H
#define SIDECAR_MEDIA_H

#include <jansson.h>
#include <stddef.h>

struct event_base;
struct httpc;
struct config;
struct job;
struct media;
struct media_prep;
struct sockaddr;

/* error (stolen) is a 4xx/5xx body, NULL on success. */
typedef void (*media_done_fn)(int status, json_t *error, void *arg);

struct media *media_new(struct event_base *base, struct httpc *http,
                        const struct config *cfg);
void media_free(struct media *m);

/* Look for inputs to upload in graph (borrowed; rewritten in place when
 * done). NULL when there is nothing to do (done is not called). Otherwise
 * done is called exactly once, later, unless the prep is discarded. */
struct media_prep *media_prepare(struct media *m, json_t *graph, const char *id,
                                 media_done_fn done, void *arg);

/* After a successful prep: delete the uploads when job ends, and free the
 * prep. With job NULL (the job could not be submitted): delete them now. */
void media_finish(struct media_prep *p, struct job *job);

/* Abandon a prep in progress (its done will not be called) and delete
 * what it uploaded. */
void media_discard(struct media_prep *p);

/* Pure: 1 if a connection to sa is allowed (see the module comment). */
int media_addr_allowed(const struct sockaddr *sa, int allow_private);

/* Pure: the image type of bytes ("png", "jpg", "webp", "gif", "bmp") or NULL. */
const char *media_sniff(const unsigned char *data, size_t len);

#endif
