/*
 * test_utf16.c — the UTF-16 <-> UTF-8 converters, compiled in directly
 * (they are hidden in the shared library): round trips over every encoding
 * length, strict rejection of invalid UTF-16 input, lenient decoding of
 * malformed UTF-8 output.
 */
#include "hcs_utf16.c"

#include "testlib.h"

static size_t wlen(PCWSTR w) { size_t n = 0; while (w[n]) n++; return n; }

static void roundtrip(const WCHAR *in, const char *want_utf8)
{
    char *u8 = NULL;
    size_t len = 0;
    CHECK_HR(hcs_utf16_to_utf8(in, &u8, &len), S_OK);
    REQUIRE(u8 != NULL);
    CHECK(len == strlen(want_utf8));
    CHECK(memcmp(u8, want_utf8, len) == 0);
    PWSTR back = hcs_utf8_to_utf16(u8, len);
    REQUIRE(back != NULL);
    CHECK(wlen(back) == wlen(in));
    CHECK(memcmp(back, in, wlen(in) * sizeof(WCHAR)) == 0);
    LocalFree(back);
    free(u8);
}

int main(void)
{
    static const WCHAR ascii[] = { 'h', 'i', ' ', '{', '}', 0 };
    roundtrip(ascii, "hi {}");
    static const WCHAR two[] = { 0x00E9, 0x07FF, 0 };              /* é, U+07FF */
    roundtrip(two, "\xC3\xA9\xDF\xBF");
    static const WCHAR three[] = { 0x0800, 0x20AC, 0xFFFD, 0xFFFF, 0 };
    roundtrip(three, "\xE0\xA0\x80\xE2\x82\xAC\xEF\xBF\xBD\xEF\xBF\xBF");
    static const WCHAR four[] = { 0xD83D, 0xDE00, 'x', 0xDBFF, 0xDFFF, 0 };  /* U+1F600, U+10FFFF */
    roundtrip(four, "\xF0\x9F\x98\x80x\xF4\x8F\xBF\xBF");

    /* "" and NULL are the same: no document */
    char *u8 = (char *)1;
    size_t len = 99;
    static const WCHAR empty[] = { 0 };
    CHECK_HR(hcs_utf16_to_utf8(empty, &u8, &len), S_OK);
    CHECK(u8 == NULL && len == 0);
    CHECK_HR(hcs_utf16_to_utf8(NULL, &u8, &len), S_OK);
    CHECK(u8 == NULL && len == 0);

    /* lone surrogates are rejected */
    static const WCHAR lone_hi_end[] = { 'a', 0xD800, 0 };
    static const WCHAR lone_hi_mid[] = { 0xD800, 'a', 0 };
    static const WCHAR lone_lo[] = { 'a', 0xDC00, 'b', 0 };
    static const WCHAR swapped[] = { 0xDE00, 0xD83D, 0 };
    CHECK_HR(hcs_utf16_to_utf8(lone_hi_end, &u8, &len), E_INVALIDARG);
    CHECK(u8 == NULL);
    CHECK_HR(hcs_utf16_to_utf8(lone_hi_mid, &u8, &len), E_INVALIDARG);
    CHECK_HR(hcs_utf16_to_utf8(lone_lo, &u8, &len), E_INVALIDARG);
    CHECK_HR(hcs_utf16_to_utf8(swapped, &u8, &len), E_INVALIDARG);

    /* malformed UTF-8 from the wire decodes to U+FFFD, never overreads */
    struct { const char *in; size_t n; WCHAR want[8]; } bad[] = {
        { "\xC3", 1, { 0xFFFD, 0 } },                       /* cut */
        { "\xC0\xAF", 2, { 0xFFFD, 0 } },                   /* overlong '/' */
        { "\xED\xA0\x80", 3, { 0xFFFD, 0 } },               /* encoded surrogate */
        { "\xF4\x90\x80\x80", 4, { 0xFFFD, 0 } },           /* > U+10FFFF */
        { "a\xFFz", 3, { 'a', 0xFFFD, 'z', 0 } },
        { "\xE2\x82z", 3, { 0xFFFD, 'z', 0 } },
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        PWSTR w = hcs_utf8_to_utf16(bad[i].in, bad[i].n);
        REQUIRE(w != NULL);
        CHECK(wlen(w) == wlen(bad[i].want));
        CHECK(memcmp(w, bad[i].want, wlen(bad[i].want) * sizeof(WCHAR)) == 0);
        LocalFree(w);
    }

    /* result strings: empty doc -> NULL, not "" */
    PWSTR out = (PWSTR)1;
    CHECK_HR(hcs_result_string(NULL, 0, &out), S_OK);
    CHECK(out == NULL);
    CHECK_HR(hcs_result_string("{}", 2, &out), S_OK);
    REQUIRE(out != NULL);
    CHECK(out[0] == '{' && out[1] == '}' && out[2] == 0);
    CHECK(LocalFree(out) == NULL);
    return t_done("test_utf16");
}
