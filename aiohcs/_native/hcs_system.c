/*
 * hcs_system.c — compute-system calls: enumerate, create, open, close, the
 * lifecycle verbs, properties, modify, callbacks and exit waits.
 */
#include "hcs_internal.h"

#include <stdlib.h>
#include <string.h>

/* Shared body of the async calls that act on an existing system handle:
 * validate, move the op to RUNNING, send.  A failure after the op started
 * completes it synchronously (hcs_op_fail_sync). */
static HRESULT system_call(HCS_SYSTEM system, HCS_OPERATION operation, PCWSTR doc, bool doc_required,
                           uint32_t opcode, HCS_OPERATION_TYPE type)
{
    struct hcs_handle *h = hcs_handle_get(system, HCS_KIND_SYSTEM);
    if (!h)
        return E_HANDLE;
    struct hcs_op *op = hcs_op_get(operation);
    if (!op) {
        hcs_obj_unref(&h->obj);
        return E_HANDLE;
    }
    char *u8 = NULL;
    size_t len = 0;
    HRESULT hr = hcs_utf16_to_utf8(doc, &u8, &len);
    if (SUCCEEDED(hr) && doc_required && len == 0)
        hr = E_INVALIDARG;
    if (SUCCEEDED(hr)) {
        pthread_mutex_lock(&h->obj.mu);
        bool disconnected = h->disconnected;
        uint64_t gen = h->gen;
        pthread_mutex_unlock(&h->obj.mu);
        hr = hcs_op_begin(op, type, h, h->obj.id, 0);
        if (SUCCEEDED(hr)) {
            /* transport failures are left on the op as well */
            hr = disconnected ? HCS_E_SERVICE_DISCONNECT
                              : hcs_op_send(op, gen, opcode, h->obj.id, 0, 0, u8, len);
            if (FAILED(hr))
                hcs_op_fail_sync(op, hr);
        }
    }
    free(u8);
    hcs_obj_unref(&op->obj);
    hcs_obj_unref(&h->obj);
    return hr;
}

HCSAPI HRESULT WINAPI HcsEnumerateComputeSystems(PCWSTR query, HCS_OPERATION operation)
{
    struct hcs_op *op = hcs_op_get(operation);
    if (!op)
        return E_HANDLE;
    char *u8 = NULL;
    size_t len = 0;
    HRESULT hr = hcs_utf16_to_utf8(query, &u8, &len);
    if (SUCCEEDED(hr))
        hr = hcs_op_begin(op, HcsOperationTypeEnumerate, NULL, 0, 0);
    if (SUCCEEDED(hr)) {
        uint64_t gen;
        hr = hcs_conn_ensure(&gen);
        if (SUCCEEDED(hr))
            hr = hcs_op_send(op, gen, HCS_OP_ENUMERATE, 0, 0, 0, u8, len);
        if (FAILED(hr))
            hcs_op_fail_sync(op, hr);
    }
    free(u8);
    hcs_obj_unref(&op->obj);
    return hr;
}

HCSAPI HRESULT WINAPI HcsEnumerateComputeSystemsInNamespace(PCWSTR idNamespace, PCWSTR query,
                                                            HCS_OPERATION operation)
{
    (void)idNamespace;          /* one namespace on Linux; see docs/native.md */
    return HcsEnumerateComputeSystems(query, operation);
}

/* "id \0 configuration" */
static HRESULT build_create_payload(PCWSTR id, PCWSTR configuration, char **out, size_t *outlen)
{
    char *id8 = NULL, *cfg8 = NULL;
    size_t idlen = 0, cfglen = 0;
    HRESULT hr = hcs_utf16_to_utf8(id, &id8, &idlen);
    if (SUCCEEDED(hr))
        hr = hcs_utf16_to_utf8(configuration, &cfg8, &cfglen);
    if (SUCCEEDED(hr) && (idlen == 0 || cfglen == 0))
        hr = E_INVALIDARG;      /* both are required */
    if (SUCCEEDED(hr) && memchr(id8, 0, idlen))
        hr = E_INVALIDARG;
    char *buf = NULL;
    if (SUCCEEDED(hr)) {
        buf = malloc(idlen + 1 + cfglen);
        if (!buf)
            hr = E_OUTOFMEMORY;
    }
    if (SUCCEEDED(hr)) {
        memcpy(buf, id8, idlen);
        buf[idlen] = 0;
        memcpy(buf + idlen + 1, cfg8, cfglen);
        *out = buf;
        *outlen = idlen + 1 + cfglen;
    }
    free(id8);
    free(cfg8);
    return hr;
}

