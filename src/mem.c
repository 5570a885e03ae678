/* mem.c - the process's memory footprint at rest.
 *
 * What the sidecar allocates for itself at idle is small (a few hundred kB
 * of heap). Most of a fresh process's RSS is pages of the ~40 shared
 * libraries that Debian's libcurl and libwebsockets bring along: read and
 * run once at start (relocation, symbol lookup, constructors), mapped in
 * 64 kB batches by the kernel's fault-around, and then never touched again.
 * This file owns two measures against that (measured in BENCHMARKS.md):
 *
 *  - GnuTLS is loaded only because Debian's libcurl links librtmp, and the
 *    sidecar never uses either (libcurl is limited to http and https, which
 *    it does with OpenSSL). GnuTLS initialises itself from a constructor
 *    (random pool, PKCS#11 through p11-kit, system settings) unless the
 *    program defines _gnutls_global_init_skip(), the weak hook GnuTLS exports
 *    for exactly this; we define it (and export it: see the Makefile).
 *
 *  - mem_trim(), called when the sidecar becomes ready and when it has been
 *    idle for a while, gives free heap back to the kernel (malloc_trim) and
 *    unmaps the clean pages of every loaded object: its non-writable PT_LOAD
 *    segments (code, read-only data, symbol tables), never the relocated
 *    RELRO part nor writable data. Those pages hold nothing but the file's
 *    bytes, so they stay in the page cache and the next use maps them back
 *    with a minor fault: the kernel's own reclaim does the same to such
 *    pages whenever memory is short, so nothing here depends on them staying
 *    mapped. Objects with text relocations are left alone (their code pages
 *    are private copies), and so is everything while a debugger is attached
 *    (its breakpoints are private copies too). */
#include <elf.h>
#include <link.h>
#include <malloc.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/mman.h>
#include <unistd.h>

#include "log.h"
#include "mem.h"
#include "metrics.h"

/* GnuTLS calls this from its constructor; nonzero: do not initialise.
 * Nothing in the sidecar calls GnuTLS (see above). */
int _gnutls_global_init_skip(void);

int
_gnutls_global_init_skip(void)
{
    return 1;
}

/* Being traced (gdb, strace): breakpoints live in private copies of code
 * pages, which unmapping would silently throw away. */
static int
traced(void)
{
    char line[256];
    FILE *f = fopen("/proc/self/status", "r");
    int pid = 0;

    if (f == NULL)
        return 0;
    while (fgets(line, sizeof(line), f) != NULL)
        if (strncmp(line, "TracerPid:", 10) == 0) {
            pid = atoi(line + 10);
            break;
        }
    fclose(f);
    return pid != 0;
}

/* An object whose code is patched at load time has private code pages. */
static int
has_textrel(const struct dl_phdr_info *info)
{
    const ElfW(Dyn) *d = NULL;
    int i;

    for (i = 0; i < info->dlpi_phnum; i++)
        if (info->dlpi_phdr[i].p_type == PT_DYNAMIC)
            d = (const ElfW(Dyn) *)(info->dlpi_addr + info->dlpi_phdr[i].p_vaddr);
    for (; d != NULL && d->d_tag != DT_NULL; d++)
        if (d->d_tag == DT_TEXTREL || (d->d_tag == DT_FLAGS && (d->d_un.d_val & DF_TEXTREL)))
            return 1;
    return 0;
}

struct trim_state {
    uintptr_t page;
    uintptr_t vdso;
    size_t bytes;
};

/* Called with the dynamic loader's lock held: no object can be loaded or
 * unloaded (and its address range reused) while we look at it. */
static int
trim_object(struct dl_phdr_info *info, size_t size, void *arg)
{
    struct trim_state *st = arg;
    uintptr_t relro_lo = 0, relro_hi = 0;
    int i;

    (void)size;
    if (info->dlpi_addr == st->vdso || info->dlpi_phnum == 0 || has_textrel(info))
        return 0;
    for (i = 0; i < info->dlpi_phnum; i++)
        if (info->dlpi_phdr[i].p_type == PT_GNU_RELRO) {
            relro_lo = info->dlpi_addr + info->dlpi_phdr[i].p_vaddr;
            relro_hi = relro_lo + info->dlpi_phdr[i].p_memsz;
        }
    for (i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        uintptr_t lo, hi;

        if (ph->p_type != PT_LOAD || (ph->p_flags & PF_W) || ph->p_memsz != ph->p_filesz)
            continue;
        /* Whole pages inside the segment only: a page shared with a
         * neighbour (never, with today's linkers) is kept. */
        lo = (info->dlpi_addr + ph->p_vaddr + st->page - 1) & ~(st->page - 1);
        hi = (info->dlpi_addr + ph->p_vaddr + ph->p_memsz) & ~(st->page - 1);
        if (hi <= lo || (relro_hi > lo && relro_lo < hi))
            continue;
        if (madvise((void *)lo, hi - lo, MADV_DONTNEED) == 0)
            st->bytes += hi - lo;
    }
    return 0;
}

size_t
mem_trim(const char *why)
{
    struct trim_state st;

    malloc_trim(0);
    st.page = (uintptr_t)sysconf(_SC_PAGESIZE);
    st.vdso = (uintptr_t)getauxval(AT_SYSINFO_EHDR);
    st.bytes = 0;
    if (!traced())
        dl_iterate_phdr(trim_object, &st);
    met_trim();
    log_debug("%s: gave back free heap and %zu kB of library pages", why, st.bytes >> 10);
    return st.bytes;
}
