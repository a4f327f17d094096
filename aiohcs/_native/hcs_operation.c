/*
 * hcs_operation.c — HCS_OPERATION: idle -> running -> completed (API.md §5),
 * reusable after completion, with its result document, process information
 * and stdio fds, waits, completion callbacks and cancellation.
 */
#include "hcs_internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static void op_clear_result(struct hcs_op *op)
{
    free(op->doc);
    op->doc = NULL;
    op->doc_len = 0;
    op->hr = S_OK;
    op->pid = 0;
    /* fds nobody claimed belong to nobody else: close them */
    for (int i = 0; i < 3; i++)
        hcs_close_fd(&op->fds[i]);
}

static void op_destroy(struct hcs_obj *o)
{
    struct hcs_op *op = (struct hcs_op *)o;
    op_clear_result(op);
    if (op->target)
        hcs_obj_unref(&op->target->obj);
}

static struct hcs_op *op_new(const void *context, HCS_OPERATION_COMPLETION cb, HCS_EVENT_CALLBACK ecb)
{
    struct hcs_op *op = calloc(1, sizeof *op);
    if (!op) {
        errno = ENOMEM;
        return NULL;
    }
    hcs_obj_init(&op->obj, HCS_KIND_OPERATION, op_destroy);
    op->state = HCS_OPSTATE_IDLE;
    op->type = HcsOperationTypeNone;
    op->context = context;
    op->cb = cb;
    op->ecb = ecb;
    op->fds[0] = op->fds[1] = op->fds[2] = -1;
    hcs_obj_publish(&op->obj);
    return op;
}

struct hcs_op *hcs_op_get(const void *h)
{
    return (struct hcs_op *)hcs_obj_get(h, HCS_KIND_OPERATION);
}

HCSAPI HCS_OPERATION WINAPI HcsCreateOperation(const void *context, HCS_OPERATION_COMPLETION callback)
{
    struct hcs_op *op = op_new(context, callback, NULL);
    return op ? hcs_obj_handle(&op->obj) : NULL;
}

HCSAPI HCS_OPERATION WINAPI HcsCreateOperationWithNotifications(HCS_OPERATION_OPTIONS eventTypes,
                                                                const void *context,
                                                                HCS_EVENT_CALLBACK callback)
{
    (void)eventTypes;   /* no progress events exist on Linux; only completion */
    if (!callback) {
        errno = EINVAL;
        return NULL;
    }
    struct hcs_op *op = op_new(context, NULL, callback);
    return op ? hcs_obj_handle(&op->obj) : NULL;
}

HCSAPI void WINAPI HcsCloseOperation(HCS_OPERATION operation)
{
    struct hcs_op *op = hcs_op_get(operation);
    if (!op)
        return;
    if (!hcs_obj_unpublish(&op->obj)) {
        hcs_obj_unref(&op->obj);
        return;
    }
    pthread_mutex_lock(&op->obj.mu);
    op->obj.closed = true;
    op->cb = NULL;
    op->ecb = NULL;
    hcs_obj_close_gate(&op->obj);
    pthread_cond_broadcast(&op->obj.cv);    /* waiters see E_HANDLE */
    /* A running request continues in the service; its reply is dropped
     * (the pending keeps this object alive until then).  Unclaimed fds of a
     * completed call are closed now. */
    if (op->state != HCS_OPSTATE_RUNNING)
        op_clear_result(op);
    pthread_mutex_unlock(&op->obj.mu);
    hcs_obj_unref(&op->obj);
}

HCSAPI void *WINAPI HcsGetOperationContext(HCS_OPERATION operation)
{
    struct hcs_op *op = hcs_op_get(operation);
    if (!op)
        return NULL;
    pthread_mutex_lock(&op->obj.mu);
    void *ctx = (void *)op->context;
    pthread_mutex_unlock(&op->obj.mu);
    hcs_obj_unref(&op->obj);
    return ctx;
}

HCSAPI HRESULT WINAPI HcsSetOperationContext(HCS_OPERATION operation, const void *context)
{
    struct hcs_op *op = hcs_op_get(operation);
    if (!op)
        return E_HANDLE;
    pthread_mutex_lock(&op->obj.mu);
    op->context = context;
    pthread_mutex_unlock(&op->obj.mu);
    hcs_obj_unref(&op->obj);
    return S_OK;
}

