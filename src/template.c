/* template.c - workflow templates (see template.h and comfy-workflows/README.md).
 *
 * Owns the template file format: loading and checking a folder of templates
 * (one broken file never hides the others), validating a client's `input`
 * against a template's parameters and rules, filling in defaults, writing
 * the values into a copy of the graph, and describing the parameters as
 * JSON Schema. Pure apart from the directory walk in tpl_load_dir. */
#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "template.h"
#include "util.h"

#define MAX_FILE_BYTES (8L * 1024 * 1024)
#define MAX_DEPTH 8
/* How much of an allowed-values list an error message shows. */
#define ENUM_LIST_CHARS 300

enum ptype { PT_STRING, PT_INTEGER, PT_NUMBER, PT_BOOLEAN, PT_ENUM };

static const char *const type_names[] = {"string", "integer", "number",
                                         "boolean", "enum"};

enum rop { OP_LT, OP_LE, OP_GT, OP_GE, OP_EQ, OP_NE };

static const char *const op_names[] = {"<", "<=", ">", ">=", "==", "!="};

struct target {
    char *node;
    char *input;
};

struct param {
    char *name;
    enum ptype type;
    char *description;
    int required;
    json_t *def;     /* default value, NULL if none or random */
    int def_random;  /* "default": "random" (integers only) */
    int from;        /* default copied from this parameter, or -1 */
    json_t *example; /* for documentation only; NULL if none */
    json_t *min;     /* integer or real, NULL if unbounded */
    json_t *max;
    json_t *enum_fixed; /* array of strings, or NULL */
    char *enum_from;    /* "Class.input", or NULL */
    struct target *targets;
    size_t n_targets;
};

/* An operand is a parameter (param >= 0) or an integer literal. */
struct operand {
    int param;
    json_int_t lit;
};

struct rule {
    char *text;
    char *message;
    struct operand a, b;
    enum rop op;
};

struct tpl {
    char *path;
    char *file;
    char *summary;
    char *description;
    struct param *params;
    size_t n_params;
    struct rule *rules;
    size_t n_rules;
    json_t *graph;
};

struct tpl_set {
    struct tpl **tpls;
    size_t n;
    char **errors;
    size_t n_errors;
};

/* ---- small helpers ------------------------------------------------------ */

/* Cut s back to a whole UTF-8 character: snprintf may have split one, and
 * jansson refuses invalid UTF-8 when the caller puts the text in JSON. */
static void
utf8_fix_tail(char *s)
{
    size_t len = strlen(s), p = len, k = 0, need;
    unsigned char c;

    while (p > 0 && k < 4 && ((unsigned char)s[p - 1] & 0xC0) == 0x80) {
        p--;
        k++;
    }
    if (p == 0)
        return;
    c = (unsigned char)s[p - 1];
    if (c < 0x80)
        return;
    need = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 1;
    if (k + 1 < need)
        s[p - 1] = '\0';
}

/* Copy at most n-1 bytes of src, whole characters only; returns dst. */
static const char *
clip(char *dst, size_t n, const char *src)
{
    snprintf(dst, n, "%s", src);
    utf8_fix_tail(dst);
    return dst;
}

static void
fmt(char *dst, size_t n, const char *f, ...) __attribute__((format(printf, 3, 4)));

static void
fmt(char *dst, size_t n, const char *f, ...)
{
    va_list ap;

    va_start(ap, f);
    vsnprintf(dst, n, f, ap);
    va_end(ap);
    utf8_fix_tail(dst);
}

static void
set_err(struct req_error *err, int status, const char *loc, const char *f, ...)
    __attribute__((format(printf, 4, 5)));

static void
set_err(struct req_error *err, int status, const char *loc, const char *f, ...)
{
    va_list ap;

    err->status = status;
    clip(err->location, sizeof(err->location), loc);
    va_start(ap, f);
    vsnprintf(err->message, sizeof(err->message), f, ap);
    va_end(ap);
    utf8_fix_tail(err->message);
}

/* A growable string for messages and Markdown. */
struct sbuf {
    char *s;
    size_t len, cap;
};

static void
sb_add(struct sbuf *b, const char *s, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1)
            cap *= 2;
        b->s = xrealloc(b->s, cap);
        b->cap = cap;
    }
    memcpy(b->s + b->len, s, n);
    b->len += n;
    b->s[b->len] = '\0';
}

static void
sb_str(struct sbuf *b, const char *s)
{
    sb_add(b, s, strlen(s));
}

static void
sb_printf(struct sbuf *b, const char *f, ...) __attribute__((format(printf, 2, 3)));

static void
sb_printf(struct sbuf *b, const char *f, ...)
{
    char tmp[512];
    va_list ap;

    va_start(ap, f);
    vsnprintf(tmp, sizeof(tmp), f, ap);
    va_end(ap);
    utf8_fix_tail(tmp);
    sb_str(b, tmp);
}

static const char *
json_type_name(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT: return "an object";
    case JSON_ARRAY: return "an array";
    case JSON_STRING: return "a string";
    case JSON_INTEGER: return "an integer";
    case JSON_REAL: return "a number with a fraction";
    case JSON_TRUE:
    case JSON_FALSE: return "a boolean";
    default: return "null";
    }
}

/* Compare two JSON numbers: exactly when both are integers. */
static int
num_cmp(const json_t *a, const json_t *b)
{
    if (json_is_integer(a) && json_is_integer(b)) {
        json_int_t x = json_integer_value(a), y = json_integer_value(b);
        return x < y ? -1 : x > y;
    } else {
        double x = json_number_value(a), y = json_number_value(b);
        return x < y ? -1 : x > y;
    }
}

