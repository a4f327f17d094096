/*
 * hcs_conn.c — the one connection per process to the host service.
 *
 * Opened lazily by the first call that needs it ($AIOHCS_SOCKET, default
 * /run/aiohcs/hcs.sock), HELLO exchanged synchronously on the connecting
 * thread, then a reader thread owns the receive side.  The reader matches
 * replies to pending requests and routes events; it never runs user code
 * (it hands callbacks to the dispatcher thread), so a callback may call
 * back into the library.
 *
 * Every connection gets a new generation number.  Handles remember the
 * generation they were created on; when that connection breaks they stay
 * allocated but every call on them fails with HCS_E_SERVICE_DISCONNECT
 * (they name objects in a service table that no longer exists).
 *
 * Locks: g_mu (state, generation, pending list) and g_wmu (the fd used for
 * writing, and the serialisation of writes) are never held together, so a
 * writer blocked on a full socket can never stall the reader's reply
 * matching.
 */
#include "hcs_internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>

#define DEFAULT_SOCKET "/run/aiohcs/hcs.sock"
#define HELLO_TIMEOUT_S 10

static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static bool g_live;                     /* a connection is up */
static uint64_t g_gen;                  /* generation of the current/last connection */
static struct hcs_pending *g_pending;   /* requests awaiting a reply on g_gen */

static pthread_mutex_t g_wmu = PTHREAD_MUTEX_INITIALIZER;
static int g_wfd = -1;                  /* guarded by g_wmu */
static uint64_t g_wgen;                 /* generation g_wfd belongs to */

static uint32_t g_next_rid = 1;         /* atomic */

/* fork(): see hcs_internal.h.  Without this a child inherits g_live and the
 * parent's socket: its requests would go out on the parent's connection,
 * with request ids the parent is also using, so the parent's reader would
 * hand the child's replies to the parent's operations while the child (which
 * has no reader thread) waited forever.  The inherited copy of the socket
 * would also keep the parent's connection open after the parent is gone. */
static void atfork_prepare(void)
{
    /* g_mu first (connect_locked holds it while it takes g_wmu; nothing
     * holds the other two while taking g_mu).  g_wmu is not taken: a writer
     * can sit in sendmsg() on a full socket indefinitely, and fork() must
     * not wait for that. */
    pthread_mutex_lock(&g_mu);
    hcs_dispatch_atfork(HCS_FORK_PREPARE);
    hcs_obj_atfork(HCS_FORK_PREPARE);
}

static void atfork_parent(void)
{
    hcs_obj_atfork(HCS_FORK_PARENT);
    hcs_dispatch_atfork(HCS_FORK_PARENT);
    pthread_mutex_unlock(&g_mu);
}

static void atfork_child(void)
{
    hcs_obj_atfork(HCS_FORK_CHILD);
    hcs_dispatch_atfork(HCS_FORK_CHILD);
    /* Only this thread exists now.  g_wmu may have been held by a writer of
     * the parent: start it afresh.  Close the child's copy of the socket
     * (the parent keeps its own) and forget the pending requests: their
     * waiters are threads of the parent.  Their records are leaked on
     * purpose; completing them here would run the parent's callbacks in the
     * child. */
    pthread_mutex_init(&g_wmu, NULL);
    if (g_wfd >= 0)
        close(g_wfd);
    g_wfd = -1;
    g_live = false;
    g_pending = NULL;
    pthread_mutex_unlock(&g_mu);
}

__attribute__((constructor)) static void conn_init(void)
{
    pthread_atfork(atfork_prepare, atfork_parent, atfork_child);
}

uint32_t hcs_conn_next_request_id(void)
{
    uint32_t r;
    do
        r = __atomic_fetch_add(&g_next_rid, 1, __ATOMIC_RELAXED);
    while (r == 0);                     /* 0 is reserved for events */
    return r;
}

bool hcs_conn_is_live(uint64_t gen)
{
    pthread_mutex_lock(&g_mu);
    bool live = g_live && g_gen == gen;
    pthread_mutex_unlock(&g_mu);
    return live;
}

static struct hcs_pending *take_pending(uint64_t gen, uint32_t rid)
{
    struct hcs_pending *found = NULL;
    pthread_mutex_lock(&g_mu);
    if (g_gen == gen) {
        for (struct hcs_pending **pp = &g_pending; *pp; pp = &(*pp)->next) {
            if ((*pp)->request_id == rid) {
                found = *pp;
                *pp = found->next;
                found->next = NULL;
                break;
            }
        }
    }
    pthread_mutex_unlock(&g_mu);
    return found;
}

struct reader_arg {
    int fd;
    uint64_t gen;
};