HCSAPI HRESULT WINAPI HcsSetOperationCallback(HCS_OPERATION operation, const void *context,
                                              HCS_OPERATION_COMPLETION callback)
{
    if (!callback)
        return E_INVALIDARG;
    struct hcs_op *op = hcs_op_get(operation);
    if (!op)
        return E_HANDLE;
    HRESULT hr = S_OK;
    pthread_mutex_lock(&op->obj.mu);
    if (op->state == HCS_OPSTATE_RUNNING) {
        /* Changing the callback under a running call would race with its
         * completion; the caller should set it before starting the call. */
        hr = HCS_E_OPERATION_ALREADY_STARTED;
    } else {
        op->context = context;
        op->cb = callback;
        op->ecb = NULL;
    }
    pthread_mutex_unlock(&op->obj.mu);
    hcs_obj_unref(&op->obj);
    return hr;
}

HCSAPI HCS_SYSTEM WINAPI HcsGetComputeSystemFromOperation(HCS_OPERATION operation)
{
    struct hcs_op *op = hcs_op_get(operation);
    if (!op)
        return NULL;
    pthread_mutex_lock(&op->obj.mu);
    uint64_t id = op->state == HCS_OPSTATE_IDLE ? 0 : op->system_id;
    pthread_mutex_unlock(&op->obj.mu);
    hcs_obj_unref(&op->obj);
    return (HCS_SYSTEM)(uintptr_t)id;
}

HCSAPI HCS_PROCESS WINAPI HcsGetProcessFromOperation(HCS_OPERATION operation)
{
    struct hcs_op *op = hcs_op_get(operation);
    if (!op)
        return NULL;
    pthread_mutex_lock(&op->obj.mu);
    uint64_t id = op->state == HCS_OPSTATE_IDLE ? 0 : op->process_id;
    pthread_mutex_unlock(&op->obj.mu);
    hcs_obj_unref(&op->obj);
    return (HCS_PROCESS)(uintptr_t)id;
}

HCSAPI HCS_OPERATION_TYPE WINAPI HcsGetOperationType(HCS_OPERATION operation)
{
    struct hcs_op *op = hcs_op_get(operation);
    if (!op)
        return HcsOperationTypeNone;
    pthread_mutex_lock(&op->obj.mu);
    HCS_OPERATION_TYPE t = op->type;
    pthread_mutex_unlock(&op->obj.mu);
    hcs_obj_unref(&op->obj);
    return t;
}

HCSAPI UINT64 WINAPI HcsGetOperationId(HCS_OPERATION operation)
{
    struct hcs_op *op = hcs_op_get(operation);
    if (!op)
        return HCS_INVALID_OPERATION_ID;
    UINT64 id = op->obj.id;     /* unique for the life of the process */
    hcs_obj_unref(&op->obj);
    return id;
}

HRESULT hcs_op_begin(struct hcs_op *op, HCS_OPERATION_TYPE type, struct hcs_handle *target,
                     uint64_t system_id, uint64_t process_id)
{
    /* Read the routing flag before taking the op lock: the two object locks
     * are never held together. */
    bool routed = false;
    if (target) {
        pthread_mutex_lock(&target->obj.mu);
        routed = target->cb && (target->cb_options & HcsEventOptionEnableOperationCallbacks);
        pthread_mutex_unlock(&target->obj.mu);
    }
    HRESULT hr = S_OK;
    pthread_mutex_lock(&op->obj.mu);
    /* The completion callback being delivered on this very thread may
     * reuse its op (chaining calls from the callback is common). */
    int held = op->deliveries;
    if (op->delivering && hcs_dispatch_on_thread())
        held--;
    if (op->state == HCS_OPSTATE_RUNNING || held > 0) {
        /* A completion not yet delivered (queued, or its callback still
         * running) belongs to the previous call: reusing the op now would
         * let that callback see the op RUNNING again (it would read
         * PENDING, or close the new call's op). */
        hr = HCS_E_OPERATION_ALREADY_STARTED;
    } else if (routed && (op->cb || op->ecb)) {
        hr = HCS_E_OPERATION_SYSTEM_CALLBACK_ALREADY_SET;
    } else {
        op_clear_result(op);
        op->state = HCS_OPSTATE_RUNNING;
        op->type = type;
        if (op->target)
            hcs_obj_unref(&op->target->obj);
        op->target = target;
        if (target)
            hcs_obj_ref(&target->obj);
        op->system_id = system_id;
        op->process_id = process_id;
        op->request_id = 0;
        op->run++;
        op->cancel_requested = false;
        op->routed = routed;
        op->hr = HCS_E_OPERATION_PENDING;
    }
    pthread_mutex_unlock(&op->obj.mu);
    return hr;
}

void hcs_op_fail_sync(struct hcs_op *op, HRESULT hr)
{
    /* The function itself reports hr; the op also answers it (hcsshim reads
     * the op after a failed call) but no callback fires for a call that
     * never started. */
    pthread_mutex_lock(&op->obj.mu);
    op->state = HCS_OPSTATE_COMPLETED;
    op->hr = hr;
    pthread_cond_broadcast(&op->obj.cv);
    pthread_mutex_unlock(&op->obj.mu);
}

