/* api.h - the HTTP server: routes, request parsing glue, JSON answers.
 * Every request ends in exactly one reply. */
#ifndef SIDECAR_API_H
#define SIDECAR_API_H

#include <stddef.h>

struct event_base;
struct config;
struct jobs;
struct life;
struct api;

struct hooks;
struct wf;
struct media;

struct api *api_new(struct event_base *base, const struct config *cfg,
                    struct jobs *jobs, struct life *life, struct hooks *hooks,
                    struct wf *wf, struct media *media);

/* Bind HOST:PORT and start accepting. -1 with a reason in err. */
int api_listen(struct api *api, char *err, size_t errlen);

void api_free(struct api *api);

#endif
