/* mem.h - the process's memory footprint at rest (see mem.c). */
#ifndef SIDECAR_MEM_H
#define SIDECAR_MEM_H

#include <stddef.h>

/* Gives free heap back to the kernel and unmaps the clean pages of loaded
 * libraries and of the executable (they stay in the page cache); counted in
 * /metrics and logged (debug) with why ("ready", "idle"). Returns the bytes
 * of mappings dropped. Main thread; cheap (well under 1 ms). */
size_t mem_trim(const char *why);

#endif