static void
num_text(char *dst, size_t n, const json_t *v)
{
    if (json_is_integer(v))
        snprintf(dst, n, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
    else
        snprintf(dst, n, "%.17g", json_real_value(v));
}

/* ---- allowed values ------------------------------------------------------- */

const json_t *
tpl_object_info_choices(const json_t *object_info, const char *spec)
{
    static const char *const sections[] = {"required", "optional"};
    const char *dot = spec != NULL ? strchr(spec, '.') : NULL;
    const json_t *inputs, *s = NULL, *first;
    char cls[256];
    size_t i;

    if (!json_is_object(object_info) || dot == NULL || dot == spec ||
        (size_t)(dot - spec) >= sizeof(cls))
        return NULL;
    memcpy(cls, spec, (size_t)(dot - spec));
    cls[dot - spec] = '\0';
    inputs = json_object_get(json_object_get(object_info, cls), "input");
    for (i = 0; i < 2 && s == NULL; i++)
        s = json_object_get(json_object_get(inputs, sections[i]), dot + 1);
    if (!json_is_array(s))
        return NULL;
    first = json_array_get(s, 0);
    if (json_is_array(first))
        return first;
    if (json_is_string(first) && strcmp(json_string_value(first), "COMBO") == 0) {
        const json_t *o = json_object_get(json_array_get(s, 1), "options");
        return json_is_array(o) ? o : NULL;
    }
    return NULL;
}

/* The list an enum parameter is checked against, or NULL: any string. An
 * empty live list counts as unknown so that ComfyUI, not we, explains it. */
static const json_t *
allowed_values(const struct param *p, const json_t *object_info)
{
    const json_t *l;

    if (p->type != PT_ENUM)
        return NULL;
    if (p->enum_fixed != NULL)
        return p->enum_fixed;
    l = tpl_object_info_choices(object_info, p->enum_from);
    return json_array_size(l) > 0 ? l : NULL;
}

static int
list_has(const json_t *list, const char *s)
{
    size_t i;
    json_t *e;

    json_array_foreach(list, i, e) {
        if (json_is_string(e) && strcmp(json_string_value(e), s) == 0)
            return 1;
    }
    return 0;
}

static void
list_text(char *dst, size_t n, const json_t *list)
{
    struct sbuf b = {NULL, 0, 0};
    size_t i, shown = 0;
    json_t *e;

    json_array_foreach(list, i, e) {
        if (!json_is_string(e))
            continue;
        if (b.len + json_string_length(e) > ENUM_LIST_CHARS) {
            sb_printf(&b, ", ... (%zu values)", json_array_size(list));
            break;
        }
        if (shown++ > 0)
            sb_str(&b, ", ");
        sb_str(&b, json_string_value(e));
    }
    clip(dst, n, b.s != NULL ? b.s : "");
    free(b.s);
}

/* Check one value against p. Writes a reason to msg ("must be ...; got
 * ...") and returns -1 if it does not fit. */
static int
check_value(const struct param *p, const json_t *v, const json_t *object_info,
            char *msg, size_t msglen)
{
    char a[64], b[64], got[80], list[ENUM_LIST_CHARS + 64];
    const json_t *allowed;

    switch (p->type) {
    case PT_STRING:
    case PT_ENUM:
        if (!json_is_string(v)) {
            fmt(msg, msglen, "must be a string; got %s", json_type_name(v));
            return -1;
        }
        allowed = allowed_values(p, object_info);
        if (allowed != NULL && !list_has(allowed, json_string_value(v))) {
            list_text(list, sizeof(list), allowed);
            fmt(msg, msglen, "must be one of: %s; got \"%s\"", list,
                clip(got, sizeof(got), json_string_value(v)));
            return -1;
        }
        return 0;
    case PT_BOOLEAN:
        if (!json_is_boolean(v)) {
            fmt(msg, msglen, "must be a boolean (true or false); got %s",
                json_type_name(v));
            return -1;
        }
        return 0;
    case PT_INTEGER:
        /* 25.0 is refused too: the graph would carry a float. */
        if (!json_is_integer(v)) {
            fmt(msg, msglen, "must be an integer; got %s", json_type_name(v));
            return -1;
        }
        break;
    case PT_NUMBER:
        if (!json_is_number(v)) {
            fmt(msg, msglen, "must be a number; got %s", json_type_name(v));
            return -1;
        }
        break;
    }
    if (p->min != NULL && num_cmp(v, p->min) < 0) {
        num_text(a, sizeof(a), p->min);
        num_text(b, sizeof(b), v);
        fmt(msg, msglen, "must be >= %s (minimum); got %s", a, b);
        return -1;
    }
    if (p->max != NULL && num_cmp(v, p->max) > 0) {
        num_text(a, sizeof(a), p->max);
        num_text(b, sizeof(b), v);
        fmt(msg, msglen, "must be <= %s (maximum); got %s", a, b);
        return -1;
    }
    return 0;
}

/* Range a "random" default draws from: the bounds clipped to 0..2^53-1. */
static void
random_range(const struct param *p, json_int_t *lo, json_int_t *hi)
{
    *lo = 0;
    *hi = TPL_RANDOM_MAX;
    if (p->min != NULL && json_integer_value(p->min) > *lo)
        *lo = json_integer_value(p->min);
    if (p->max != NULL && json_integer_value(p->max) < *hi)
        *hi = json_integer_value(p->max);
}

/* ---- freeing ---------------------------------------------------------------- */

static void
param_clear(struct param *p)
{
    size_t i;

    free(p->name);
    free(p->description);
    json_decref(p->def);
    json_decref(p->example);
    json_decref(p->min);
    json_decref(p->max);
    json_decref(p->enum_fixed);
    free(p->enum_from);
    for (i = 0; i < p->n_targets; i++) {
        free(p->targets[i].node);
        free(p->targets[i].input);
    }
    free(p->targets);
}

void
tpl_free(struct tpl *t)
{
    size_t i;

    if (t == NULL)
        return;
    for (i = 0; i < t->n_params; i++)
        param_clear(&t->params[i]);
    free(t->params);
    for (i = 0; i < t->n_rules; i++) {
        free(t->rules[i].text);
        free(t->rules[i].message);
    }
    free(t->rules);
    free(t->path);
    free(t->file);
    free(t->summary);
    free(t->description);
    json_decref(t->graph);
    free(t);
}

/* ---- loading one template ------------------------------------------------ */

static int
find_param(const struct tpl *t, const char *name)
{
    size_t i;

    for (i = 0; i < t->n_params; i++)
        if (strcmp(t->params[i].name, name) == 0)
            return (int)i;
    return -1;
}

/* Keys starting with '$' ("$comment", "$schema") are the operator's notes. */
static int
check_keys(const json_t *obj, const char *const *known, char *err, size_t errlen,
           const char *where)
{
    const char *key;
    json_t *v;
    size_t i;
    char k[80];

    json_object_foreach((json_t *)obj, key, v) {
        int ok = key[0] == '$';
        for (i = 0; !ok && known[i] != NULL; i++)
            ok = strcmp(key, known[i]) == 0;
        if (!ok) {
            fmt(err, errlen, "%sunknown key \"%s\"", where, clip(k, sizeof(k), key));
            return -1;
        }
    }
    return 0;
}

static int
parse_targets(const struct tpl *t, struct param *p, const json_t *list,
              char *err, size_t errlen)
{
    size_t i, j, k;
    json_t *e;
    char s[80];

    if (!json_is_array(list) || json_array_size(list) == 0) {
        fmt(err, errlen, "\"targets\" must be a non-empty list of \"<node id>.<input>\"");
        return -1;
    }
    p->targets = xcalloc(json_array_size(list), sizeof(*p->targets));
    json_array_foreach(list, i, e) {
        const char *str = json_string_value(e), *dot;
        const json_t *node, *cur;

        if (str == NULL || (dot = strchr(str, '.')) == NULL || dot == str ||
            dot[1] == '\0') {
            fmt(err, errlen, "target %zu must be a string \"<node id>.<input>\"", i);
            return -1;
        }
        p->targets[i].node = xmalloc((size_t)(dot - str) + 1);
        memcpy(p->targets[i].node, str, (size_t)(dot - str));
        p->targets[i].node[dot - str] = '\0';
        p->targets[i].input = xstrdup(dot + 1);
        p->n_targets++;
        clip(s, sizeof(s), str);
        node = json_object_get(t->graph, p->targets[i].node);
        if (node == NULL) {
            fmt(err, errlen, "target \"%s\" names no node in the graph", s);
            return -1;
        }
        cur = json_object_get(json_object_get(node, "inputs"), p->targets[i].input);
        if (cur == NULL) {
            fmt(err, errlen, "target \"%s\": node %s (%s) has no input \"%s\"", s,
                p->targets[i].node,
                json_string_value(json_object_get(node, "class_type")),
                p->targets[i].input);
            return -1;
        }
        /* A link is ["node", slot]; overwriting it would cut the graph. */
        if (json_is_array(cur)) {
            fmt(err, errlen, "target \"%s\" is a link to another node, not a value", s);
            return -1;
        }
        if (((p->type == PT_STRING || p->type == PT_ENUM) && !json_is_string(cur)) ||
            ((p->type == PT_INTEGER || p->type == PT_NUMBER) && !json_is_number(cur)) ||
            (p->type == PT_BOOLEAN && !json_is_boolean(cur))) {
            fmt(err, errlen, "target \"%s\" holds %s in the graph; a %s parameter cannot set it",
                s, json_type_name(cur), type_names[p->type]);
            return -1;
        }
        /* Two writers of one input: the later would silently win. */
        for (j = 0; j <= (size_t)(p - t->params); j++) {
            const struct param *q = &t->params[j];
            for (k = 0; k < q->n_targets; k++) {
                if (q == p && k == i)
                    break;
                if (strcmp(q->targets[k].node, p->targets[i].node) == 0 &&
                    strcmp(q->targets[k].input, p->targets[i].input) == 0) {
                    fmt(err, errlen, "target \"%s\" is also set by parameter \"%s\"",
                        s, q->name);
                    return -1;
                }
            }
        }
    }
    return 0;
}

static int
parse_bound(const struct param *p, const json_t *v, json_t **out, const char *key,
            char *err, size_t errlen)
{
    if (v == NULL)
        return 0;
    if (p->type != PT_INTEGER && p->type != PT_NUMBER) {
        fmt(err, errlen, "\"%s\" applies to integer and number parameters only", key);
        return -1;
    }
    if (p->type == PT_INTEGER ? !json_is_integer(v) : !json_is_number(v)) {
        fmt(err, errlen, "\"%s\" must be %s", key,
            p->type == PT_INTEGER ? "an integer" : "a number");
        return -1;
    }
    *out = json_incref((json_t *)v);
    return 0;
}

/* Everything about one parameter except what depends on the others
 * (default_from), which parse_params resolves afterwards. */
static int
parse_param(struct tpl *t, struct param *p, const char *name, const json_t *def,
            char *err, size_t errlen)
{
    static const char *const known[] = {
        "type", "description", "default", "default_from", "required", "minimum",
        "maximum", "enum", "enum_from", "targets", "example", NULL};
    const json_t *v;
    const char *type;
    char why[300];
    size_t i;

    p->from = -1;
    p->name = xstrdup(name);
    if (!json_is_object(def)) {
        fmt(err, errlen, "must be an object");
        return -1;
    }
    if (check_keys(def, known, err, errlen, "") < 0)
        return -1;
    type = json_string_value(json_object_get(def, "type"));
    for (i = 0; type != NULL && i < 5; i++)
        if (strcmp(type, type_names[i]) == 0)
            break;
    if (type == NULL || i == 5) {
        fmt(err, errlen, "\"type\" must be one of string, integer, number, boolean, enum");
        return -1;
    }
    p->type = (enum ptype)i;
    v = json_object_get(def, "description");
    if (v != NULL && !json_is_string(v)) {
        fmt(err, errlen, "\"description\" must be a string");
        return -1;
    }
    p->description = xstrdup(v != NULL ? json_string_value(v) : "");
    v = json_object_get(def, "required");
    if (v != NULL && !json_is_boolean(v)) {
        fmt(err, errlen, "\"required\" must be true or false");
        return -1;
    }
    p->required = json_is_true(v);
    if (parse_bound(p, json_object_get(def, "minimum"), &p->min, "minimum", err,
                    errlen) < 0 ||
        parse_bound(p, json_object_get(def, "maximum"), &p->max, "maximum", err,
                    errlen) < 0)
        return -1;
    if (p->min != NULL && p->max != NULL && num_cmp(p->min, p->max) > 0) {
        fmt(err, errlen, "\"minimum\" is greater than \"maximum\"");
        return -1;
    }

    v = json_object_get(def, "enum");
    if (v != NULL) {
        if (p->type != PT_ENUM) {
            fmt(err, errlen, "\"enum\" applies to enum parameters only");
            return -1;
        }
        if (!json_is_array(v) || json_array_size(v) == 0) {
            fmt(err, errlen, "\"enum\" must be a non-empty list of strings");
            return -1;
        }
        for (i = 0; i < json_array_size(v); i++)
            if (!json_is_string(json_array_get(v, i))) {
                fmt(err, errlen, "\"enum\" must be a non-empty list of strings");
                return -1;
            }
        p->enum_fixed = json_incref((json_t *)v);
    }
    v = json_object_get(def, "enum_from");
    if (v != NULL) {
        const char *s = json_string_value(v), *dot = s ? strchr(s, '.') : NULL;
        if (p->type != PT_ENUM) {
            fmt(err, errlen, "\"enum_from\" applies to enum parameters only");
            return -1;
        }
        if (dot == NULL || dot == s || dot[1] == '\0') {
            fmt(err, errlen, "\"enum_from\" must be \"<NodeClass>.<input>\"");
            return -1;
        }
        p->enum_from = xstrdup(s);
    }
    if (p->type == PT_ENUM && (p->enum_fixed == NULL) == (p->enum_from == NULL)) {
        fmt(err, errlen, "an enum parameter needs exactly one of \"enum\" and \"enum_from\"");
        return -1;
    }

    if (parse_targets(t, p, json_object_get(def, "targets"), err, errlen) < 0)
        return -1;

    v = json_object_get(def, "default");
    if (p->required && (v != NULL || json_object_get(def, "default_from") != NULL)) {
        fmt(err, errlen, "a required parameter has no default");
        return -1;
    }
    if (!p->required && (v == NULL) == (json_object_get(def, "default_from") == NULL)) {
        fmt(err, errlen, "an optional parameter needs exactly one of \"default\" and "
                         "\"default_from\" (or \"required\": true)");
        return -1;
    }
    if (json_is_string(v) && strcmp(json_string_value(v), "random") == 0 &&
        p->type == PT_INTEGER) {
        json_int_t lo, hi;
        random_range(p, &lo, &hi);
        if (lo > hi) {
            fmt(err, errlen, "a \"random\" default needs a range inside 0..%lld",
                TPL_RANDOM_MAX);
            return -1;
        }
        p->def_random = 1;
    } else if (v != NULL) {
        /* enum_from defaults are not checked against ComfyUI's list: a model
         * still downloading at load time must not break the template. */
        if (check_value(p, v, NULL, why, sizeof(why)) < 0) {
            fmt(err, errlen, "\"default\" %s", why);
            return -1;
        }
        p->def = json_incref((json_t *)v);
    }
    v = json_object_get(def, "example");
    if (v != NULL) {
        if (check_value(p, v, NULL, why, sizeof(why)) < 0) {
            fmt(err, errlen, "\"example\" %s", why);
            return -1;
        }
        p->example = json_incref((json_t *)v);
    }
    return 0;
}

static int
parse_params(struct tpl *t, const json_t *params, char *err, size_t errlen)
{
    const char *name;
    json_t *def;
    char why[400], n[80];
    size_t i;

    if (!json_is_object(params)) {
        fmt(err, errlen, "\"parameters\" must be an object (name -> definition)");
        return -1;
    }
    t->params = xcalloc(json_object_size(params) + 1, sizeof(*t->params));
    json_object_foreach((json_t *)params, name, def) {
        struct param *p = &t->params[t->n_params++];
        size_t k;
        int ok = name[0] != '\0';

        for (k = 0; name[k] != '\0'; k++)
            if (!((name[k] >= 'a' && name[k] <= 'z') || (name[k] >= 'A' && name[k] <= 'Z') ||
                  (name[k] >= '0' && name[k] <= '9' && k > 0) || name[k] == '_'))
                ok = 0;
        if (!ok) {
            fmt(err, errlen, "parameter \"%s\": names use letters, digits and '_' "
                "and do not start with a digit", clip(n, sizeof(n), name));
            return -1;
        }
        if (parse_param(t, p, name, def, why, sizeof(why)) < 0) {
            fmt(err, errlen, "parameter \"%s\": %s", name, why);
            return -1;
        }
    }
    /* default_from: one level only, so there is no order or cycle to get
     * wrong; the source's type must fit this parameter's. */
    for (i = 0; i < t->n_params; i++) {
        struct param *p = &t->params[i];
        const char *src;
        const json_t *f;
        int j;

        f = json_object_get(json_object_get(params, p->name), "default_from");
        if (f == NULL)
            continue;
        src = json_string_value(f);
        j = src != NULL ? find_param(t, src) : -1;
        if (j < 0 || (size_t)j == i) {
            fmt(err, errlen, "parameter \"%s\": \"default_from\" must name another parameter",
                p->name);
            return -1;
        }
        if (json_object_get(json_object_get(params, src), "default_from") != NULL) {
            fmt(err, errlen, "parameter \"%s\": \"default_from\" names \"%s\", which "
                "itself has \"default_from\"", p->name, src);
            return -1;
        }
        if (!(t->params[j].type == p->type ||
              (t->params[j].type == PT_INTEGER && p->type == PT_NUMBER) ||
              (t->params[j].type == PT_ENUM && p->type == PT_STRING))) {
            fmt(err, errlen, "parameter \"%s\": \"default_from\" names \"%s\" of type "
                "%s", p->name, src, type_names[t->params[j].type]);
            return -1;
        }
        p->from = j;
    }
    return 0;
}

static int
is_ident_start(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}

static int
is_ident(char c)
{
    return is_ident_start(c) || (c >= '0' && c <= '9');
}

/* operand := identifier | -?[0-9]+ */
static int
parse_operand(const struct tpl *t, const char **s, struct operand *o, char *err,
              size_t errlen)
{
    const char *p = *s;

    while (*p == ' ')
        p++;
    if (is_ident_start(*p)) {
        const char *start = p;
        char name[128];
        int j;

        while (is_ident(*p))
            p++;
        if ((size_t)(p - start) >= sizeof(name)) {
            fmt(err, errlen, "parameter name too long");
            return -1;
        }
        memcpy(name, start, (size_t)(p - start));
        name[p - start] = '\0';
        j = find_param(t, name);
        if (j < 0) {
            fmt(err, errlen, "\"%s\" is not a parameter", name);
            return -1;
        }
        if (t->params[j].type != PT_INTEGER && t->params[j].type != PT_NUMBER) {
            fmt(err, errlen, "\"%s\" is a %s parameter; rules compare integers and numbers",
                name, type_names[t->params[j].type]);
            return -1;
        }
        o->param = j;
    } else if (*p == '-' || (*p >= '0' && *p <= '9')) {
        int neg = *p == '-';
        unsigned long long v = 0;

        if (neg)
            p++;
        if (*p < '0' || *p > '9') {
            fmt(err, errlen, "expected a number after '-'");
            return -1;
        }
        for (; *p >= '0' && *p <= '9'; p++) {
            v = v * 10 + (unsigned long long)(*p - '0');
            if (v > (unsigned long long)TPL_RANDOM_MAX) {
                fmt(err, errlen, "number out of range");
                return -1;
            }
        }
        o->param = -1;
        o->lit = neg ? -(json_int_t)v : (json_int_t)v;
    } else {
        fmt(err, errlen, "expected a parameter name or an integer");
        return -1;
    }
    *s = p;
    return 0;
}

/* rule := operand op operand, op one of < <= > >= == != */
static int
parse_rule_text(const struct tpl *t, const char *s, struct rule *r, char *err,
                size_t errlen)
{
    int i;

    if (parse_operand(t, &s, &r->a, err, errlen) < 0)
        return -1;
    while (*s == ' ')
        s++;
    /* Two-character operators are tried first so "<=" is not read as "<". */
    for (i = 0; i < 6; i++) {
        static const enum rop order[] = {OP_LE, OP_GE, OP_EQ, OP_NE, OP_LT, OP_GT};
        size_t n = strlen(op_names[order[i]]);
        if (strncmp(s, op_names[order[i]], n) == 0) {
            r->op = order[i];
            s += n;
            break;
        }
    }
    if (i == 6) {
        fmt(err, errlen, "expected one of < <= > >= == !=");
        return -1;
    }
    if (parse_operand(t, &s, &r->b, err, errlen) < 0)
        return -1;
    while (*s == ' ')
        s++;
    if (*s != '\0') {
        fmt(err, errlen, "unexpected text after the second operand");
        return -1;
    }
    if (r->a.param < 0 && r->b.param < 0) {
        fmt(err, errlen, "compares two numbers; name at least one parameter");
        return -1;
    }
    return 0;
}

static int
parse_rules(struct tpl *t, const json_t *rules, char *err, size_t errlen)
{
    static const char *const known[] = {"rule", "message", NULL};
    json_t *e;
    size_t i;
    char why[300], txt[120];

    if (rules == NULL)
        return 0;
    if (!json_is_array(rules)) {
        fmt(err, errlen, "\"rules\" must be a list");
        return -1;
    }
    t->rules = xcalloc(json_array_size(rules) + 1, sizeof(*t->rules));
    json_array_foreach(rules, i, e) {
        struct rule *r = &t->rules[i];
        const char *text = json_string_value(json_object_get(e, "rule"));
        const json_t *m = json_object_get(e, "message");

        if (!json_is_object(e) || text == NULL) {
            fmt(err, errlen, "rule %zu must be an object with a \"rule\" string", i);
            return -1;
        }
        if (check_keys(e, known, why, sizeof(why), "") < 0 ||
            (m != NULL && !json_is_string(m))) {
            fmt(err, errlen, "rule %zu: %s", i,
                m != NULL && !json_is_string(m) ? "\"message\" must be a string" : why);
            return -1;
        }
        r->text = xstrdup(text);
        r->message = xstrdup(m != NULL ? json_string_value(m) : "");
        t->n_rules++;
        if (parse_rule_text(t, text, r, why, sizeof(why)) < 0) {
            fmt(err, errlen, "rule \"%s\": %s", clip(txt, sizeof(txt), text), why);
            return -1;
        }
    }
    return 0;
}

struct tpl *
tpl_from_json(const char *path, const char *file, const json_t *root, char *err,
              size_t errlen)
{
    static const char *const known[] = {"summary", "description", "parameters",
                                        "rules", "graph", NULL};
    struct tpl *t = xcalloc(1, sizeof(*t));
    const json_t *v;
    struct req_error rerr;
    struct req_options ropt;
    json_t *probe = NULL;

    memset(&ropt, 0, sizeof(ropt));
    ropt.prepend_filenames = 1;

    t->path = xstrdup(path);
    t->file = xstrdup(file);
    if (!json_is_object(root)) {
        fmt(err, errlen, "a template must be a JSON object");
        goto fail;
    }
    if (json_object_get(root, "parameters") == NULL &&
        json_object_get(root, "graph") == NULL) {
        fmt(err, errlen, "no \"parameters\" and \"graph\": a plain exported graph is "
            "not a template (see comfy-workflows/README.md)");
        goto fail;
    }
    if (check_keys(root, known, err, errlen, "") < 0)
        goto fail;
    v = json_object_get(root, "summary");
    if (v != NULL && !json_is_string(v)) {
        fmt(err, errlen, "\"summary\" must be a string");
        goto fail;
    }
    t->summary = xstrdup(v != NULL ? json_string_value(v) : "");
    v = json_object_get(root, "description");
    if (v != NULL && !json_is_string(v)) {
        fmt(err, errlen, "\"description\" must be a string");
        goto fail;
    }
    t->description = xstrdup(v != NULL ? json_string_value(v) : "");

    v = json_object_get(root, "graph");
    if (v == NULL) {
        fmt(err, errlen, "no \"graph\" (the ComfyUI \"Export (API)\" graph)");
        goto fail;
    }
    /* The same checks a POST /prompt graph gets, so that a template which
     * loads also renders into something /prompt accepts. */
    probe = json_deep_copy(v);
    if (preq_check_graph(probe, "probe", &ropt, &rerr) < 0) {
        fmt(err, errlen, "\"graph\": %s (at %s)", rerr.message, rerr.location);
        goto fail;
    }
    t->graph = json_deep_copy(v);
    if (parse_params(t, json_object_get(root, "parameters"), err, errlen) < 0 ||
        parse_rules(t, json_object_get(root, "rules"), err, errlen) < 0)
        goto fail;
    json_decref(probe);
    return t;
fail:
    json_decref(probe);
    tpl_free(t);
    return NULL;
}

/* ---- the folder ------------------------------------------------------------- */

static void
add_error(struct tpl_set *set, const char *file, const char *reason)
{
    size_t n = strlen(file) + strlen(reason) + 3;
    char *s = xmalloc(n);

    snprintf(s, n, "%s: %s", file, reason);
    set->errors = xrealloc(set->errors, (set->n_errors + 1) * sizeof(*set->errors));
    set->errors[set->n_errors++] = s;
}

/* URL path segments: letters, digits, '-' and '_' (no dots, so "a/b" and
 * "a.b" cannot meet in an operationId or a schema name). */
static int
segment_ok(const char *s, size_t n)
{
    size_t i;

    if (n == 0)
        return 0;
    for (i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
              (c >= '0' && c <= '9') || c == '-' || c == '_'))
            return 0;
    }
    return 1;
}