static void connection_broken(int fd, uint64_t gen)
{
    pthread_mutex_lock(&g_mu);
    struct hcs_pending *list = NULL;
    if (g_gen == gen) {
        g_live = false;
        list = g_pending;
        g_pending = NULL;
    }
    pthread_mutex_unlock(&g_mu);

    /* A writer may be blocked in sendmsg() on a full socket, holding g_wmu,
     * because the peer stopped reading (e.g. it sent a garbage frame and
     * hung).  shutdown() needs no lock and wakes it with EPIPE; without it
     * we would wait for g_wmu forever and the pending requests above would
     * never be completed.  The fd stays open until the close below, so the
     * number cannot be reused under the writer. */
    shutdown(fd, SHUT_RDWR);

    /* Close under the write lock so no writer can be using the fd number,
     * which the kernel may hand to an unrelated open() right after. */
    pthread_mutex_lock(&g_wmu);
    if (g_wgen == gen && g_wfd == fd)
        g_wfd = -1;
    close(fd);
    pthread_mutex_unlock(&g_wmu);

    while (list) {
        struct hcs_pending *p = list;
        list = p->next;
        p->next = NULL;
        struct hcs_reply r = { .hr = HCS_E_SERVICE_DISCONNECT, .fds = { -1, -1, -1 } };
        p->complete(p, &r);
    }
    hcs_handle_on_disconnect(gen);
}

static void *reader_main(void *argp)
{
    struct reader_arg a = *(struct reader_arg *)argp;
    free(argp);
    for (;;) {
        struct hcs_frame_hdr h;
        unsigned char *payload;
        int fds[3];
        if (hcs_frame_read(a.fd, &h, &payload, fds) != 0)
            break;              /* EOF, error or protocol violation: all the same */
        if (h.kind == HCS_KIND_REPLY) {
            struct hcs_pending *p = take_pending(a.gen, h.request_id);
            if (p) {
                struct hcs_reply r = { .hr = h.hresult, .arg = h.arg, .payload = payload,
                                       .len = h.length, .fds = { fds[0], fds[1], fds[2] } };
                p->complete(p, &r);
                continue;
            }
            /* reply to nobody (e.g. a sync caller that never existed): drop */
        } else if (h.kind == HCS_KIND_EVENT) {
            for (int i = 0; i < 3; i++)
                hcs_close_fd(&fds[i]);       /* events never carry fds */
            hcs_handle_on_event(a.gen, h.handle, h.op, payload, h.length);
            continue;
        }
        free(payload);
        for (int i = 0; i < 3; i++)
            hcs_close_fd(&fds[i]);
    }
    connection_broken(a.fd, a.gen);
    return NULL;
}

/* Connect + HELLO.  Called with g_mu held and no live connection. */
static HRESULT connect_locked(void)
{
    const char *path = getenv("AIOHCS_SOCKET");
    if (!path || !*path)
        path = DEFAULT_SOCKET;
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    if (strlen(path) >= sizeof sa.sun_path)
        return HCS_E_SERVICE_NOT_AVAILABLE;
    strcpy(sa.sun_path, path);

    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return HCS_E_SERVICE_NOT_AVAILABLE;
    fd = hcs_fd_sanitize(fd);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        if (fd >= 0)
            close(fd);
        return HCS_E_SERVICE_NOT_AVAILABLE;
    }

    /* HELLO with a bounded wait: a socket that accepts but never answers
     * must not hang the first API call forever. */
    struct timeval tv = { .tv_sec = HELLO_TIMEOUT_S };
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    static const char hello[] = "libcomputecore/1";
    struct hcs_frame_hdr h = { .magic = HCS_WIRE_MAGIC, .version = HCS_WIRE_VERSION,
                               .kind = HCS_KIND_REQUEST, .op = HCS_OP_HELLO,
                               .request_id = hcs_conn_next_request_id(),
                               .length = sizeof hello - 1 };
    HRESULT hr = HCS_E_SERVICE_NOT_AVAILABLE;
    if (hcs_frame_write(fd, &h, hello) == 0) {
        struct hcs_frame_hdr rh;
        unsigned char *payload;
        int fds[3];
        if (hcs_frame_read(fd, &rh, &payload, fds) == 0) {
            for (int i = 0; i < 3; i++)
                hcs_close_fd(&fds[i]);
            free(payload);
            if (rh.kind == HCS_KIND_REPLY && rh.request_id == h.request_id)
                hr = rh.hresult < 0 ? rh.hresult : S_OK;
            else
                hr = HCS_E_PROTOCOL_ERROR;
        }
    }
    if (hr != S_OK) {
        close(fd);
        return hr;
    }
    tv.tv_sec = 0;
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);

    struct reader_arg *a = malloc(sizeof *a);
    if (!a) {
        close(fd);
        return E_OUTOFMEMORY;
    }
    uint64_t gen = g_gen + 1;
    a->fd = fd;
    a->gen = gen;

    pthread_mutex_lock(&g_wmu);
    g_wfd = fd;
    g_wgen = gen;
    pthread_mutex_unlock(&g_wmu);
    g_gen = gen;
    g_live = true;

    pthread_t t;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    int rc = pthread_create(&t, &attr, reader_main, a);
    pthread_attr_destroy(&attr);
    if (rc != 0) {
        g_live = false;
        pthread_mutex_lock(&g_wmu);
        g_wfd = -1;
        pthread_mutex_unlock(&g_wmu);
        close(fd);
        free(a);
        return E_OUTOFMEMORY;
    }
    return S_OK;
}

