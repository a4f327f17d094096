/*
 * hcs_handles.c — the table that turns user handle values into objects.
 *
 * Handles given to the user are 64-bit ids cast to pointers, never
 * addresses.  Ids come from a counter that never repeats, so a handle that
 * was closed stays invalid forever (no ABA), and any garbage value simply
 * misses the table: E_HANDLE, not a crash.  Objects are reference counted;
 * the table holds one reference from publish to close, and every API call
 * holds its own for as long as it touches the object, so closing a handle
 * on one thread while another thread is inside a call with it is safe.
 */
#include "hcs_internal.h"

#include <errno.h>
#include <stdlib.h>

#define NBUCKETS 1024u

static pthread_mutex_t g_table_mu = PTHREAD_MUTEX_INITIALIZER;
static struct hcs_obj *g_buckets[NBUCKETS];
/* Start well away from small integers so that (void *)1, 2, ... and
 * HANDLE-as-fd confusions are always invalid; low 2 bits keep the kind so a
 * system handle passed as an operation is also E_HANDLE without a lookup
 * hit on the wrong kind.  Guarded by g_table_mu. */
static uint64_t g_next_seq = 0x10000;

static size_t bucket_of(uint64_t id) { return (size_t)((id >> 2) * 0x9E3779B97F4A7C15ull >> 54) % NBUCKETS; }

void hcs_obj_init(struct hcs_obj *o, enum hcs_kind kind, void (*destroy)(struct hcs_obj *))
{
    o->id = 0;
    o->kind = kind;
    o->refs = 1;
    pthread_mutex_init(&o->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    /* Timed waits must not jump with the wall clock. */
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&o->cv, &ca);
    pthread_condattr_destroy(&ca);
    o->closed = false;
    o->cb_running = 0;
    o->destroy = destroy;
    o->hnext = NULL;
}

void hcs_obj_publish(struct hcs_obj *o)
{
    pthread_mutex_lock(&g_table_mu);
    o->id = (g_next_seq++ << 2) | (uint64_t)o->kind;
    size_t b = bucket_of(o->id);
    o->hnext = g_buckets[b];
    g_buckets[b] = o;
    pthread_mutex_unlock(&g_table_mu);
}

struct hcs_obj *hcs_obj_get_id(uint64_t id, enum hcs_kind kind)
{
    if (id == 0 || (id & 3u) != (uint64_t)kind)
        return NULL;
    struct hcs_obj *found = NULL;
    pthread_mutex_lock(&g_table_mu);
    for (struct hcs_obj *o = g_buckets[bucket_of(id)]; o; o = o->hnext) {
        if (o->id == id) {
            if (o->kind == kind) {
                __atomic_add_fetch(&o->refs, 1, __ATOMIC_RELAXED);
                found = o;
            }
            break;
        }
    }
    pthread_mutex_unlock(&g_table_mu);
    return found;
}

struct hcs_obj *hcs_obj_get(const void *handle, enum hcs_kind kind)
{
    return hcs_obj_get_id((uint64_t)(uintptr_t)handle, kind);
}

void hcs_obj_atfork(enum hcs_fork_phase ph)
{
    /* The table lock is only held for short, non-blocking sections, so
     * taking it before fork() cannot stall the fork for long. */
    if (ph == HCS_FORK_PREPARE)
        pthread_mutex_lock(&g_table_mu);
    else
        pthread_mutex_unlock(&g_table_mu);
}

void hcs_obj_ref(struct hcs_obj *o)
{
    __atomic_add_fetch(&o->refs, 1, __ATOMIC_RELAXED);
}

void hcs_obj_unref(struct hcs_obj *o)
{
    if (!o)
        return;
    if (__atomic_sub_fetch(&o->refs, 1, __ATOMIC_ACQ_REL) == 0) {
        if (o->destroy)
            o->destroy(o);
        pthread_mutex_destroy(&o->mu);
        pthread_cond_destroy(&o->cv);
        free(o);
    }
}

bool hcs_obj_unpublish(struct hcs_obj *o)
{
    bool removed = false;
    pthread_mutex_lock(&g_table_mu);
    struct hcs_obj **pp = &g_buckets[bucket_of(o->id)];
    for (; *pp; pp = &(*pp)->hnext) {
        if (*pp == o) {
            *pp = o->hnext;
            o->hnext = NULL;
            removed = true;
            break;
        }
    }
    pthread_mutex_unlock(&g_table_mu);
    if (removed)
        hcs_obj_unref(o);       /* the table's reference */
    return removed;
}

size_t hcs_obj_collect_gen(uint64_t gen, struct hcs_obj ***out)
{
    size_t n = 0, cap = 0;
    struct hcs_obj **v = NULL;
    pthread_mutex_lock(&g_table_mu);
    for (size_t b = 0; b < NBUCKETS; b++) {
        for (struct hcs_obj *o = g_buckets[b]; o; o = o->hnext) {
            if (o->kind != HCS_KIND_SYSTEM && o->kind != HCS_KIND_PROCESS)
                continue;
            /* gen is written once, before publish, so reading it here under
             * the table lock is race-free. */
            if (((struct hcs_handle *)o)->gen != gen)
                continue;
            if (n == cap) {
                size_t ncap = cap ? cap * 2 : 16;
                struct hcs_obj **nv = realloc(v, ncap * sizeof *nv);
                if (!nv)
                    goto out;   /* best effort: handles missed here still fail
                                   their next call with SERVICE_DISCONNECT */
                v = nv;
                cap = ncap;
            }
            __atomic_add_fetch(&o->refs, 1, __ATOMIC_RELAXED);
            v[n++] = o;
        }
    }
out:
    pthread_mutex_unlock(&g_table_mu);
    *out = v;
    return n;
}

void hcs_obj_close_gate(struct hcs_obj *o)
{
    /* Caller holds o->mu and has already cleared the callback, so no new
     * invocation can start.  Wait for one that is running, unless we are
     * inside it (closing a handle from its own callback must not deadlock). */
    pthread_t self = pthread_self();
    while (o->cb_running > 0 && !pthread_equal(o->cb_thread, self))
        pthread_cond_wait(&o->cv, &o->mu);
}

void hcs_deadline(struct timespec *ts, DWORD timeout_ms)
{
    clock_gettime(CLOCK_MONOTONIC, ts);
    ts->tv_sec += timeout_ms / 1000;
    ts->tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000L;
    }
}

/* deadline NULL = wait forever.  Returns 0 or ETIMEDOUT. */
int hcs_cond_timedwait_ms(pthread_cond_t *cv, pthread_mutex_t *mu, const struct timespec *deadline)
{
    if (!deadline) {
        pthread_cond_wait(cv, mu);
        return 0;
    }
    return pthread_cond_timedwait(cv, mu, deadline) == ETIMEDOUT ? ETIMEDOUT : 0;
}