static char *
join(const char *a, const char *b)
{
    size_t la = strlen(a), n;
    char *s;

    if (*a == '\0')
        return xstrdup(b);
    if (*b == '\0')
        return xstrdup(a);
    while (la > 1 && a[la - 1] == '/')
        la--;
    n = la + strlen(b) + 2;
    s = xmalloc(n);
    snprintf(s, n, "%.*s/%s", (int)la, a, b);
    return s;
}

static void
load_file(struct tpl_set *set, const char *full, const char *rel, off_t size)
{
    char err[600], *path;
    size_t n = strlen(rel) - 5; /* without ".json" */
    const char *seg = rel;
    json_error_t jerr;
    json_t *root;
    struct tpl *t;

    for (;;) {
        const char *end = memchr(seg, '/', (size_t)(rel + n - seg));
        size_t len = end != NULL ? (size_t)(end - seg) : (size_t)(rel + n - seg);
        if (!segment_ok(seg, len)) {
            add_error(set, full, "file and folder names must use only letters, "
                                 "digits, '-' and '_' (they become the URL path)");
            return;
        }
        if (end == NULL)
            break;
        seg = end + 1;
    }
    if (size > MAX_FILE_BYTES) {
        add_error(set, full, "larger than 8 MiB");
        return;
    }
    root = json_load_file(full, JSON_REJECT_DUPLICATES, &jerr);
    if (root == NULL) {
        fmt(err, sizeof(err), "invalid JSON at line %d column %d: %s", jerr.line,
            jerr.column, jerr.text);
        add_error(set, full, err);
        return;
    }
    path = xmalloc(n + 1);
    memcpy(path, rel, n);
    path[n] = '\0';
    t = tpl_from_json(path, full, root, err, sizeof(err));
    if (t == NULL) {
        add_error(set, full, err);
    } else {
        set->tpls = xrealloc(set->tpls, (set->n + 1) * sizeof(*set->tpls));
        set->tpls[set->n++] = t;
    }
    free(path);
    json_decref(root);
}

