/* utf8.h - UTF-8 validity for text we build from untrusted bytes. Error
 * messages quote clients' and ComfyUI's text and cut it to fit; jansson
 * refuses invalid UTF-8, so every such message is made valid here first. */
#ifndef SIDECAR_UTF8_H
#define SIDECAR_UTF8_H

#include <stddef.h>

/* Length of the valid UTF-8 sequence at s (at most n bytes), 0 if invalid. */
size_t utf8_len(const unsigned char *s, size_t n);

/* Make the NUL-terminated s valid UTF-8 in place: an invalid byte becomes
 * '?', a sequence cut short at the end is dropped. Returns s. */
char *utf8_fix(char *s);

#endif
