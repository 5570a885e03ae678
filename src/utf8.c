/* utf8.c - UTF-8 validation and repair (see utf8.h). Pure. */
#include <string.h>

#include "utf8.h"

size_t
utf8_len(const unsigned char *s, size_t n)
{
    size_t len, i;
    unsigned cp;

    if (n == 0)
        return 0;
    if (s[0] < 0x80)
        return 1;
    if ((s[0] & 0xe0) == 0xc0) {
        len = 2;
        cp = s[0] & 0x1f;
    } else if ((s[0] & 0xf0) == 0xe0) {
        len = 3;
        cp = s[0] & 0x0f;
    } else if ((s[0] & 0xf8) == 0xf0) {
        len = 4;
        cp = s[0] & 0x07;
    } else {
        return 0;
    }
    if (len > n)
        return 0;
    for (i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = cp << 6 | (s[i] & 0x3f);
    }
    /* Overlong forms, surrogates and values past Unicode are invalid. */
    if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
        cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return len;
}

char *
utf8_fix(char *s)
{
    size_t n = strlen(s), i = 0;

    while (i < n) {
        size_t k = utf8_len((const unsigned char *)s + i, n - i);

        if (k > 0) {
            i += k;
            continue;
        }
        /* A lead byte whose sequence runs past the end was cut by a
         * snprintf: drop the stump. Anything else invalid becomes '?'. */
        if ((unsigned char)s[i] >= 0xc0 && n - i < 4) {
            size_t need = ((unsigned char)s[i] & 0xe0) == 0xc0   ? 2
                          : ((unsigned char)s[i] & 0xf0) == 0xe0 ? 3
                                                                 : 4;
            size_t j;
            int cont = 1;

            for (j = i + 1; j < n; j++)
                if (((unsigned char)s[j] & 0xc0) != 0x80)
                    cont = 0;
            if (cont && n - i < need) {
                s[i] = '\0';
                break;
            }
        }
        s[i++] = '?';
    }
    return s;
}