static int
str_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int
tpl_cmp(const void *a, const void *b)
{
    return strcmp((*(struct tpl *const *)a)->path, (*(struct tpl *const *)b)->path);
}

static void
walk(struct tpl_set *set, const char *root, const char *rel, int depth)
{
    char *dir = join(root, rel), **names = NULL;
    size_t n = 0, i;
    struct dirent *de;
    DIR *d = opendir(dir);

    if (d == NULL) {
        add_error(set, dir, strerror(errno));
        free(dir);
        return;
    }
    while ((de = readdir(d)) != NULL) {
        if (de->d_name[0] == '.')
            continue;
        names = xrealloc(names, (n + 1) * sizeof(*names));
        names[n++] = xstrdup(de->d_name);
    }
    closedir(d);
    if (n > 1)
        qsort(names, n, sizeof(*names), str_cmp);
    for (i = 0; i < n; i++) {
        char *full = join(dir, names[i]), *crel = join(rel, names[i]);
        size_t len = strlen(names[i]);
        struct stat st;

        if (stat(full, &st) < 0) {
            add_error(set, full, strerror(errno));
        } else if (S_ISDIR(st.st_mode)) {
            if (depth == 0 && strcmp(names[i], "warmup") == 0)
                ; /* plain graphs for WARMUP_PROMPT_FILE, not templates */
            else if (depth >= MAX_DEPTH)
                add_error(set, full, "folders nested too deep");
            else
                walk(set, root, crel, depth + 1);
        } else if (S_ISREG(st.st_mode) && len > 5 &&
                   strcmp(names[i] + len - 5, ".json") == 0) {
            load_file(set, full, crel, st.st_size);
        }
        free(full);
        free(crel);
        free(names[i]);
    }
    free(names);
    free(dir);
}

