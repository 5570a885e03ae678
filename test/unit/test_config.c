/* test_config.c - configuration parsing: defaults, bounds, names in errors. */
#include <stdlib.h>

#include "config.h"
#include "unit.h"

static const char *const vars[] = {
    "HOST", "PORT", "DIRECT_ADDRESS", "COMFYUI_PORT_HOST", "CMD", "COMFY_HOME",
    "OUTPUT_DIR", "INPUT_DIR", "STARTUP_CHECK_INTERVAL_S", "STARTUP_CHECK_MAX_TRIES",
    "ALWAYS_RESTART_COMFYUI", "WARMUP_PROMPT_FILE", "MAX_BODY_SIZE_MB",
    "PREPEND_FILENAMES", "LOG_LEVEL", "COMFY_TIMEOUT_S", "RECONCILE_INTERVAL_MS",
    "MAX_OUTPUT_MB", "COMFY_STOP_TIMEOUT_S", NULL,
};

static void
clear_env(void)
{
    int i;
    for (i = 0; vars[i] != NULL; i++)
        unsetenv(vars[i]);
}

static void
test_defaults(void)
{
    struct config c;
    char err[256];

    clear_env();
    CHECK(cfg_load(&c, err, sizeof(err)) == 0);
    CHECK_STR(c.host, "::");
    CHECK(c.port == 3000);
    CHECK_STR(c.direct_address, "127.0.0.1");
    CHECK(c.comfy_port == 8188);
    CHECK(c.cmd == NULL);
    CHECK_STR(c.comfy_home, "/opt/ComfyUI");
    CHECK_STR(c.output_dir, "/opt/ComfyUI/output");
    CHECK_STR(c.input_dir, "/opt/ComfyUI/input");
    CHECK(c.startup_check_interval_s == 1.0);
    CHECK(c.startup_check_max_tries == 20);
    CHECK(c.always_restart == 0);
    CHECK(c.max_body_size_mb == 100);
    CHECK(c.prepend_filenames == 1);
    cfg_free(&c);
end:
    clear_env();
}

static void
test_values(void)
{
    struct config c;
    char err[256];

    clear_env();
    setenv("PORT", "8080", 1);
    setenv("ALWAYS_RESTART_COMFYUI", "true", 1);
    setenv("STARTUP_CHECK_INTERVAL_S", "0.25", 1);
    setenv("COMFY_HOME", "/srv/comfy/", 1);
    setenv("CMD", "python3 main.py --port 8188", 1);
    setenv("LOG_LEVEL", "DEBUG", 1);
    CHECK(cfg_load(&c, err, sizeof(err)) == 0);
    CHECK(c.port == 8080);
    CHECK(c.always_restart == 1);
    CHECK(c.startup_check_interval_s == 0.25);
    CHECK_STR(c.output_dir, "/srv/comfy/output");
    CHECK_STR(c.cmd, "python3 main.py --port 8188");
    CHECK(c.log_level == 0);
    cfg_free(&c);
end:
    clear_env();
}

static void
expect_error(const char *var, const char *val)
{
    struct config c;
    char err[256] = "";

    clear_env();
    setenv(var, val, 1);
    CHECK(cfg_load(&c, err, sizeof(err)) == -1);
    CHECK(strstr(err, var) != NULL);
end:
    clear_env();
}

static void
test_invalid(void)
{
    expect_error("PORT", "abc");
    expect_error("PORT", "70000");
    expect_error("PORT", "0");
    expect_error("PORT", "80x");
    expect_error("ALWAYS_RESTART_COMFYUI", "maybe");
    expect_error("LOG_LEVEL", "loud");
    expect_error("STARTUP_CHECK_INTERVAL_S", "-1");
    expect_error("STARTUP_CHECK_MAX_TRIES", "1e3");
    expect_error("MAX_BODY_SIZE_MB", "99999999999999999999");
}

UNIT_TESTS(config_tests) = {
    {"config: defaults", test_defaults},
    {"config: values", test_values},
    {"config: invalid values name the variable", test_invalid},
    {NULL, NULL},
};
