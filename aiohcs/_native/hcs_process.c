/*
 * hcs_process.c — process calls.  Stdio comes back as fds on the
 * CREATE_PROCESS reply and is handed to the caller through
 * HcsGet/WaitForOperationResultAndProcessInfo (see hcs_operation.c).
 */
#include "hcs_internal.h"

#include <stdlib.h>

HCSAPI HRESULT WINAPI HcsCreateProcess(HCS_SYSTEM computeSystem, PCWSTR processParameters,
                                       HCS_OPERATION operation,
                                       const SECURITY_DESCRIPTOR *securityDescriptor,
                                       HCS_PROCESS *process)
{
    (void)securityDescriptor;
    if (!process)
        return E_POINTER;
    *process = NULL;
    struct hcs_handle *sys = hcs_handle_get(computeSystem, HCS_KIND_SYSTEM);
    if (!sys)
        return E_HANDLE;
    struct hcs_op *op = hcs_op_get(operation);
    if (!op) {
        hcs_obj_unref(&sys->obj);
        return E_HANDLE;
    }
    char *u8 = NULL;
    size_t len = 0;
    HRESULT hr = hcs_utf16_to_utf8(processParameters, &u8, &len);
    if (SUCCEEDED(hr) && len == 0)
        hr = E_INVALIDARG;
    pthread_mutex_lock(&sys->obj.mu);
    uint64_t gen = sys->gen;
    bool disconnected = sys->disconnected;
    pthread_mutex_unlock(&sys->obj.mu);

    struct hcs_handle *p = NULL;
    if (SUCCEEDED(hr)) {
        p = hcs_handle_new(HCS_KIND_PROCESS, gen);
        if (!p)
            hr = E_OUTOFMEMORY;
    }
    if (SUCCEEDED(hr)) {
        p->system_id = sys->obj.id;
        hcs_obj_publish(&p->obj);
        /* The call is made on the system handle, so completions are routed
         * to the system's callback (HcsEventOptionEnableOperationCallbacks). */
        hr = hcs_op_begin(op, HcsOperationTypeCreateProcess, sys, sys->obj.id, p->obj.id);
        if (SUCCEEDED(hr)) {
            hr = disconnected ? HCS_E_SERVICE_DISCONNECT
                              : hcs_op_send(op, gen, HCS_OP_CREATE_PROCESS, sys->obj.id, p->obj.id, 0, u8, len);
            if (FAILED(hr))
                hcs_op_fail_sync(op, hr);
        }
        if (SUCCEEDED(hr)) {
            *process = hcs_obj_handle(&p->obj);
        } else {
            pthread_mutex_lock(&p->obj.mu);
            p->obj.closed = true;
            pthread_mutex_unlock(&p->obj.mu);
            hcs_obj_unpublish(&p->obj);
        }
    }
    free(u8);
    hcs_obj_unref(&op->obj);
    hcs_obj_unref(&sys->obj);
    return hr;
}

HCSAPI HRESULT WINAPI HcsOpenProcess(HCS_SYSTEM computeSystem, DWORD processId, DWORD requestedAccess,
                                     HCS_PROCESS *process)
{
    (void)requestedAccess;
    if (!process)
        return E_POINTER;
    *process = NULL;
    struct hcs_handle *sys = hcs_handle_get(computeSystem, HCS_KIND_SYSTEM);
    if (!sys)
        return E_HANDLE;
    pthread_mutex_lock(&sys->obj.mu);
    uint64_t gen = sys->gen;
    HRESULT hr = sys->disconnected ? HCS_E_SERVICE_DISCONNECT : S_OK;
    pthread_mutex_unlock(&sys->obj.mu);
    struct hcs_handle *p = NULL;
    if (SUCCEEDED(hr)) {
        p = hcs_handle_new(HCS_KIND_PROCESS, gen);
        if (!p)
            hr = E_OUTOFMEMORY;
    }
    if (SUCCEEDED(hr)) {
        p->system_id = sys->obj.id;
        hcs_obj_publish(&p->obj);
        struct hcs_reply r;
        hr = hcs_conn_call(gen, HCS_OP_OPEN_PROCESS, sys->obj.id, p->obj.id, processId, NULL, 0, &r);
        free(r.payload);
        for (int i = 0; i < 3; i++)
            hcs_close_fd(&r.fds[i]);
        if (SUCCEEDED(hr)) {
            *process = hcs_obj_handle(&p->obj);
        } else {
            pthread_mutex_lock(&p->obj.mu);
            p->obj.closed = true;
            pthread_mutex_unlock(&p->obj.mu);
            hcs_obj_unpublish(&p->obj);
        }
    }
    hcs_obj_unref(&sys->obj);
    return hr;
}

