/*
 * hcs_dispatch.c — the one thread that runs user callbacks.
 *
 * The reader thread must never run user code (a callback may call back into
 * the library and wait for a reply only the reader can deliver), so it
 * queues work here.  One thread, one FIFO: events and completions for a
 * handle reach the user in the order the service sent them.  No library
 * lock is held while a user callback runs.
 */
#include "hcs_internal.h"

#include <stdlib.h>

enum work_kind { WORK_OP, WORK_EVENT };

struct work {
    struct work *next;
    enum work_kind kind;
    struct hcs_obj *obj;        /* ref */
    struct hcs_obj *target;     /* ref or NULL: WORK_OP's routing handle */
    bool counted;               /* WORK_OP: holds one of op->deliveries */
    uint32_t type;
    unsigned char *payload;
    size_t len;
};

static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_cv = PTHREAD_COND_INITIALIZER;
static struct work *g_head, *g_tail;
static bool g_started;
static pthread_t g_thread;

bool hcs_dispatch_on_thread(void)
{
    pthread_mutex_lock(&g_mu);
    bool on = g_started && pthread_equal(g_thread, pthread_self());
    pthread_mutex_unlock(&g_mu);
    return on;
}

/* Run a handle's event callback through its gate (see hcs_obj_close_gate).
 * op_completion: only deliver if the handle asked for operation callbacks. */
void hcs_handle_invoke(struct hcs_handle *h, HCS_EVENT *ev, bool op_completion)
{
    pthread_mutex_lock(&h->obj.mu);
    HCS_EVENT_CALLBACK cb = h->obj.closed ? NULL : h->cb;
    void *ctx = h->cb_context;
    if (op_completion && !(h->cb_options & HcsEventOptionEnableOperationCallbacks))
        cb = NULL;
    if (cb) {
        h->obj.cb_running++;
        h->obj.cb_thread = pthread_self();
    }
    pthread_mutex_unlock(&h->obj.mu);
    if (!cb)
        return;
    cb(ev, ctx);
    pthread_mutex_lock(&h->obj.mu);
    h->obj.cb_running--;
    pthread_cond_broadcast(&h->obj.cv);
    pthread_mutex_unlock(&h->obj.mu);
}

static void run_op(struct hcs_op *op, struct hcs_handle *target, bool counted)
{
    pthread_mutex_lock(&op->obj.mu);
    if (counted)
        op->delivering = true;  /* reuse only from inside the callback */
    HCS_OPERATION_COMPLETION cb = op->obj.closed ? NULL : op->cb;
    HCS_EVENT_CALLBACK ecb = op->obj.closed ? NULL : op->ecb;
    void *ctx = (void *)op->context;
    bool closed = op->obj.closed;
    if (cb || ecb) {
        op->obj.cb_running++;
        op->obj.cb_thread = pthread_self();
    }
    pthread_mutex_unlock(&op->obj.mu);

    if (cb || ecb) {
        if (cb) {
            cb(hcs_obj_handle(&op->obj), ctx);
        } else {
            HCS_EVENT ev = { .Type = HcsEventOperationCallback, .EventData = NULL,
                             .Operation = hcs_obj_handle(&op->obj) };
            ecb(&ev, ctx);
        }
        pthread_mutex_lock(&op->obj.mu);
        op->obj.cb_running--;
        pthread_cond_broadcast(&op->obj.cv);
        pthread_mutex_unlock(&op->obj.mu);
    } else if (target && !closed) {
        /* No callback of its own: the handle may route completions
         * (HcsEventOptionEnableOperationCallbacks). */
        HCS_EVENT ev = { .Type = HcsEventOperationCallback, .EventData = NULL,
                         .Operation = hcs_obj_handle(&op->obj) };
        hcs_handle_invoke(target, &ev, true);
    }
    if (counted) {
        /* Delivered: the op may be reused by anyone now. */
        pthread_mutex_lock(&op->obj.mu);
        op->delivering = false;
        op->deliveries--;
        pthread_mutex_unlock(&op->obj.mu);
    }
}

static void run_event(struct work *w)
{
    struct hcs_handle *h = (struct hcs_handle *)w->obj;
    PWSTR data = NULL;
    if (w->len > 0) {
        data = hcs_utf8_to_utf16((const char *)w->payload, w->len);
        /* Out of memory: deliver the event without its data rather than
         * drop an exit notification. */
    }
    HCS_EVENT ev = { .Type = w->type, .EventData = data, .Operation = NULL };
    hcs_handle_invoke(h, &ev, false);
    free(data);
}

void hcs_dispatch_atfork(enum hcs_fork_phase ph)
{
    if (ph == HCS_FORK_PREPARE) {
        pthread_mutex_lock(&g_mu);
        return;
    }
    if (ph == HCS_FORK_CHILD) {
        /* The dispatcher thread does not exist in the child.  The queued work
         * is the parent's callbacks: running them here would run them twice
         * (once per process), so the child forgets them.  The items are
         * deliberately leaked: the objects they reference may have been in
         * the middle of a change by a thread that vanished in the fork.  The
         * condvar may record waiters that no longer exist; start it afresh
         * so the child's first signal reaches its own dispatcher. */
        g_head = g_tail = NULL;
        g_started = false;
        pthread_cond_init(&g_cv, NULL);
    }
    pthread_mutex_unlock(&g_mu);
}

static void *dispatch_main(void *unused)
{
    (void)unused;
    for (;;) {
        pthread_mutex_lock(&g_mu);
        while (!g_head)
            pthread_cond_wait(&g_cv, &g_mu);
        struct work *w = g_head;
        g_head = w->next;
        if (!g_head)
            g_tail = NULL;
        pthread_mutex_unlock(&g_mu);

        if (w->kind == WORK_OP)
            run_op((struct hcs_op *)w->obj, (struct hcs_handle *)w->target, w->counted);
        else
            run_event(w);
        hcs_obj_unref(w->obj);
        hcs_obj_unref(w->target);
        free(w->payload);
        free(w);
    }
    return NULL;
}

static void enqueue(struct work *w)
{
    pthread_mutex_lock(&g_mu);
    if (!g_started) {
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        if (pthread_create(&g_thread, &attr, dispatch_main, NULL) == 0)
            g_started = true;
        pthread_attr_destroy(&attr);
        /* If the thread cannot be created the item stays queued and the
         * next enqueue tries again; nothing is freed under a user. */
    }
    w->next = NULL;
    if (g_tail)
        g_tail->next = w;
    else
        g_head = w;
    g_tail = w;
    pthread_cond_signal(&g_cv);
    pthread_mutex_unlock(&g_mu);
}

bool hcs_dispatch_op(struct hcs_op *op, struct hcs_handle *target, bool counted)
{
    struct work *w = calloc(1, sizeof *w);
    if (!w)
        return false;   /* ENOMEM: the op is still COMPLETED, waits still work */
    hcs_obj_ref(&op->obj);
    w->kind = WORK_OP;
    w->counted = counted;
    w->obj = &op->obj;
    if (target) {
        hcs_obj_ref(&target->obj);
        w->target = &target->obj;
    }
    enqueue(w);
    return true;
}

void hcs_dispatch_event(struct hcs_handle *h, uint32_t type, unsigned char *payload, size_t len)
{
    struct work *w = calloc(1, sizeof *w);
    if (!w) {
        free(payload);
        return;
    }
    hcs_obj_ref(&h->obj);
    w->kind = WORK_EVENT;
    w->obj = &h->obj;
    w->type = type;
    w->payload = payload;
    w->len = len;
    enqueue(w);
}