struct tpl_set *
tpl_load_dir(const char *dir)
{
    struct tpl_set *set = xcalloc(1, sizeof(*set));

    walk(set, dir, "", 0);
    if (set->n > 1)
        qsort(set->tpls, set->n, sizeof(*set->tpls), tpl_cmp);
    return set;
}

void
tpl_set_free(struct tpl_set *set)
{
    size_t i;

    if (set == NULL)
        return;
    for (i = 0; i < set->n; i++)
        tpl_free(set->tpls[i]);
    for (i = 0; i < set->n_errors; i++)
        free(set->errors[i]);
    free(set->tpls);
    free(set->errors);
    free(set);
}

size_t
tpl_count(const struct tpl_set *set)
{
    return set->n;
}

const struct tpl *
tpl_at(const struct tpl_set *set, size_t i)
{
    return i < set->n ? set->tpls[i] : NULL;
}

size_t
tpl_error_count(const struct tpl_set *set)
{
    return set->n_errors;
}

const char *
tpl_error_at(const struct tpl_set *set, size_t i)
{
    return i < set->n_errors ? set->errors[i] : NULL;
}

const struct tpl *
tpl_find(const struct tpl_set *set, const char *path)
{
    size_t i;

    for (i = 0; path != NULL && i < set->n; i++)
        if (strcmp(set->tpls[i]->path, path) == 0)
            return set->tpls[i];
    return NULL;
}