HCSAPI void WINAPI HcsCloseProcess(HCS_PROCESS process)
{
    hcs_handle_close(process, HCS_KIND_PROCESS);
}

static HRESULT process_call(HCS_PROCESS process, HCS_OPERATION operation, PCWSTR doc, bool doc_required,
                            uint32_t opcode, HCS_OPERATION_TYPE type)
{
    struct hcs_handle *p = hcs_handle_get(process, HCS_KIND_PROCESS);
    if (!p)
        return E_HANDLE;
    struct hcs_op *op = hcs_op_get(operation);
    if (!op) {
        hcs_obj_unref(&p->obj);
        return E_HANDLE;
    }
    char *u8 = NULL;
    size_t len = 0;
    HRESULT hr = hcs_utf16_to_utf8(doc, &u8, &len);
    if (SUCCEEDED(hr) && doc_required && len == 0)
        hr = E_INVALIDARG;
    pthread_mutex_lock(&p->obj.mu);
    uint64_t gen = p->gen;
    bool disconnected = p->disconnected;
    pthread_mutex_unlock(&p->obj.mu);
    if (SUCCEEDED(hr))
        hr = hcs_op_begin(op, type, p, p->system_id, p->obj.id);
    if (SUCCEEDED(hr)) {
        hr = disconnected ? HCS_E_SERVICE_DISCONNECT
                          : hcs_op_send(op, gen, opcode, p->obj.id, 0, 0, u8, len);
        if (FAILED(hr))
            hcs_op_fail_sync(op, hr);
    }
    free(u8);
    hcs_obj_unref(&op->obj);
    hcs_obj_unref(&p->obj);
    return hr;
}

/* API.md §2.2 has no "TerminateProcess" operation type; Windows reports
 * Terminate, which is what we do. */
HCSAPI HRESULT WINAPI HcsTerminateProcess(HCS_PROCESS process, HCS_OPERATION operation, PCWSTR options)
{
    return process_call(process, operation, options, false, HCS_OP_TERMINATE_PROCESS, HcsOperationTypeTerminate);
}

HCSAPI HRESULT WINAPI HcsSignalProcess(HCS_PROCESS process, HCS_OPERATION operation, PCWSTR options)
{
    return process_call(process, operation, options, false, HCS_OP_SIGNAL_PROCESS, HcsOperationTypeSignalProcess);
}

HCSAPI HRESULT WINAPI HcsGetProcessInfo(HCS_PROCESS process, HCS_OPERATION operation)
{
    return process_call(process, operation, NULL, false, HCS_OP_GET_PROCESS_INFO, HcsOperationTypeGetProcessInfo);
}

HCSAPI HRESULT WINAPI HcsGetProcessProperties(HCS_PROCESS process, HCS_OPERATION operation, PCWSTR propertyQuery)
{
    return process_call(process, operation, propertyQuery, false, HCS_OP_GET_PROCESS_PROPERTIES,
                        HcsOperationTypeGetProcessProperties);
}

HCSAPI HRESULT WINAPI HcsModifyProcess(HCS_PROCESS process, HCS_OPERATION operation, PCWSTR settings)
{
    return process_call(process, operation, settings, true, HCS_OP_MODIFY_PROCESS, HcsOperationTypeModifyProcess);
}

HCSAPI HRESULT WINAPI HcsSetProcessCallback(HCS_PROCESS process, HCS_EVENT_OPTIONS callbackOptions,
                                            void *context, HCS_EVENT_CALLBACK callback)
{
    return hcs_handle_set_callback(process, HCS_KIND_PROCESS, callbackOptions, context, callback);
}

HCSAPI HRESULT WINAPI HcsWaitForProcessExit(HCS_PROCESS process, DWORD timeoutMs, PWSTR *result)
{
    return hcs_handle_wait_exit(process, HCS_KIND_PROCESS, timeoutMs, result);
}
