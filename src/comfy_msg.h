/* comfy_msg.h - ComfyUI's messages parsed into plain structs, and its error
 * reports turned into our error bodies. Pure (jansson only): unit-tested
 * and fuzzed on its own. */
#ifndef SIDECAR_COMFY_MSG_H
#define SIDECAR_COMFY_MSG_H

#include <jansson.h>
#include <stddef.h>

enum cmsg_kind {
    CMSG_OTHER,
    CMSG_STATUS,
    CMSG_EXECUTION_START,
    CMSG_EXECUTION_CACHED,
    CMSG_EXECUTING,
    CMSG_PROGRESS,
    CMSG_EXECUTED,
    CMSG_SUCCESS,
    CMSG_ERROR,
    CMSG_INTERRUPTED,
};

/* One websocket text message. Strings point into root. */
struct cmsg {
    enum cmsg_kind kind;
    const char *prompt_id; /* NULL when absent */
    const char *node;      /* executing / progress; NULL for executing{node:null} */
    int node_null;         /* executing with node null: the prompt is done */
    int value, max;        /* progress */
    long long timestamp;   /* execution_*; 0 when absent */
    int queue_remaining;   /* status; -1 when absent */
    int n_cached;          /* execution_cached */
    int blocked;           /* an ExecutionBlocked execution_error: not final */
    json_t *data;          /* borrowed from root */
    json_t *root;          /* owned */
};

/* 0 and a filled m (release with cmsg_clear), or -1 if this is not a
 * ComfyUI message ({"type": string, "data": object}). */
int cmsg_parse(const unsigned char *text, size_t len, struct cmsg *m);
void cmsg_clear(struct cmsg *m);

/* A binary preview frame: type 1 (format, image) or 4 (metadata JSON naming
 * prompt and node, image). Pointers into frame. */
struct cmsg_preview {
    char prompt_id[64]; /* "" for type 1 frames */
    char node[64];      /* "" when unknown */
    const char *mime;
    const unsigned char *image;
    size_t len;
};

/* 0, or -1 if frame is not a preview we understand. */
int cmsg_parse_preview(const unsigned char *frame, size_t len, struct cmsg_preview *p);

/* Our 400 body for ComfyUI's answer to a refused POST /prompt: its
 * message, its node_errors verbatim, and the first node error as location. */
json_t *cmsg_validation_error(const unsigned char *body, size_t len);

/* Our 500 body for execution_error / execution_interrupted data. */
json_t *cmsg_execution_error(json_t *data, int interrupted);

/* 1 if an execution_error is CUDA/torch running out of memory. */
int cmsg_is_oom(json_t *data);

#endif
