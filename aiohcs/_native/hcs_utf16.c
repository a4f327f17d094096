/*
 * hcs_utf16.c — UTF-16 (the API's string type) <-> UTF-8 (the wire's), and
 * LocalFree, the one deallocator for strings this library hands out.
 *
 * Input strings are validated strictly (a lone surrogate cannot be encoded
 * in UTF-8, so silently replacing it would change a document or an id the
 * caller chose): E_INVALIDARG.  Output strings come from the service and are
 * converted leniently (malformed UTF-8 -> U+FFFD), because failing a
 * completed operation over one bad byte would lose its real result.
 */
#include "hcs_internal.h"

#include <stdlib.h>
#include <string.h>

HRESULT hcs_utf16_to_utf8(PCWSTR in, char **out, size_t *len)
{
    *out = NULL;
    *len = 0;
    if (in == NULL || in[0] == 0)
        return S_OK;            /* "" is the same as NULL (API.md §1.3) */

    /* First pass: validate and measure, so we allocate once. */
    size_t need = 0;
    for (size_t i = 0; in[i]; i++) {
        uint32_t c = in[i];
        if (c >= 0xD800 && c <= 0xDBFF) {
            uint32_t d = in[i + 1];
            if (!(d >= 0xDC00 && d <= 0xDFFF))
                return E_INVALIDARG;            /* high surrogate without low */
            need += 4;
            i++;
        } else if (c >= 0xDC00 && c <= 0xDFFF) {
            return E_INVALIDARG;                /* low surrogate alone */
        } else {
            need += c < 0x80 ? 1 : c < 0x800 ? 2 : 3;
        }
        if (need > HCS_WIRE_MAX_PAYLOAD)
            return E_INVALIDARG;
    }

    char *buf = malloc(need + 1);
    if (!buf)
        return E_OUTOFMEMORY;
    size_t o = 0;
    for (size_t i = 0; in[i]; i++) {
        uint32_t c = in[i];
        if (c >= 0xD800 && c <= 0xDBFF) {
            c = 0x10000 + ((c - 0xD800) << 10) + (in[i + 1] - 0xDC00);
            i++;
        }
        if (c < 0x80) {
            buf[o++] = (char)c;
        } else if (c < 0x800) {
            buf[o++] = (char)(0xC0 | (c >> 6));
            buf[o++] = (char)(0x80 | (c & 0x3F));
        } else if (c < 0x10000) {
            buf[o++] = (char)(0xE0 | (c >> 12));
            buf[o++] = (char)(0x80 | ((c >> 6) & 0x3F));
            buf[o++] = (char)(0x80 | (c & 0x3F));
        } else {
            buf[o++] = (char)(0xF0 | (c >> 18));
            buf[o++] = (char)(0x80 | ((c >> 12) & 0x3F));
            buf[o++] = (char)(0x80 | ((c >> 6) & 0x3F));
            buf[o++] = (char)(0x80 | (c & 0x3F));
        }
    }
    buf[o] = 0;
    *out = buf;
    *len = o;
    return S_OK;
}

/* Decode one UTF-8 sequence at s[*i] (n bytes total); returns the code point
 * or 0xFFFD for anything malformed (overlong, surrogate, > U+10FFFF, cut). */
static uint32_t utf8_next(const unsigned char *s, size_t n, size_t *i)
{
    unsigned char b = s[*i];
    uint32_t c, min;
    int more;
    if (b < 0x80) { (*i)++; return b; }
    else if ((b & 0xE0) == 0xC0) { c = b & 0x1F; more = 1; min = 0x80; }
    else if ((b & 0xF0) == 0xE0) { c = b & 0x0F; more = 2; min = 0x800; }
    else if ((b & 0xF8) == 0xF0) { c = b & 0x07; more = 3; min = 0x10000; }
    else { (*i)++; return 0xFFFD; }
    size_t j = *i + 1;
    for (int k = 0; k < more; k++, j++) {
        if (j >= n || (s[j] & 0xC0) != 0x80) {
            *i = j;             /* resume at the byte that broke the sequence */
            return 0xFFFD;
        }
        c = (c << 6) | (s[j] & 0x3F);
    }
    *i = j;
    if (c < min || c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF))
        return 0xFFFD;
    return c;
}

PWSTR hcs_utf8_to_utf16(const char *in, size_t len)
{
    const unsigned char *s = (const unsigned char *)in;
    size_t units = 0;
    for (size_t i = 0; i < len;)
        units += utf8_next(s, len, &i) >= 0x10000 ? 2 : 1;

    PWSTR out = malloc((units + 1) * sizeof(WCHAR));
    if (!out)
        return NULL;
    size_t o = 0;
    for (size_t i = 0; i < len;) {
        uint32_t c = utf8_next(s, len, &i);
        if (c >= 0x10000) {
            c -= 0x10000;
            out[o++] = (WCHAR)(0xD800 + (c >> 10));
            out[o++] = (WCHAR)(0xDC00 + (c & 0x3FF));
        } else {
            out[o++] = (WCHAR)c;
        }
    }
    out[o] = 0;
    return out;
}

HRESULT hcs_result_string(const char *doc, size_t len, PWSTR *out)
{
    if (!out)
        return S_OK;
    *out = NULL;
    if (!doc || len == 0)
        return S_OK;
    *out = hcs_utf8_to_utf16(doc, len);
    return *out ? S_OK : HCS_E_OPERATION_RESULT_ALLOCATION_FAILED;
}

/* Windows' LocalFree returns NULL on success; callers test for that. */
HCSAPI void *LocalFree(void *mem)
{
    free(mem);
    return NULL;
}
