/*
 * hcs_service.c — the synchronous service-wide calls.  They block the
 * calling thread on the reply (never the reader thread; see hcs_conn.c).
 */
#include "hcs_internal.h"

#include <stdlib.h>

static HRESULT service_call(uint32_t opcode, PCWSTR doc, bool doc_required, PWSTR *result)
{
    char *u8 = NULL;
    size_t len = 0;
    HRESULT hr = hcs_utf16_to_utf8(doc, &u8, &len);
    if (SUCCEEDED(hr) && doc_required && len == 0)
        hr = E_INVALIDARG;
    if (FAILED(hr))
        return hr;
    struct hcs_reply r;
    hr = hcs_conn_call(0, opcode, 0, 0, 0, u8, len, &r);
    free(u8);
    for (int i = 0; i < 3; i++)
        hcs_close_fd(&r.fds[i]);
    /* The document is returned on success and on failure (a ResultError). */
    HRESULT shr = hcs_result_string((const char *)r.payload, r.payload ? r.len : 0, result);
    free(r.payload);
    if (FAILED(shr) && SUCCEEDED(hr))
        hr = shr;
    return hr;
}

HCSAPI HRESULT WINAPI HcsGetServiceProperties(PCWSTR propertyQuery, PWSTR *result)
{
    if (!result)
        return E_POINTER;       /* required out parameter (API.md §1.3) */
    *result = NULL;
    return service_call(HCS_OP_GET_SERVICE_PROPERTIES, propertyQuery, false, result);
}

HCSAPI HRESULT WINAPI HcsModifyServiceSettings(PCWSTR settings, PWSTR *result)
{
    if (result)
        *result = NULL;
    return service_call(HCS_OP_MODIFY_SERVICE_SETTINGS, settings, true, result);
}
