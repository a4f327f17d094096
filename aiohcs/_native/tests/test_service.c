/*
 * test_service.c — against the real host service (python -m aiohcs.host).
 * Runs only when AIOHCS_SOCKET names the service's socket and
 * AIOHCS_TEST_ROOTFS a rootfs directory (with /bin/echo and /bin/cat);
 * otherwise exits 77 (skipped).
 */
#include <errno.h>
#include <pthread.h>
#include <unistd.h>

#include "testlib.h"

struct flag {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int count;
};
#define FLAG_INIT { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0 }

static void flag_set(struct flag *f)
{
    pthread_mutex_lock(&f->mu);
    f->count++;
    pthread_cond_broadcast(&f->cv);
    pthread_mutex_unlock(&f->mu);
}

static int flag_wait(struct flag *f, int n, int seconds)
{
    struct timespec dl;
    clock_gettime(CLOCK_REALTIME, &dl);
    dl.tv_sec += seconds;
    pthread_mutex_lock(&f->mu);
    while (f->count < n && pthread_cond_timedwait(&f->cv, &f->mu, &dl) != ETIMEDOUT)
        ;
    int c = f->count;
    pthread_mutex_unlock(&f->mu);
    return c;
}

/* substring match after dropping blanks, so "ExitCode": 0 == "ExitCode":0 */
static bool doc_has(PCWSTR doc, const char *needle)
{
    char *a = t_a(doc);
    if (a) {
        size_t o = 0;
        for (size_t i = 0; a[i]; i++)
            if (a[i] != ' ' && a[i] != '\n' && a[i] != '\t')
                a[o++] = a[i];
        a[o] = 0;
    }
    bool r = a && strstr(a, needle) != NULL;
    free(a);
    return r;
}

/* Print a failure document so a failing run explains itself. */
static void show(const char *what, HRESULT hr, PCWSTR doc)
{
    char *a = t_a(doc);
    if (FAILED(hr))
        fprintf(stderr, "%s: hr=0x%08X doc=%s\n", what, (unsigned)hr, a ? a : "(none)");
    free(a);
}

static HRESULT wait_op(HCS_OPERATION op, const char *what, PWSTR *doc_out)
{
    PWSTR doc = NULL;
    HRESULT hr = HcsWaitForOperationResult(op, 60000, &doc);
    show(what, hr, doc);
    if (doc_out)
        *doc_out = doc;
    else
        LocalFree(doc);
    return hr;
}

static pthread_t g_main;
static struct flag g_start_done = FLAG_INIT;
static pthread_t g_cb_thread;
static HRESULT g_start_hr = 1;

static void start_cb(HCS_OPERATION op, void *ctx)
{
    (void)ctx;
    g_cb_thread = pthread_self();
    g_start_hr = HcsGetOperationResult(op, NULL);
    flag_set(&g_start_done);
}

static struct flag g_sys_exited = FLAG_INIT, g_proc_exited = FLAG_INIT;
static bool g_proc_exit_doc_ok;

static void sys_cb(HCS_EVENT *ev, void *ctx)
{
    (void)ctx;
    if (ev->Type == HcsEventSystemExited)
        flag_set(&g_sys_exited);
}

static void proc_cb(HCS_EVENT *ev, void *ctx)
{
    (void)ctx;
    if (ev->Type == HcsEventProcessExited) {
        g_proc_exit_doc_ok = doc_has(ev->EventData, "\"Exited\"");
        flag_set(&g_proc_exited);
    }
}

static WCHAR *json_config(const char *rootfs)
{
    /* JSON-escape the path (quotes and backslashes) */
    char esc[4096];
    size_t o = 0;
    for (const char *p = rootfs; *p && o < sizeof esc - 2; p++) {
        if (*p == '"' || *p == '\\')
            esc[o++] = '\\';
        esc[o++] = *p;
    }
    esc[o] = 0;
    char buf[4400];
    snprintf(buf, sizeof buf,
             "{\"SchemaVersion\":{\"Major\":2,\"Minor\":1},\"Container\":{\"Storage\":{\"Path\":\"%s\"}}}", esc);
    return t_w(buf);
}

