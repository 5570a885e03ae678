/* openapi.h - the OpenAPI 3.1 document served at GET /docs/json and
 * GET /openapi.json (pure: jansson only).
 *
 * Describes every route of the sidecar, with one operation per workflow
 * template whose input schema carries the live enum lists. */
#ifndef SIDECAR_OPENAPI_H
#define SIDECAR_OPENAPI_H

#include <jansson.h>

#include "template.h"

/* Build the document. set (may be NULL: no workflow routes) and
 * object_info (ComfyUI's merged /object_info, may be NULL) are borrowed;
 * server_url ("http://host:port", may be NULL: no "servers" entry). Returns
 * a new reference. Cheap enough to rebuild whenever the templates or
 * object_info change; callers may cache it until then. */
json_t *openapi_document(const struct tpl_set *set, const json_t *object_info,
                         const char *server_url);

#endif