/* The pending request of an operation.  Holds a ref to the op so a reply
 * for an op that was closed meanwhile lands in valid memory and is dropped. */
struct op_pending {
    struct hcs_pending p;
    struct hcs_op *op;
};

static void op_reply(struct hcs_pending *pp, struct hcs_reply *r)
{
    struct op_pending *opp = (struct op_pending *)pp;
    struct hcs_op *op = opp->op;
    free(opp);

    bool notify = false, counted = false;
    struct hcs_handle *target = NULL;
    pthread_mutex_lock(&op->obj.mu);
    if (op->obj.closed) {
        free(r->payload);
        for (int i = 0; i < 3; i++)
            hcs_close_fd(&r->fds[i]);
    } else {
        op->state = HCS_OPSTATE_COMPLETED;
        op->hr = r->hr;
        op->doc = (char *)r->payload;
        op->doc_len = r->payload ? r->len : 0;
        op->pid = r->arg;
        for (int i = 0; i < 3; i++)
            op->fds[i] = r->fds[i];
        pthread_cond_broadcast(&op->obj.cv);
        notify = true;
        /* Someone will be called back: hold reuse until that starts. */
        counted = op->cb || op->ecb || op->routed;
        if (counted)
            op->deliveries++;
        target = op->target;
        if (target)
            hcs_obj_ref(&target->obj);
    }
    pthread_mutex_unlock(&op->obj.mu);
    /* the dispatcher decides who (if anyone) hears */
    if (notify && !hcs_dispatch_op(op, target, counted) && counted) {
        pthread_mutex_lock(&op->obj.mu);    /* ENOMEM: no callback will come */
        op->deliveries--;
        pthread_mutex_unlock(&op->obj.mu);
    }
    if (target)
        hcs_obj_unref(&target->obj);
    hcs_obj_unref(&op->obj);
}

HRESULT hcs_op_send(struct hcs_op *op, uint64_t gen, uint32_t opcode, uint64_t handle,
                    uint64_t new_handle, uint32_t arg, const void *payload, size_t len)
{
    struct op_pending *opp = calloc(1, sizeof *opp);
    if (!opp)
        return E_OUTOFMEMORY;
    opp->p.request_id = hcs_conn_next_request_id();
    opp->p.complete = op_reply;
    opp->op = op;
    hcs_obj_ref(&op->obj);
    uint32_t rid = opp->p.request_id;
    pthread_mutex_lock(&op->obj.mu);
    uint64_t run = op->run;
    pthread_mutex_unlock(&op->obj.mu);
    HRESULT hr = hcs_conn_request(gen, opcode, handle, new_handle, arg, payload, len, &opp->p);
    if (FAILED(hr)) {
        hcs_obj_unref(&op->obj);
        free(opp);
        return hr;
    }
    /* Publish the request id for HcsCancelOperation only now that the
     * request is on the wire: a CANCEL written before its request would be
     * ignored by the service.  A cancel that came earlier (e.g. while
     * Enumerate was still connecting) was parked in cancel_requested and is
     * sent now.  The reply may already have completed this call, and the op
     * may even have been reused by another thread: 'run' tells. */
    pthread_mutex_lock(&op->obj.mu);
    bool mine = op->run == run && op->state == HCS_OPSTATE_RUNNING;
    bool cancel = mine && op->cancel_requested;
    if (mine) {
        op->request_id = rid;
        op->gen = gen;
        op->cancel_requested = false;
    }
    pthread_mutex_unlock(&op->obj.mu);
    if (cancel)
        hcs_conn_request(gen, HCS_OP_CANCEL, 0, 0, rid, NULL, 0, NULL);
    return S_OK;
}

