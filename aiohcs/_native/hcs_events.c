/*
 * hcs_events.c — what system and process handles have in common: the event
 * callback, the stored exit status, exit waits, close, and the reaction to
 * events and to a broken connection.
 */
#include "hcs_internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static void handle_destroy(struct hcs_obj *o)
{
    struct hcs_handle *h = (struct hcs_handle *)o;
    free(h->exit_doc);
}

struct hcs_handle *hcs_handle_new(enum hcs_kind kind, uint64_t gen)
{
    struct hcs_handle *h = calloc(1, sizeof *h);
    if (!h)
        return NULL;
    hcs_obj_init(&h->obj, kind, handle_destroy);
    h->gen = gen;
    return h;
}

struct hcs_handle *hcs_handle_get(const void *hv, enum hcs_kind kind)
{
    return (struct hcs_handle *)hcs_obj_get(hv, kind);
}

HRESULT hcs_handle_set_callback(const void *hv, enum hcs_kind kind, HCS_EVENT_OPTIONS opts,
                                const void *ctx, HCS_EVENT_CALLBACK cb)
{
    struct hcs_handle *h = hcs_handle_get(hv, kind);
    if (!h)
        return E_HANDLE;
    HRESULT hr = S_OK;
    if (!cb)
        hr = E_INVALIDARG;
    pthread_mutex_lock(&h->obj.mu);
    if (SUCCEEDED(hr)) {
        if (h->cb_set) {
            hr = HCS_E_OPERATION_SYSTEM_CALLBACK_ALREADY_SET;
        } else if (!h->obj.closed) {
            h->cb_set = true;
            h->cb = cb;
            h->cb_context = (void *)ctx;
            h->cb_options = opts;
        }
    }
    pthread_mutex_unlock(&h->obj.mu);
    hcs_obj_unref(&h->obj);
    return hr;
}

void hcs_handle_close(const void *hv, enum hcs_kind kind)
{
    struct hcs_handle *h = hcs_handle_get(hv, kind);
    if (!h)
        return;
    /* Unpublish first: from here on the handle value is E_HANDLE for every
     * other thread, and a second close is a no-op. */
    if (!hcs_obj_unpublish(&h->obj)) {
        hcs_obj_unref(&h->obj);
        return;
    }
    pthread_mutex_lock(&h->obj.mu);
    h->obj.closed = true;
    h->cb = NULL;               /* atomically disabled: no new invocation */
    hcs_obj_close_gate(&h->obj);
    pthread_cond_broadcast(&h->obj.cv);   /* release exit waiters */
    uint64_t gen = h->gen;
    bool disconnected = h->disconnected;
    pthread_mutex_unlock(&h->obj.mu);

    if (!disconnected) {
        /* Fire and forget (the protocol sends no reply to CLOSE).  If the
         * connection is gone the service already closed the handle. */
        hcs_conn_request(gen, kind == HCS_KIND_SYSTEM ? HCS_OP_CLOSE_SYSTEM : HCS_OP_CLOSE_PROCESS,
                         h->obj.id, 0, 0, NULL, 0, NULL);
    }
    hcs_obj_unref(&h->obj);
}

HRESULT hcs_handle_wait_exit(const void *hv, enum hcs_kind kind, DWORD timeout_ms, PWSTR *result)
{
    if (result)
        *result = NULL;
    struct hcs_handle *h = hcs_handle_get(hv, kind);
    if (!h)
        return E_HANDLE;
    struct timespec dl;
    if (timeout_ms != INFINITE)
        hcs_deadline(&dl, timeout_ms);
    HRESULT hr;
    pthread_mutex_lock(&h->obj.mu);
    for (;;) {
        if (h->exited) {
            hr = hcs_result_string(h->exit_doc, h->exit_len, result);
            break;
        }
        if (h->disconnected) {
            hr = HCS_E_SERVICE_DISCONNECT;
            break;
        }
        if (h->obj.closed) {
            hr = E_HANDLE;
            break;
        }
        if (hcs_cond_timedwait_ms(&h->obj.cv, &h->obj.mu, timeout_ms == INFINITE ? NULL : &dl) == ETIMEDOUT) {
            /* re-check once: the state may have changed with the timeout */
            if (!h->exited && !h->disconnected && !h->obj.closed) {
                hr = HCS_E_OPERATION_TIMEOUT;
                break;
            }
        }
    }
    pthread_mutex_unlock(&h->obj.mu);
    hcs_obj_unref(&h->obj);
    return hr;
}

void hcs_handle_on_event(uint64_t gen, uint64_t id, uint32_t type, unsigned char *payload, size_t len)
{
    enum hcs_kind kind = (enum hcs_kind)(id & 3u);
    struct hcs_handle *h = NULL;
    if (kind == HCS_KIND_SYSTEM || kind == HCS_KIND_PROCESS)
        h = (struct hcs_handle *)hcs_obj_get_id(id, kind);
    if (!h || h->gen != gen) {
        /* an event for a handle already closed: nobody to tell */
        free(payload);
        if (h)
            hcs_obj_unref(&h->obj);
        return;
    }
    bool is_exit = (kind == HCS_KIND_SYSTEM && type == HcsEventSystemExited) ||
                   (kind == HCS_KIND_PROCESS && type == HcsEventProcessExited);
    if (is_exit) {
        char *copy = NULL;
        if (len) {
            copy = malloc(len);
            if (copy)
                memcpy(copy, payload, len);
        }
        pthread_mutex_lock(&h->obj.mu);
        if (!h->exited) {
            h->exited = true;
            h->exit_doc = copy;
            h->exit_len = copy ? len : 0;
            copy = NULL;
            pthread_cond_broadcast(&h->obj.cv);
        }
        pthread_mutex_unlock(&h->obj.mu);
        free(copy);
    }
    hcs_dispatch_event(h, type, payload, len);
    hcs_obj_unref(&h->obj);
}

void hcs_handle_on_disconnect(uint64_t gen)
{
    struct hcs_obj **v = NULL;
    size_t n = hcs_obj_collect_gen(gen, &v);
    for (size_t i = 0; i < n; i++) {
        struct hcs_handle *h = (struct hcs_handle *)v[i];
        pthread_mutex_lock(&h->obj.mu);
        h->disconnected = true;
        bool has_cb = h->cb != NULL;
        pthread_cond_broadcast(&h->obj.cv);
        pthread_mutex_unlock(&h->obj.mu);
        if (has_cb)
            hcs_dispatch_event(h, HcsEventServiceDisconnect, NULL, 0);
        hcs_obj_unref(&h->obj);
    }
    free(v);
}
