/* unit.h - a tiny test harness: a table of {name, fn}; CHECK records a
 * failure with file and line and jumps to the test's `end:` label. */
#ifndef SIDECAR_UNIT_H
#define SIDECAR_UNIT_H

#include <stdio.h>
#include <string.h>

extern int unit_failed_checks;

#define CHECK(cond)                                                            \
    do {                                                                       \
        if (!(cond)) {                                                         \
            fprintf(stderr, "  %s:%d: CHECK(%s) failed\n", __FILE__, __LINE__, \
                    #cond);                                                    \
            unit_failed_checks++;                                              \
            goto end;                                                          \
        }                                                                      \
    } while (0)

#define CHECK_STR(a, b)                                                        \
    do {                                                                       \
        const char *a_ = (a), *b_ = (b);                                       \
        if (a_ == NULL || b_ == NULL || strcmp(a_, b_) != 0) {                 \
            fprintf(stderr, "  %s:%d: \"%s\" != \"%s\"\n", __FILE__, __LINE__, \
                    a_ ? a_ : "(null)", b_ ? b_ : "(null)");                   \
            unit_failed_checks++;                                              \
            goto end;                                                          \
        }                                                                      \
    } while (0)

struct unit_test {
    const char *name;
    void (*fn)(void);
};

#define UNIT_TESTS(group) const struct unit_test group[]

#endif