HRESULT hcs_conn_ensure(uint64_t *gen)
{
    HRESULT hr = S_OK;
    pthread_mutex_lock(&g_mu);
    if (!g_live)
        hr = connect_locked();
    *gen = g_gen;
    pthread_mutex_unlock(&g_mu);
    return hr;
}

HRESULT hcs_conn_request(uint64_t gen, uint32_t op, uint64_t handle, uint64_t new_handle, uint32_t arg,
                         const void *payload, size_t len, struct hcs_pending *p)
{
    if (len > HCS_WIRE_MAX_PAYLOAD)
        return E_INVALIDARG;
    pthread_mutex_lock(&g_mu);
    if (!g_live || g_gen != gen) {
        pthread_mutex_unlock(&g_mu);
        return HCS_E_SERVICE_DISCONNECT;
    }
    if (p) {
        /* Registered before the frame exists, so the reply cannot miss it. */
        p->next = g_pending;
        g_pending = p;
    }
    pthread_mutex_unlock(&g_mu);

    struct hcs_frame_hdr h = { .magic = HCS_WIRE_MAGIC, .version = HCS_WIRE_VERSION,
                               .kind = HCS_KIND_REQUEST, .op = op,
                               .request_id = p ? p->request_id : hcs_conn_next_request_id(),
                               .handle = handle, .new_handle = new_handle, .arg = arg,
                               .length = (uint32_t)len };
    int rc = -EPIPE;
    pthread_mutex_lock(&g_wmu);
    if (g_wfd >= 0 && g_wgen == gen)
        rc = hcs_frame_write(g_wfd, &h, len ? payload : NULL);
    if (rc != 0 && g_wfd >= 0 && g_wgen == gen) {
        /* A half-written frame desynchronises the stream: cut it so the
         * reader sees the break and fails everything cleanly. */
        shutdown(g_wfd, SHUT_RDWR);
    }
    pthread_mutex_unlock(&g_wmu);
    if (rc == 0)
        return S_OK;
    /* If we can still take our pending back, the request never happened and
     * the caller reports the failure; otherwise the broken-connection path
     * already owns it and will complete it exactly once. */
    if (p && take_pending(gen, p->request_id) != p)
        return S_OK;
    return HCS_E_SERVICE_DISCONNECT;
}

struct sync_call {
    struct hcs_pending p;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool done;
    struct hcs_reply r;
};

static void sync_complete(struct hcs_pending *p, struct hcs_reply *r)
{
    struct sync_call *s = (struct sync_call *)p;
    pthread_mutex_lock(&s->mu);
    s->r = *r;
    s->done = true;
    pthread_cond_signal(&s->cv);
    /* After this unlock the waiter may return and its stack frame (s) vanish. */
    pthread_mutex_unlock(&s->mu);
}

HRESULT hcs_conn_call(uint64_t gen, uint32_t op, uint64_t handle, uint64_t new_handle, uint32_t arg,
                      const void *payload, size_t len, struct hcs_reply *out)
{
    memset(out, 0, sizeof *out);
    out->fds[0] = out->fds[1] = out->fds[2] = -1;
    if (gen == 0) {
        HRESULT hr = hcs_conn_ensure(&gen);
        if (FAILED(hr))
            return hr;
    }
    struct sync_call s = { .p = { .request_id = hcs_conn_next_request_id(), .complete = sync_complete } };
    s.r.fds[0] = s.r.fds[1] = s.r.fds[2] = -1;
    pthread_mutex_init(&s.mu, NULL);
    pthread_cond_init(&s.cv, NULL);
    HRESULT hr = hcs_conn_request(gen, op, handle, new_handle, arg, payload, len, &s.p);
    if (SUCCEEDED(hr)) {
        /* No timeout: the service answers every request, and a broken
         * connection completes the pending with SERVICE_DISCONNECT. */
        pthread_mutex_lock(&s.mu);
        while (!s.done)
            pthread_cond_wait(&s.cv, &s.mu);
        pthread_mutex_unlock(&s.mu);
        *out = s.r;
        hr = s.r.hr;
    }
    pthread_mutex_destroy(&s.mu);
    pthread_cond_destroy(&s.cv);
    return hr;
}
