/*
 * testlib.h — the smallest test harness that does the job: CHECK macros
 * that count failures, helpers for UTF-16 literals, and the automake-style
 * exit codes (0 pass, 1 fail, 77 skip) that `make check` understands.
 */
#ifndef AIOHCS_TESTLIB_H
#define AIOHCS_TESTLIB_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "computecore.h"

static int t_failures;
static int t_checks;

#define CHECK(cond) do { \
    t_checks++; \
    if (!(cond)) { \
        t_failures++; \
        fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
    } \
} while (0)

/* Compare HRESULTs and print both in hex when they differ. */
#define CHECK_HR(expr, want) do { \
    HRESULT t_got_ = (expr), t_want_ = (HRESULT)(want); \
    t_checks++; \
    if (t_got_ != t_want_) { \
        t_failures++; \
        fprintf(stderr, "%s:%d: %s = 0x%08X, want 0x%08X\n", __FILE__, __LINE__, #expr, \
                (unsigned)t_got_, (unsigned)t_want_); \
    } \
} while (0)

/* Stop the test when continuing makes no sense (e.g. no handle). */
#define REQUIRE(cond) do { \
    if (!(cond)) { \
        fprintf(stderr, "%s:%d: REQUIRE failed: %s\n", __FILE__, __LINE__, #cond); \
        exit(1); \
    } \
} while (0)

static inline int t_done(const char *name)
{
    if (t_failures) {
        fprintf(stderr, "%s: %d of %d checks FAILED\n", name, t_failures, t_checks);
        return 1;
    }
    printf("%s: all %d checks passed\n", name, t_checks);
    return 0;
}

static inline int t_skip(const char *name, const char *why)
{
    printf("%s: SKIP: %s\n", name, why);
    return 77;
}

/* ASCII/UTF-8 -> freshly malloc'ed UTF-16 (BMP only; tests only need that
 * plus explicit arrays for surrogates). */
static inline WCHAR *t_w(const char *s)
{
    size_t n = strlen(s);
    WCHAR *w = malloc((n + 1) * sizeof *w);
    for (size_t i = 0; i < n; i++)
        w[i] = (unsigned char)s[i];
    w[n] = 0;
    return w;
}

/* UTF-16 (ASCII range) -> malloc'ed char string, for comparisons. */
static inline char *t_a(PCWSTR w)
{
    if (!w)
        return NULL;
    size_t n = 0;
    while (w[n])
        n++;
    char *s = malloc(n + 1);
    for (size_t i = 0; i < n; i++)
        s[i] = w[i] < 0x80 ? (char)w[i] : '?';
    s[n] = 0;
    return s;
}

static inline double t_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

#endif
