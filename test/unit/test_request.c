/* test_request.c - POST /prompt validation and the filename_prefix rewrite. */
#include <stdlib.h>

#include "request.h"
#include "unit.h"

static const struct req_options opt = {.prepend_filenames = 1};

#define GRAPH "{\"1\":{\"class_type\":\"EmptyImage\",\"inputs\":{\"width\":8}}," \
              "\"2\":{\"class_type\":\"SaveImage\",\"inputs\":{\"images\":[\"1\",0]," \
              "\"filename_prefix\":\"sub/pic\"}}}"

static int
parse(const char *body, struct prompt_req *r, struct req_error *e)
{
    return preq_parse(body, strlen(body), &opt, r, e);
}

static void
test_ok_and_rewrite(void)
{
    struct prompt_req r;
    struct req_error e;
    json_t *fp;

    CHECK(parse("{\"id\":\"job-1.a_b\",\"prompt\":" GRAPH "}", &r, &e) == 0);
    CHECK_STR(r.id, "job-1.a_b");
    fp = json_object_get(json_object_get(json_object_get(r.prompt, "2"), "inputs"),
                         "filename_prefix");
    CHECK_STR(json_string_value(fp), "sub/job-1.a_b_pic");
    preq_free(&r);
    CHECK(parse("{\"prompt\":" GRAPH "}", &r, &e) == 0);
    CHECK(strlen(r.id) == 36); /* a UUID */
    preq_free(&r);
end:;
}

static void
expect(const char *body, int status, const char *location)
{
    struct prompt_req r;
    struct req_error e;

    memset(&e, 0, sizeof(e));
    CHECK(parse(body, &r, &e) == -1);
    CHECK(e.status == status);
    CHECK_STR(e.location, location);
    CHECK(e.message[0] != '\0');
end:;
}

static void
test_errors(void)
{
    expect("{", 400, "body");
    expect("[1]", 400, "body");
    expect("{}", 400, "prompt");
    expect("{\"prompt\":[]}", 400, "prompt");
    expect("{\"prompt\":{}}", 400, "prompt");
    expect("{\"prompt\":{\"1\":3}}", 400, "prompt.1");
    expect("{\"prompt\":{\"1\":{\"inputs\":{}}}}", 400, "prompt.1.class_type");
    expect("{\"prompt\":{\"1\":{\"class_type\":\"X\",\"inputs\":5}}}", 400,
           "prompt.1.inputs");
    expect("{\"prompt\":{\"1\":{\"class_type\":\"EmptyImage\",\"inputs\":{}}}}", 400,
           "prompt");
    expect("{\"prompt\":" GRAPH ",\"webhook\":\"ftp://x\"}", 400, "webhook");
    expect("{\"prompt\":" GRAPH ",\"webhook_v2\":\"file:///etc/passwd\"}", 400, "webhook_v2");
    expect("{\"prompt\":" GRAPH ",\"webhook_v2\":\"http://a b\"}", 400, "webhook_v2");
    expect("{\"prompt\":" GRAPH ",\"webhook_v2\":7}", 400, "webhook_v2");
    expect("{\"prompt\":" GRAPH ",\"convert_output\":{}}", 400, "convert_output.format");
    expect("{\"prompt\":" GRAPH ",\"convert_output\":{\"format\":\"tiff\"}}", 400,
           "convert_output.format");
    expect("{\"prompt\":" GRAPH ",\"convert_output\":{\"format\":\"jpeg\",\"options\":"
           "{\"lossless\":true}}}", 400, "convert_output.options.lossless");
    expect("{\"prompt\":" GRAPH ",\"convert_output\":{\"format\":\"webp\",\"options\":"
           "{\"effort\":9}}}", 400, "convert_output.options.effort");
    expect("{\"prompt\":" GRAPH ",\"credentials\":[]}", 400, "credentials");
    expect("{\"prompt\":" GRAPH ",\"bogus\":1}", 400, "bogus");
    expect("{\"prompt\":" GRAPH ",\"id\":\"../x\"}", 400, "id");
    expect("{\"prompt\":" GRAPH ",\"id\":\"\"}", 400, "id");
    expect("{\"prompt\":" GRAPH ",\"id\":7}", 400, "id");
    expect("{\"prompt\":{\"2\":{\"class_type\":\"SaveImage\",\"inputs\":"
           "{\"filename_prefix\":\"../out\"}}}}",
           400, "prompt.2.inputs.filename_prefix");
    expect("{\"prompt\":{\"2\":{\"class_type\":\"SaveImage\",\"inputs\":"
           "{\"filename_prefix\":\"/etc/x\"}}}}",
           400, "prompt.2.inputs.filename_prefix");
}

static void
test_id_rules(void)
{
    char longid[200];

    CHECK(preq_id_valid("a"));
    CHECK(preq_id_valid("A-z_0.9"));
    CHECK(!preq_id_valid(""));
    CHECK(!preq_id_valid("a/b"));
    CHECK(!preq_id_valid("a b"));
    memset(longid, 'x', 128);
    longid[128] = '\0';
    CHECK(preq_id_valid(longid));
    longid[128] = 'x';
    longid[129] = '\0';
    CHECK(!preq_id_valid(longid));
end:;
}

static void
test_node_order(void)
{
    CHECK(preq_node_cmp("2", "10") < 0);
    CHECK(preq_node_cmp("10", "9") > 0);
    CHECK(preq_node_cmp("007", "7") == 0);
    CHECK(preq_node_cmp("99", "a") < 0);
    CHECK(preq_node_cmp("12:5", "12:6") < 0);
end:;
}

UNIT_TESTS(request_tests) = {
    {"request: valid body, id and prefix rewrite", test_ok_and_rewrite},
    {"request: every 400 names its location", test_errors},
    {"request: id alphabet and length", test_id_rules},
    {"request: output node order", test_node_order},
    {NULL, NULL},
};