static HRESULT get_result(HCS_OPERATION operation, bool wait, DWORD timeout_ms, bool want_pi,
                          HCS_PROCESS_INFORMATION *pi, PWSTR *doc)
{
    if (doc)
        *doc = NULL;
    struct hcs_op *op = hcs_op_get(operation);
    if (!op)
        return E_HANDLE;
    struct timespec dl;
    if (wait && timeout_ms != INFINITE && timeout_ms != 0)
        hcs_deadline(&dl, timeout_ms);

    HRESULT hr;
    pthread_mutex_lock(&op->obj.mu);
    for (;;) {
        if (op->obj.closed) {
            hr = E_HANDLE;
            goto out;
        }
        if (op->state == HCS_OPSTATE_IDLE) {
            hr = HCS_E_OPERATION_NOT_STARTED;
            goto out;
        }
        if (op->state == HCS_OPSTATE_COMPLETED)
            break;
        if (!wait) {
            hr = HCS_E_OPERATION_PENDING;
            goto out;
        }
        if (timeout_ms == 0 ||
            hcs_cond_timedwait_ms(&op->obj.cv, &op->obj.mu, timeout_ms == INFINITE ? NULL : &dl) == ETIMEDOUT) {
            if (op->state != HCS_OPSTATE_COMPLETED) {
                hr = op->obj.closed ? E_HANDLE : HCS_E_OPERATION_TIMEOUT;
                goto out;
            }
        }
    }
    if (want_pi && op->type != HcsOperationTypeCreateProcess && op->type != HcsOperationTypeGetProcessInfo) {
        hr = E_INVALIDARG;
        goto out;
    }
    hr = op->hr;
    HRESULT shr = hcs_result_string(op->doc, op->doc_len, doc);
    if (FAILED(shr)) {
        hr = shr;
        goto out;
    }
    if (want_pi && pi && SUCCEEDED(hr)) {
        /* The fds change owner here, once: a second fetch gets
         * INVALID_HANDLE_VALUE, never a second copy of the same fd. */
        pi->ProcessId = op->pid;
        pi->Reserved = 0;
        HANDLE *slots[3] = { &pi->StdInput, &pi->StdOutput, &pi->StdError };
        for (int i = 0; i < 3; i++) {
            *slots[i] = op->fds[i] >= 0 ? (HANDLE)(intptr_t)op->fds[i] : INVALID_HANDLE_VALUE;
            op->fds[i] = -1;
        }
    }
out:
    pthread_mutex_unlock(&op->obj.mu);
    hcs_obj_unref(&op->obj);
    return hr;
}

HCSAPI HRESULT WINAPI HcsGetOperationResult(HCS_OPERATION operation, PWSTR *resultDocument)
{
    return get_result(operation, false, 0, false, NULL, resultDocument);
}

HCSAPI HRESULT WINAPI HcsGetOperationResultAndProcessInfo(HCS_OPERATION operation,
                                                          HCS_PROCESS_INFORMATION *processInformation,
                                                          PWSTR *resultDocument)
{
    return get_result(operation, false, 0, true, processInformation, resultDocument);
}

HCSAPI HRESULT WINAPI HcsWaitForOperationResult(HCS_OPERATION operation, DWORD timeoutMs,
                                                PWSTR *resultDocument)
{
    return get_result(operation, true, timeoutMs, false, NULL, resultDocument);
}

HCSAPI HRESULT WINAPI HcsWaitForOperationResultAndProcessInfo(HCS_OPERATION operation, DWORD timeoutMs,
                                                              HCS_PROCESS_INFORMATION *processInformation,
                                                              PWSTR *resultDocument)
{
    return get_result(operation, true, timeoutMs, true, processInformation, resultDocument);
}

HCSAPI HRESULT WINAPI HcsCancelOperation(HCS_OPERATION operation)
{
    struct hcs_op *op = hcs_op_get(operation);
    if (!op)
        return E_HANDLE;
    pthread_mutex_lock(&op->obj.mu);
    enum hcs_op_state st = op->state;
    uint32_t rid = op->request_id;
    uint64_t gen = op->gen;
    /* Running but its request is not on the wire yet: hcs_op_send sends the
     * CANCEL right after it (dropping it here lost the cancel, and a request
     * the service sits on then never completed). */
    if (st == HCS_OPSTATE_RUNNING && rid == 0)
        op->cancel_requested = true;
    pthread_mutex_unlock(&op->obj.mu);
    hcs_obj_unref(&op->obj);

    if (st == HCS_OPSTATE_IDLE)
        return HCS_E_OPERATION_NOT_STARTED;
    if (st == HCS_OPSTATE_COMPLETED || rid == 0)
        return S_OK;            /* nothing left to stop, or parked (above) */
    /* No reply to CANCEL; the op completes exactly once through its own
     * reply (E_ABORT if it was stopped).  A broken connection completes it
     * with SERVICE_DISCONNECT, so a failed send is not an error either. */
    hcs_conn_request(gen, HCS_OP_CANCEL, 0, 0, rid, NULL, 0, NULL);
    return S_OK;
}

HCSAPI HRESULT WINAPI HcsAddResourceToOperation(HCS_OPERATION operation, HCS_RESOURCE_TYPE type,
                                                PCWSTR uri, HANDLE handle)
{
    (void)operation; (void)type; (void)uri; (void)handle;
    return E_NOTIMPL;           /* only used for live migration sockets */
}

HCSAPI HRESULT WINAPI HcsGetOperationProperties(HCS_OPERATION operation, PCWSTR options,
                                                PWSTR *resultDocument)
{
    (void)operation; (void)options;
    if (resultDocument)
        *resultDocument = NULL;
    return E_NOTIMPL;           /* undocumented schema; nobody uses it */
}