static HRESULT create_system(PCWSTR id, PCWSTR configuration, HCS_OPERATION operation,
                             const HCS_CREATE_OPTIONS_1 *opts, HCS_SYSTEM *computeSystem)
{
    if (!computeSystem)
        return E_POINTER;
    *computeSystem = NULL;
    struct hcs_op *op = hcs_op_get(operation);
    if (!op)
        return E_HANDLE;
    char *payload = NULL;
    size_t len = 0;
    struct hcs_handle *h = NULL;
    uint64_t gen = 0;
    HRESULT hr = build_create_payload(id, configuration, &payload, &len);
    if (SUCCEEDED(hr)) {
        hr = hcs_conn_ensure(&gen);
        /* Same contract as every other async call: a call that could not
         * reach the service leaves its failure on the operation too. */
        if (FAILED(hr) && SUCCEEDED(hcs_op_begin(op, HcsOperationTypeCreate, NULL, 0, 0)))
            hcs_op_fail_sync(op, hr);
    }
    if (SUCCEEDED(hr)) {
        h = hcs_handle_new(HCS_KIND_SYSTEM, gen);
        if (!h)
            hr = E_OUTOFMEMORY;
    }
    if (SUCCEEDED(hr) && opts && opts->Callback) {
        /* registered before the request exists, so no event can be missed */
        h->cb_set = true;
        h->cb = opts->Callback;
        h->cb_context = opts->CallbackContext;
        h->cb_options = opts->CallbackOptions;
    }
    if (SUCCEEDED(hr)) {
        /* Published before the request is sent: the handle id is the wire
         * new_handle, and events for it must find it. */
        hcs_obj_publish(&h->obj);
        hr = hcs_op_begin(op, HcsOperationTypeCreate, h, h->obj.id, 0);
        if (SUCCEEDED(hr)) {
            hr = hcs_op_send(op, gen, HCS_OP_CREATE_SYSTEM, 0, h->obj.id, 0, payload, len);
            if (FAILED(hr))
                hcs_op_fail_sync(op, hr);
        }
        if (SUCCEEDED(hr)) {
            *computeSystem = hcs_obj_handle(&h->obj);
        } else {
            pthread_mutex_lock(&h->obj.mu);
            h->obj.closed = true;
            pthread_mutex_unlock(&h->obj.mu);
            hcs_obj_unpublish(&h->obj);
            h = NULL;   /* the table's ref was the only one */
        }
    } else if (h) {
        hcs_obj_unref(&h->obj);
    }
    free(payload);
    hcs_obj_unref(&op->obj);
    return hr;
}

HCSAPI HRESULT WINAPI HcsCreateComputeSystem(PCWSTR id, PCWSTR configuration, HCS_OPERATION operation,
                                             const SECURITY_DESCRIPTOR *securityDescriptor,
                                             HCS_SYSTEM *computeSystem)
{
    (void)securityDescriptor;   /* Windows ACLs: ignored on Linux */
    return create_system(id, configuration, operation, NULL, computeSystem);
}

HCSAPI HRESULT WINAPI HcsCreateComputeSystemInNamespace(PCWSTR idNamespace, PCWSTR id,
                                                        PCWSTR configuration, HCS_OPERATION operation,
                                                        const HCS_CREATE_OPTIONS *options,
                                                        HCS_SYSTEM *computeSystem)
{
    (void)idNamespace;
    const HCS_CREATE_OPTIONS_1 *o1 = NULL;
    if (options) {
        if (*options != HcsCreateOptions_1) {
            if (computeSystem)
                *computeSystem = NULL;
            return E_INVALIDARG;
        }
        o1 = (const HCS_CREATE_OPTIONS_1 *)options;
    }
    return create_system(id, configuration, operation, o1, computeSystem);
}

