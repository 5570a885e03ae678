/* salad.h - SaladCloud integration: keep the instance's deletion cost equal
 * to its queue depth, so the platform scales in idle instances first. Only
 * active when SaladCloud's SALAD_* variables are present. */
#ifndef SIDECAR_SALAD_H
#define SIDECAR_SALAD_H

struct event_base;
struct httpc;
struct config;
struct salad;

/* NULL when not running on SaladCloud. depth(arg) gives the queue depth. */
struct salad *salad_new(struct event_base *base, struct httpc *http,
                        const struct config *cfg, int (*depth)(void *), void *arg);
void salad_free(struct salad *s);

#endif
