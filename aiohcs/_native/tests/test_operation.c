/*
 * test_operation.c — everything that must work with no host service:
 * the operation state machine before any call, handle validation (garbage,
 * closed, wrong-kind handles are E_HANDLE and never crash), argument
 * checks, and a quick, documented failure when the service is absent.
 */
#include <stdlib.h>
#include <unistd.h>

#include "testlib.h"

static void dummy_cb(HCS_OPERATION op, void *ctx) { (void)op; (void)ctx; }
static void dummy_ev(HCS_EVENT *ev, void *ctx) { (void)ev; (void)ctx; }

static void check_garbage_op(HCS_OPERATION op)
{
    PWSTR doc = (PWSTR)1;
    HCS_PROCESS_INFORMATION pi;
    CHECK_HR(HcsGetOperationResult(op, &doc), E_HANDLE);
    CHECK(doc == NULL);
    CHECK_HR(HcsGetOperationResultAndProcessInfo(op, &pi, NULL), E_HANDLE);
    CHECK_HR(HcsWaitForOperationResult(op, 0, NULL), E_HANDLE);
    CHECK_HR(HcsWaitForOperationResult(op, INFINITE, NULL), E_HANDLE);
    CHECK_HR(HcsWaitForOperationResultAndProcessInfo(op, 10, &pi, NULL), E_HANDLE);
    CHECK_HR(HcsSetOperationContext(op, NULL), E_HANDLE);
    CHECK_HR(HcsSetOperationCallback(op, NULL, dummy_cb), E_HANDLE);
    CHECK_HR(HcsCancelOperation(op), E_HANDLE);
    CHECK(HcsGetOperationContext(op) == NULL);
    CHECK(HcsGetOperationType(op) == HcsOperationTypeNone);
    CHECK(HcsGetOperationId(op) == HCS_INVALID_OPERATION_ID);
    CHECK(HcsGetComputeSystemFromOperation(op) == NULL);
    CHECK(HcsGetProcessFromOperation(op) == NULL);
    HcsCloseOperation(op);      /* must be a harmless no-op */
}

static void check_garbage_system(HCS_SYSTEM s, HCS_OPERATION good_op)
{
    PWSTR doc = (PWSTR)1;
    HCS_PROCESS p = (HCS_PROCESS)1;
    CHECK_HR(HcsStartComputeSystem(s, good_op, NULL), E_HANDLE);
    CHECK_HR(HcsShutDownComputeSystem(s, good_op, NULL), E_HANDLE);
    CHECK_HR(HcsTerminateComputeSystem(s, good_op, NULL), E_HANDLE);
    CHECK_HR(HcsCrashComputeSystem(s, good_op, NULL), E_HANDLE);
    CHECK_HR(HcsPauseComputeSystem(s, good_op, NULL), E_HANDLE);
    CHECK_HR(HcsResumeComputeSystem(s, good_op, NULL), E_HANDLE);
    CHECK_HR(HcsSaveComputeSystem(s, good_op, NULL), E_HANDLE);
    CHECK_HR(HcsGetComputeSystemProperties(s, good_op, NULL), E_HANDLE);
    CHECK_HR(HcsWaitForComputeSystemExit(s, 0, &doc), E_HANDLE);
    CHECK(doc == NULL);
    CHECK_HR(HcsSetComputeSystemCallback(s, 0, NULL, dummy_ev), E_HANDLE);
    CHECK_HR(HcsOpenProcess(s, 1, GENERIC_ALL, &p), E_HANDLE);
    CHECK(p == NULL);
    WCHAR *params = t_w("{}");
    CHECK_HR(HcsCreateProcess(s, params, good_op, NULL, &p), E_HANDLE);
    free(params);
    HcsCloseComputeSystem(s);
}

static void check_garbage_process(HCS_PROCESS p, HCS_OPERATION good_op)
{
    CHECK_HR(HcsTerminateProcess(p, good_op, NULL), E_HANDLE);
    CHECK_HR(HcsSignalProcess(p, good_op, NULL), E_HANDLE);
    CHECK_HR(HcsGetProcessInfo(p, good_op), E_HANDLE);
    CHECK_HR(HcsGetProcessProperties(p, good_op, NULL), E_HANDLE);
    CHECK_HR(HcsWaitForProcessExit(p, 0, NULL), E_HANDLE);
    CHECK_HR(HcsSetProcessCallback(p, 0, NULL, dummy_ev), E_HANDLE);
    HcsCloseProcess(p);
}