const char *
tpl_path(const struct tpl *t)
{
    return t->path;
}

const char *
tpl_file(const struct tpl *t)
{
    return t->file;
}

const char *
tpl_summary(const struct tpl *t)
{
    return t->summary;
}

const char *
tpl_description(const struct tpl *t)
{
    return t->description;
}

const json_t *
tpl_graph(const struct tpl *t)
{
    return t->graph;
}

/* ---- rendering ---------------------------------------------------------------- */

static void
operand_text(char *dst, size_t n, const struct operand *o, json_t *const *vals)
{
    if (o->param >= 0)
        num_text(dst, n, vals[o->param]);
    else
        snprintf(dst, n, "%" JSON_INTEGER_FORMAT, o->lit);
}

/* 1 if the rule holds, 0 if broken, -1 if an operand has no value. */
static int
rule_holds(const struct rule *r, json_t *const *vals)
{
    json_t *a, *b;
    int c;

    a = r->a.param >= 0 ? json_incref(vals[r->a.param]) : json_integer(r->a.lit);
    b = r->b.param >= 0 ? json_incref(vals[r->b.param]) : json_integer(r->b.lit);
    if (a == NULL || b == NULL) {
        json_decref(a);
        json_decref(b);
        return -1;
    }
    c = num_cmp(a, b);
    json_decref(a);
    json_decref(b);
    switch (r->op) {
    case OP_LT: return c < 0;
    case OP_LE: return c <= 0;
    case OP_GT: return c > 0;
    case OP_GE: return c >= 0;
    case OP_EQ: return c == 0;
    case OP_NE: return c != 0;
    }
    return 0;
}