HCSAPI HRESULT WINAPI HcsOpenComputeSystem(PCWSTR id, DWORD requestedAccess, HCS_SYSTEM *computeSystem)
{
    (void)requestedAccess;      /* no access classes on Linux: full access */
    if (!computeSystem)
        return E_POINTER;
    *computeSystem = NULL;
    char *id8 = NULL;
    size_t len = 0;
    HRESULT hr = hcs_utf16_to_utf8(id, &id8, &len);
    if (SUCCEEDED(hr) && len == 0)
        hr = E_INVALIDARG;
    uint64_t gen = 0;
    if (SUCCEEDED(hr))
        hr = hcs_conn_ensure(&gen);
    struct hcs_handle *h = NULL;
    if (SUCCEEDED(hr)) {
        h = hcs_handle_new(HCS_KIND_SYSTEM, gen);
        if (!h)
            hr = E_OUTOFMEMORY;
    }
    if (SUCCEEDED(hr)) {
        hcs_obj_publish(&h->obj);
        struct hcs_reply r;
        hr = hcs_conn_call(gen, HCS_OP_OPEN_SYSTEM, 0, h->obj.id, 0, id8, len, &r);
        free(r.payload);
        for (int i = 0; i < 3; i++)
            hcs_close_fd(&r.fds[i]);
        if (SUCCEEDED(hr)) {
            *computeSystem = hcs_obj_handle(&h->obj);
        } else {
            pthread_mutex_lock(&h->obj.mu);
            h->obj.closed = true;
            pthread_mutex_unlock(&h->obj.mu);
            hcs_obj_unpublish(&h->obj);
        }
    }
    free(id8);
    return hr;
}

HCSAPI HRESULT WINAPI HcsOpenComputeSystemInNamespace(PCWSTR idNamespace, PCWSTR id,
                                                      DWORD requestedAccess, HCS_SYSTEM *computeSystem)
{
    (void)idNamespace;
    return HcsOpenComputeSystem(id, requestedAccess, computeSystem);
}

HCSAPI void WINAPI HcsCloseComputeSystem(HCS_SYSTEM computeSystem)
{
    hcs_handle_close(computeSystem, HCS_KIND_SYSTEM);
}

HCSAPI HRESULT WINAPI HcsStartComputeSystem(HCS_SYSTEM s, HCS_OPERATION o, PCWSTR options)
{
    return system_call(s, o, options, false, HCS_OP_START, HcsOperationTypeStart);
}

HCSAPI HRESULT WINAPI HcsShutDownComputeSystem(HCS_SYSTEM s, HCS_OPERATION o, PCWSTR options)
{
    return system_call(s, o, options, false, HCS_OP_SHUTDOWN, HcsOperationTypeShutdown);
}

HCSAPI HRESULT WINAPI HcsTerminateComputeSystem(HCS_SYSTEM s, HCS_OPERATION o, PCWSTR options)
{
    return system_call(s, o, options, false, HCS_OP_TERMINATE, HcsOperationTypeTerminate);
}

HCSAPI HRESULT WINAPI HcsCrashComputeSystem(HCS_SYSTEM s, HCS_OPERATION o, PCWSTR options)
{
    return system_call(s, o, options, false, HCS_OP_CRASH, HcsOperationTypeCrash);
}

HCSAPI HRESULT WINAPI HcsPauseComputeSystem(HCS_SYSTEM s, HCS_OPERATION o, PCWSTR options)
{
    return system_call(s, o, options, false, HCS_OP_PAUSE, HcsOperationTypePause);
}

HCSAPI HRESULT WINAPI HcsResumeComputeSystem(HCS_SYSTEM s, HCS_OPERATION o, PCWSTR options)
{
    return system_call(s, o, options, false, HCS_OP_RESUME, HcsOperationTypeResume);
}

HCSAPI HRESULT WINAPI HcsSaveComputeSystem(HCS_SYSTEM s, HCS_OPERATION o, PCWSTR options)
{
    return system_call(s, o, options, false, HCS_OP_SAVE, HcsOperationTypeSave);
}

HCSAPI HRESULT WINAPI HcsGetComputeSystemProperties(HCS_SYSTEM s, HCS_OPERATION o, PCWSTR propertyQuery)
{
    return system_call(s, o, propertyQuery, false, HCS_OP_GET_PROPERTIES, HcsOperationTypeGetProperties);
}

HCSAPI HRESULT WINAPI HcsModifyComputeSystem(HCS_SYSTEM s, HCS_OPERATION o, PCWSTR configuration,
                                             HANDLE identity)
{
    (void)identity;             /* Windows access token: ignored */
    return system_call(s, o, configuration, true, HCS_OP_MODIFY, HcsOperationTypeModify);
}

HCSAPI HRESULT WINAPI HcsWaitForComputeSystemExit(HCS_SYSTEM computeSystem, DWORD timeoutMs, PWSTR *result)
{
    return hcs_handle_wait_exit(computeSystem, HCS_KIND_SYSTEM, timeoutMs, result);
}

HCSAPI HRESULT WINAPI HcsSetComputeSystemCallback(HCS_SYSTEM computeSystem, HCS_EVENT_OPTIONS callbackOptions,
                                                  const void *context, HCS_EVENT_CALLBACK callback)
{
    return hcs_handle_set_callback(computeSystem, HCS_KIND_SYSTEM, callbackOptions, context, callback);
}