int main(void)
{
    /* nothing listens here: every service call must fail fast */
    setenv("AIOHCS_SOCKET", "/nonexistent/aiohcs-test.sock", 1);

    /* --- a fresh operation is idle --- */
    int ctx_val = 7;
    HCS_OPERATION op = HcsCreateOperation(&ctx_val, NULL);
    REQUIRE(op != NULL);
    CHECK((uintptr_t)op > 0xFFFF);      /* an id, not a small integer */
    CHECK(HcsGetOperationContext(op) == &ctx_val);
    CHECK(HcsGetOperationType(op) == HcsOperationTypeNone);
    CHECK(HcsGetOperationId(op) != HCS_INVALID_OPERATION_ID);
    CHECK(HcsGetComputeSystemFromOperation(op) == NULL);
    CHECK(HcsGetProcessFromOperation(op) == NULL);
    PWSTR doc = (PWSTR)1;
    CHECK_HR(HcsGetOperationResult(op, &doc), HCS_E_OPERATION_NOT_STARTED);
    CHECK(doc == NULL);
    CHECK_HR(HcsGetOperationResult(op, NULL), HCS_E_OPERATION_NOT_STARTED);
    CHECK_HR(HcsWaitForOperationResult(op, 0, &doc), HCS_E_OPERATION_NOT_STARTED);
    CHECK_HR(HcsWaitForOperationResult(op, INFINITE, NULL), HCS_E_OPERATION_NOT_STARTED);
    HCS_PROCESS_INFORMATION pi;
    CHECK_HR(HcsWaitForOperationResultAndProcessInfo(op, 0, &pi, NULL), HCS_E_OPERATION_NOT_STARTED);
    CHECK_HR(HcsCancelOperation(op), HCS_E_OPERATION_NOT_STARTED);
    CHECK_HR(HcsSetOperationContext(op, NULL), S_OK);
    CHECK(HcsGetOperationContext(op) == NULL);
    CHECK_HR(HcsSetOperationCallback(op, &ctx_val, NULL), E_INVALIDARG);
    CHECK_HR(HcsSetOperationCallback(op, &ctx_val, dummy_cb), S_OK);
    CHECK(HcsGetOperationContext(op) == &ctx_val);
    PWSTR props = (PWSTR)1;
    CHECK_HR(HcsGetOperationProperties(op, NULL, &props), E_NOTIMPL);
    CHECK(props == NULL);

    HCS_OPERATION op2 = HcsCreateOperation(NULL, NULL);
    REQUIRE(op2 != NULL);
    CHECK(op2 != op);
    CHECK(HcsGetOperationId(op2) != HcsGetOperationId(op));
    CHECK(HcsCreateOperationWithNotifications(0, NULL, NULL) == NULL);
    HCS_OPERATION op3 = HcsCreateOperationWithNotifications(HcsOperationOptionNone, NULL, dummy_ev);
    REQUIRE(op3 != NULL);
    HcsCloseOperation(op3);

    /* --- closed and garbage handles --- */
    HcsCloseOperation(op);
    check_garbage_op(op);               /* stale */
    check_garbage_op(NULL);
    check_garbage_op((HCS_OPERATION)(uintptr_t)1);
    check_garbage_op((HCS_OPERATION)(uintptr_t)-1);
    check_garbage_op((HCS_OPERATION)(uintptr_t)0xdeadbeef);
    check_garbage_op(&ctx_val);         /* a real pointer is not a handle */

    check_garbage_system(NULL, op2);
    check_garbage_system((HCS_SYSTEM)(uintptr_t)0x1234567, op2);
    check_garbage_system(op2, op2);     /* an operation is not a system */
    check_garbage_process(NULL, op2);
    check_garbage_process((HCS_PROCESS)(uintptr_t)-1, op2);
    check_garbage_process(op2, op2);
    /* the good op was never started by any of those */
    CHECK_HR(HcsGetOperationResult(op2, NULL), HCS_E_OPERATION_NOT_STARTED);

    /* --- argument validation happens before any I/O --- */
    WCHAR *id = t_w("test");
    WCHAR *cfg = t_w("{}");
    static const WCHAR bad_id[] = { 't', 0xD800, 0 };
    HCS_SYSTEM sys = (HCS_SYSTEM)1;
    CHECK_HR(HcsCreateComputeSystem(id, cfg, op2, NULL, NULL), E_POINTER);
    CHECK_HR(HcsCreateComputeSystem(bad_id, cfg, op2, NULL, &sys), E_INVALIDARG);
    CHECK(sys == NULL);
    CHECK_HR(HcsCreateComputeSystem(NULL, cfg, op2, NULL, &sys), E_INVALIDARG);
    static const WCHAR empty[] = { 0 };
    CHECK_HR(HcsCreateComputeSystem(id, empty, op2, NULL, &sys), E_INVALIDARG);  /* "" == NULL */
    CHECK_HR(HcsCreateComputeSystem(id, cfg, NULL, NULL, &sys), E_HANDLE);
    CHECK_HR(HcsOpenComputeSystem(id, GENERIC_ALL, NULL), E_POINTER);
    CHECK_HR(HcsOpenComputeSystem(bad_id, GENERIC_ALL, &sys), E_INVALIDARG);
    CHECK_HR(HcsGetServiceProperties(NULL, NULL), E_POINTER);
    CHECK_HR(HcsModifyServiceSettings(NULL, NULL), E_INVALIDARG);
    CHECK_HR(HcsEnumerateComputeSystems(bad_id, op2), E_INVALIDARG);
    CHECK_HR(HcsGetOperationResult(op2, NULL), HCS_E_OPERATION_NOT_STARTED);
    uint32_t opts = 0x12345;    /* unknown HCS_CREATE_OPTIONS version */
    CHECK_HR(HcsCreateComputeSystemInNamespace(id, id, cfg, op2, &opts, &sys), E_INVALIDARG);

    /* --- no service: fail fast, synchronously, with the documented code --- */
    double t0 = t_now();
    CHECK_HR(HcsEnumerateComputeSystems(NULL, op2), HCS_E_SERVICE_NOT_AVAILABLE);
    /* the op answers the same failure afterwards (hcsshim reads it) */
    CHECK_HR(HcsGetOperationResult(op2, &doc), HCS_E_SERVICE_NOT_AVAILABLE);
    CHECK(doc == NULL);
    CHECK(HcsGetOperationType(op2) == HcsOperationTypeEnumerate);
    CHECK_HR(HcsWaitForOperationResult(op2, INFINITE, NULL), HCS_E_SERVICE_NOT_AVAILABLE);
    /* and may be reused */
    CHECK_HR(HcsCreateComputeSystem(id, cfg, op2, NULL, &sys), HCS_E_SERVICE_NOT_AVAILABLE);
    CHECK(sys == NULL);
    CHECK(HcsGetOperationType(op2) == HcsOperationTypeCreate);
    CHECK_HR(HcsOpenComputeSystem(id, GENERIC_ALL, &sys), HCS_E_SERVICE_NOT_AVAILABLE);
    CHECK(sys == NULL);
    PWSTR res = (PWSTR)1;
    CHECK_HR(HcsGetServiceProperties(NULL, &res), HCS_E_SERVICE_NOT_AVAILABLE);
    CHECK(res == NULL);
    CHECK_HR(HcsModifyServiceSettings(cfg, &res), HCS_E_SERVICE_NOT_AVAILABLE);
    CHECK(t_now() - t0 < 2.0);

    /* a socket path that exists but refuses connections */
    char path[] = "/tmp/aiohcs-test-XXXXXX";
    int fd = mkstemp(path);
    REQUIRE(fd >= 0);
    close(fd);
    setenv("AIOHCS_SOCKET", path, 1);
    CHECK_HR(HcsEnumerateComputeSystems(NULL, op2), HCS_E_SERVICE_NOT_AVAILABLE);
    unlink(path);

    HcsCloseOperation(op2);
    check_garbage_op(op2);
    free(id);
    free(cfg);
    return t_done("test_operation");
}