int
tpl_render(const struct tpl *t, json_t *input, const json_t *object_info,
           uint64_t (*rand64)(void *), void *rng, json_t **graph_out,
           json_t **input_out, struct req_error *err)
{
    json_t **vals = xcalloc(t->n_params + 1, sizeof(*vals));
    json_t *graph = NULL, *filled = NULL, *v;
    char why[ENUM_LIST_CHARS + 200], loc[160], k[100];
    const char *key;
    size_t i, j;
    int rc = -1, pass;

    *graph_out = NULL;
    *input_out = NULL;
    if (input != NULL && !json_is_object(input)) {
        set_err(err, 400, "input", "\"input\" must be an object of parameters; got %s",
                json_type_name(input));
        goto out;
    }
    json_object_foreach(input, key, v) {
        if (find_param(t, key) < 0) {
            struct sbuf b = {NULL, 0, 0};
            for (i = 0; i < t->n_params; i++) {
                sb_str(&b, i ? ", " : "");
                sb_str(&b, t->params[i].name);
            }
            clip(k, sizeof(k), key);
            fmt(loc, sizeof(loc), "input.%s", k);
            set_err(err, 400, loc, "unknown parameter \"%s\" for %s; known: %s", k,
                    t->path, b.s != NULL ? b.s : "(none)");
            free(b.s);
            goto out;
        }
    }
    /* Pass 0 resolves plain values, pass 1 the defaults copied from them. */
    for (pass = 0; pass < 2; pass++) {
        for (i = 0; i < t->n_params; i++) {
            const struct param *p = &t->params[i];
            json_t *given = json_object_get(input, p->name);

            if ((p->from >= 0) != pass)
                continue;
            fmt(loc, sizeof(loc), "input.%s", p->name);
            if (given != NULL) {
                if (check_value(p, given, object_info, why, sizeof(why)) < 0) {
                    set_err(err, 400, loc, "\"%s\" %s", p->name, why);
                    goto out;
                }
                vals[i] = json_incref(given);
            } else if (p->required) {
                set_err(err, 400, loc, "\"%s\" is required (%s)", p->name,
                        type_names[p->type]);
                goto out;
            } else if (p->def_random) {
                json_int_t lo, hi;
                if (rand64 == NULL) {
                    set_err(err, 500, loc, "no random source for \"%s\"", p->name);
                    goto out;
                }
                random_range(p, &lo, &hi);
                vals[i] = json_integer(
                    lo + (json_int_t)(rand64(rng) % ((uint64_t)(hi - lo) + 1)));
            } else if (p->from >= 0) {
                /* The copied value passed its source's checks, not ours. */
                if (check_value(p, vals[p->from], object_info, why, sizeof(why)) < 0) {
                    set_err(err, 400, loc, "\"%s\" (by default the value of \"%s\") %s",
                            p->name, t->params[p->from].name, why);
                    goto out;
                }
                vals[i] = json_incref(vals[p->from]);
            } else {
                vals[i] = json_incref(p->def);
            }
        }
    }
    for (i = 0; i < t->n_rules; i++) {
        const struct rule *r = &t->rules[i];
        const struct operand *first = r->a.param >= 0 ? &r->a : &r->b;
        char a[64], b[64];

        if (rule_holds(r, vals) != 0)
            continue;
        operand_text(a, sizeof(a), &r->a, vals);
        operand_text(b, sizeof(b), &r->b, vals);
        fmt(loc, sizeof(loc), "input.%s", t->params[first->param].name);
        set_err(err, 400, loc, "%s%srule \"%s\" is broken: %s %s %s is false",
                r->message, r->message[0] != '\0' ? ": " : "", r->text, a,
                op_names[r->op], b);
        goto out;
    }

    graph = json_deep_copy(t->graph);
    filled = json_object();
    for (i = 0; i < t->n_params; i++) {
        const struct param *p = &t->params[i];

        for (j = 0; j < p->n_targets; j++) {
            json_t *ins = json_object_get(json_object_get(graph, p->targets[j].node),
                                          "inputs");
            json_object_set_new(ins, p->targets[j].input, json_deep_copy(vals[i]));
        }
        json_object_set(filled, p->name, vals[i]);
    }
    *graph_out = graph;
    *input_out = filled;
    rc = 0;
out:
    for (i = 0; i < t->n_params; i++)
        json_decref(vals[i]);
    free(vals);
    return rc;
}

/* ---- documentation --------------------------------------------------------- */

static json_t *
example_value(const struct param *p, const json_t *object_info)
{
    const json_t *allowed = allowed_values(p, object_info);
    json_t *v = p->example != NULL ? p->example : p->def;

    if (v == NULL) {
        if (!p->required)
            return NULL; /* random or derived: documented, not shown */
        switch (p->type) {
        case PT_STRING: return json_string(p->name);
        case PT_BOOLEAN: return json_false();
        case PT_ENUM:
            return allowed != NULL ? json_incref(json_array_get(allowed, 0))
                                   : json_string(p->name);
        default:
            return p->min != NULL ? json_incref(p->min) : json_integer(0);
        }
    }
    /* A live list may lack the file default; show something it accepts. */
    if (allowed != NULL && !list_has(allowed, json_string_value(v)))
        return json_incref(json_array_get(allowed, 0));
    return json_incref(v);
}