static int read_all(int fd, char *buf, size_t cap)
{
    size_t got = 0;
    while (got < cap - 1) {
        ssize_t r = read(fd, buf + got, cap - 1 - got);
        if (r <= 0)
            break;
        got += (size_t)r;
    }
    buf[got] = 0;
    return (int)got;
}

int main(void)
{
    const char *sock = getenv("AIOHCS_SOCKET");
    const char *rootfs = getenv("AIOHCS_TEST_ROOTFS");
    if (!sock || !*sock || !rootfs || !*rootfs)
        return t_skip("test_service", "set AIOHCS_SOCKET and AIOHCS_TEST_ROOTFS to run against the host service");
    if (access(sock, F_OK) != 0)
        return t_skip("test_service", "AIOHCS_SOCKET does not exist");
    g_main = pthread_self();

    HCS_OPERATION op = HcsCreateOperation(NULL, NULL);
    REQUIRE(op != NULL);

    /* enumerate */
    PWSTR doc = NULL;
    CHECK_HR(HcsEnumerateComputeSystems(NULL, op), S_OK);
    CHECK_HR(wait_op(op, "enumerate", &doc), S_OK);
    CHECK(doc != NULL && doc[0] == '[');
    LocalFree(doc);

    PWSTR sp = NULL;
    HRESULT hr = HcsGetServiceProperties(NULL, &sp);
    show("service properties", hr, sp);
    CHECK_HR(hr, S_OK);
    LocalFree(sp);

    /* create */
    char idbuf[64];
    snprintf(idbuf, sizeof idbuf, "aiohcs-ctest-%d", (int)getpid());
    WCHAR *id = t_w(idbuf);
    WCHAR *cfg = json_config(rootfs);
    HCS_SYSTEM sys = NULL;
    CHECK_HR(HcsCreateComputeSystem(id, cfg, op, NULL, &sys), S_OK);
    REQUIRE(sys != NULL);
    REQUIRE(wait_op(op, "create", NULL) == S_OK);
    CHECK_HR(HcsSetComputeSystemCallback(sys, HcsEventOptionNone, NULL, sys_cb), S_OK);

    /* bad input */
    HCS_SYSTEM dup = NULL;
    CHECK_HR(HcsCreateComputeSystem(id, cfg, op, NULL, &dup), S_OK);
    PWSTR err = NULL;
    CHECK_HR(HcsWaitForOperationResult(op, 60000, &err), HCS_E_SYSTEM_ALREADY_EXISTS);
    LocalFree(err);
    HcsCloseComputeSystem(dup);
    WCHAR *id2 = t_w("aiohcs-ctest-badjson");
    WCHAR *badcfg = t_w("{\"SchemaVersion\": nope");
    CHECK_HR(HcsCreateComputeSystem(id2, badcfg, op, NULL, &dup), S_OK);
    err = NULL;
    CHECK_HR(HcsWaitForOperationResult(op, 60000, &err), HCS_E_INVALID_JSON);
    CHECK(doc_has(err, "\"Error\""));
    LocalFree(err);
    HcsCloseComputeSystem(dup);

    /* open by id gives a second handle */
    HCS_SYSTEM again = NULL;
    CHECK_HR(HcsOpenComputeSystem(id, GENERIC_ALL, &again), S_OK);
    HcsCloseComputeSystem(again);

    /* start, completion callback on another thread */
    HCS_OPERATION sop = HcsCreateOperation(NULL, start_cb);
    CHECK_HR(HcsStartComputeSystem(sys, sop, NULL), S_OK);
    CHECK(flag_wait(&g_start_done, 1, 60) == 1);
    CHECK_HR(g_start_hr, S_OK);
    CHECK(!pthread_equal(g_cb_thread, g_main));
    HcsCloseOperation(sop);

    /* /bin/echo hi with a stdout pipe */
    WCHAR *params = t_w("{\"CommandLine\":\"/bin/echo hi\",\"CreateStdOutPipe\":true}");
    HCS_PROCESS proc = NULL;
    CHECK_HR(HcsCreateProcess(sys, params, op, NULL, &proc), S_OK);
    REQUIRE(proc != NULL);
    HCS_PROCESS_INFORMATION pi;
    memset(&pi, 0, sizeof pi);
    PWSTR pdoc = NULL;
    hr = HcsWaitForOperationResultAndProcessInfo(op, 60000, &pi, &pdoc);
    show("create process", hr, pdoc);
    LocalFree(pdoc);
    CHECK_HR(hr, S_OK);
    if (SUCCEEDED(hr)) {
        CHECK(pi.ProcessId != 0);
        CHECK(pi.StdInput == INVALID_HANDLE_VALUE);
        CHECK(pi.StdOutput != INVALID_HANDLE_VALUE);
        if (pi.StdOutput != INVALID_HANDLE_VALUE) {
            int fd = (int)(intptr_t)pi.StdOutput;
            CHECK(fd > 2);
            char buf[64];
            read_all(fd, buf, sizeof buf);
            CHECK(strcmp(buf, "hi\n") == 0);
            close(fd);
        }
        if (pi.StdError != INVALID_HANDLE_VALUE)
            close((int)(intptr_t)pi.StdError);
    }
    PWSTR status = NULL;
    CHECK_HR(HcsWaitForProcessExit(proc, 60000, &status), S_OK);
    CHECK(doc_has(status, "\"ExitCode\":0"));
    LocalFree(status);
    HcsCloseProcess(proc);

    /* /bin/cat: the exit comes only after we close stdin, so the callback
     * is certainly registered before it */
    WCHAR *catp = t_w("{\"CommandLine\":\"/bin/cat\",\"CreateStdInPipe\":true,\"CreateStdOutPipe\":true}");
    CHECK_HR(HcsCreateProcess(sys, catp, op, NULL, &proc), S_OK);
    REQUIRE(proc != NULL);
    CHECK_HR(HcsSetProcessCallback(proc, HcsEventOptionNone, NULL, proc_cb), S_OK);
    memset(&pi, 0, sizeof pi);
    hr = HcsWaitForOperationResultAndProcessInfo(op, 60000, &pi, NULL);
    CHECK_HR(hr, S_OK);
    if (SUCCEEDED(hr) && pi.StdInput != INVALID_HANDLE_VALUE && pi.StdOutput != INVALID_HANDLE_VALUE) {
        int in = (int)(intptr_t)pi.StdInput, out = (int)(intptr_t)pi.StdOutput;
        CHECK(write(in, "ping\n", 5) == 5);
        close(in);
        char buf[64];
        read_all(out, buf, sizeof buf);
        CHECK(strcmp(buf, "ping\n") == 0);
        close(out);
        CHECK(flag_wait(&g_proc_exited, 1, 60) == 1);
        CHECK(g_proc_exit_doc_ok);
        CHECK_HR(HcsWaitForProcessExit(proc, 10000, NULL), S_OK);
    }
    HcsCloseProcess(proc);

    /* terminate -> SystemExited */
    CHECK_HR(HcsWaitForComputeSystemExit(sys, 0, NULL), HCS_E_OPERATION_TIMEOUT);
    CHECK_HR(HcsTerminateComputeSystem(sys, op, NULL), S_OK);
    CHECK_HR(wait_op(op, "terminate", NULL), S_OK);
    CHECK(flag_wait(&g_sys_exited, 1, 60) == 1);
    PWSTR ex = NULL;
    CHECK_HR(HcsWaitForComputeSystemExit(sys, 60000, &ex), S_OK);
    CHECK(doc_has(ex, "ExitType"));
    LocalFree(ex);
    HcsCloseComputeSystem(sys);

    HcsCloseOperation(op);
    free(id); free(cfg); free(id2); free(badcfg); free(params); free(catp);
    usleep(50 * 1000);
    return t_done("test_service");
}
