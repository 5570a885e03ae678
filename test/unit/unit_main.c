/* unit_main.c - runs every unit test table; prints "unit: N passed, N failed". */
#include <stdio.h>

#include "log.h"
#include "unit.h"

int unit_failed_checks;

extern const struct unit_test config_tests[], b64_tests[], request_tests[],
    template_tests[], openapi_tests[], mem_tests[];

static const struct unit_test *const groups[] = {
    config_tests, b64_tests, request_tests, template_tests, openapi_tests, mem_tests,
    NULL};

int
main(void)
{
    int passed = 0, failed = 0, g;

    log_set_level(LOG_ERROR);
    for (g = 0; groups[g] != NULL; g++) {
        const struct unit_test *t;
        for (t = groups[g]; t->name != NULL; t++) {
            int before = unit_failed_checks;
            t->fn();
            if (unit_failed_checks > before) {
                printf("FAIL %s\n", t->name);
                failed++;
            } else {
                printf("ok   %s\n", t->name);
                passed++;
            }
        }
    }
    printf("unit: %d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