json_t *
tpl_input_example(const struct tpl *t, const json_t *object_info)
{
    json_t *ex = json_object();
    size_t i;

    for (i = 0; i < t->n_params; i++) {
        json_t *v = example_value(&t->params[i], object_info);
        if (v != NULL)
            json_object_set_new(ex, t->params[i].name, v);
    }
    return ex;
}

/* The notes a schema description adds to the operator's text. */
static void
param_notes(struct sbuf *b, const struct tpl *t, const struct param *p,
            const json_t *object_info)
{
    if (p->def_random) {
        json_int_t lo, hi;
        random_range(p, &lo, &hi);
        sb_printf(b, " Defaults to a random integer in %" JSON_INTEGER_FORMAT
                     "..%" JSON_INTEGER_FORMAT "; the answer's input shows the one used.",
                  lo, hi);
    }
    if (p->from >= 0)
        sb_printf(b, " Defaults to the value of %s.", t->params[p->from].name);
    if (p->enum_from != NULL && allowed_values(p, object_info) == NULL)
        sb_printf(b, " One of ComfyUI's %s values.", p->enum_from);
}

json_t *
tpl_input_schema(const struct tpl *t, const json_t *object_info)
{
    static const char *const js_types[] = {"string", "integer", "number", "boolean",
                                           "string"};
    json_t *props = json_object(), *required = json_array(), *schema;
    size_t i;

    for (i = 0; i < t->n_params; i++) {
        const struct param *p = &t->params[i];
        const json_t *allowed = allowed_values(p, object_info);
        json_t *s = json_pack("{s:s}", "type", js_types[p->type]);
        struct sbuf d = {NULL, 0, 0};

        sb_str(&d, p->description);
        param_notes(&d, t, p, object_info);
        if (d.s != NULL && d.s[0] == ' ')
            memmove(d.s, d.s + 1, d.len--);
        if (d.len > 0)
            json_object_set_new(s, "description", json_string(d.s));
        free(d.s);
        if (allowed != NULL)
            json_object_set_new(s, "enum", json_deep_copy(allowed));
        if (p->min != NULL)
            json_object_set(s, "minimum", p->min);
        if (p->max != NULL)
            json_object_set(s, "maximum", p->max);
        /* A default the live list lacks would make the schema contradict
         * itself; the description says what happens instead. */
        if (p->def != NULL && allowed != NULL &&
            !list_has(allowed, json_string_value(p->def))) {
            char *d2 = NULL;
            const char *cur = json_string_value(json_object_get(s, "description"));
            size_t n = (cur != NULL ? strlen(cur) : 0) + strlen(json_string_value(p->def)) + 80;
            d2 = xmalloc(n);
            snprintf(d2, n, "%s%sDefault: %s (ComfyUI does not offer it right now).",
                     cur != NULL ? cur : "", cur != NULL ? " " : "",
                     json_string_value(p->def));
            json_object_set_new(s, "description", json_string(d2));
            free(d2);
        } else if (p->def != NULL) {
            json_object_set(s, "default", p->def);
        }
        if (p->example != NULL)
            json_object_set_new(s, "examples", json_pack("[O]", p->example));
        if (p->required)
            json_array_append_new(required, json_string(p->name));
        json_object_set_new(props, p->name, s);
    }
    schema = json_pack("{s:s, s:b, s:o}", "type", "object", "additionalProperties", 0,
                       "properties", props);
    if (json_array_size(required) > 0)
        json_object_set(schema, "required", required);
    json_decref(required);
    return schema;
}

/* Markdown table cells: no '|' or line breaks. */
static void
sb_cell(struct sbuf *b, const char *s)
{
    for (; *s != '\0'; s++) {
        if (*s == '|')
            sb_str(b, "\\|");
        else if (*s == '\n' || *s == '\r')
            sb_str(b, " ");
        else
            sb_add(b, s, 1);
    }
}

char *
tpl_params_markdown(const struct tpl *t, const json_t *object_info)
{
    struct sbuf b = {NULL, 0, 0};
    size_t i;
    char x[64], y[64], list[ENUM_LIST_CHARS + 64];

    sb_str(&b, "| Parameter | Type | Default | Allowed | Description |\n"
               "|---|---|---|---|---|\n");
    for (i = 0; i < t->n_params; i++) {
        const struct param *p = &t->params[i];
        const json_t *allowed = allowed_values(p, object_info);
        struct sbuf d = {NULL, 0, 0};

        sb_printf(&b, "| `%s` | %s | ", p->name, type_names[p->type]);
        if (p->required) {
            sb_str(&b, "**required**");
        } else if (p->def_random) {
            sb_str(&b, "random");
        } else if (p->from >= 0) {
            sb_printf(&b, "= `%s`", t->params[p->from].name);
        } else {
            char *dump = json_dumps(p->def, JSON_ENCODE_ANY);
            sb_str(&b, "`");
            sb_cell(&b, dump != NULL ? dump : "");
            sb_str(&b, "`");
            free(dump);
        }
        sb_str(&b, " | ");
        if (p->min != NULL || p->max != NULL) {
            if (p->min != NULL)
                num_text(x, sizeof(x), p->min);
            if (p->max != NULL)
                num_text(y, sizeof(y), p->max);
            sb_printf(&b, "%s..%s", p->min != NULL ? x : "", p->max != NULL ? y : "");
        } else if (allowed != NULL) {
            list_text(list, sizeof(list), allowed);
            sb_cell(&b, list);
        } else if (p->enum_from != NULL) {
            sb_printf(&b, "ComfyUI's `%s`", p->enum_from);
        }
        sb_str(&b, " | ");
        sb_str(&d, p->description);
        param_notes(&d, t, p, object_info);
        sb_cell(&b, d.s != NULL ? d.s : "");
        free(d.s);
        sb_str(&b, " |\n");
    }
    if (t->n_rules > 0)
        sb_str(&b, "\nRules (a broken one answers 400 at `input.<first parameter named>`):\n\n");
    for (i = 0; i < t->n_rules; i++) {
        sb_str(&b, "- `");
        sb_str(&b, t->rules[i].text);
        sb_str(&b, "`");
        if (t->rules[i].message[0] != '\0') {
            sb_str(&b, ": ");
            sb_str(&b, t->rules[i].message);
        }
        sb_str(&b, "\n");
    }
    return b.s;
}
