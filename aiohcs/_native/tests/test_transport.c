/*
 * test_transport.c — the client side of docs/protocol.md against a small
 * fake service that runs inside this test (a thread on a unix socket), so
 * threads, callbacks, fds, cancellation and disconnects are exercised under
 * ASan without the real host service.  The fake answers just enough:
 *   ENUMERATE        -> "[]"-like document
 *   CREATE_SYSTEM    -> id "dup": HCS_E_SYSTEM_ALREADY_EXISTS + ResultError;
 *                       config not starting with '{': HCS_E_INVALID_JSON
 *   OPEN_SYSTEM      -> id "missing": HCS_E_SYSTEM_NOT_FOUND
 *   START            -> ok
 *   TERMINATE        -> ok, then SystemExited event to that handle
 *   GET_PROPERTIES   -> never answered until CANCELled (E_ABORT)
 *   CREATE_PROCESS   -> pid 42, stdout = a pipe holding "hi\n", then a
 *                       ProcessExited event
 *   MODIFY_SERVICE_SETTINGS "die" -> the service drops the connection
 */
#define _GNU_SOURCE
#include "hcs_frame.c"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "testlib.h"

/* ------------------------------------------------------------------ fake */

static char g_sock_path[108];
static int g_listen_fd = -1;
static int g_connections;               /* how many clients connected */
static pthread_mutex_t g_fake_mu = PTHREAD_MUTEX_INITIALIZER;

static void fake_send(int fd, uint16_t kind, uint32_t op, uint32_t rid, uint64_t handle, uint32_t arg,
                      int32_t hr, const char *payload, int send_fd, uint32_t fdmask)
{
    unsigned char hdr[HCS_WIRE_HDR_SIZE];
    size_t len = payload ? strlen(payload) : 0;
    struct hcs_frame_hdr h = { .magic = HCS_WIRE_MAGIC, .version = 1, .kind = kind, .op = op,
                               .request_id = rid, .handle = handle, .arg = arg, .hresult = hr,
                               .fdmask = send_fd >= 0 ? fdmask : 0, .length = (uint32_t)len };
    hcs_frame_encode(&h, hdr);
    struct iovec iov[2] = { { hdr, sizeof hdr }, { (void *)payload, len } };
    union { struct cmsghdr a; char b[CMSG_SPACE(sizeof(int))]; } ctl;
    struct msghdr m = { .msg_iov = iov, .msg_iovlen = len ? 2 : 1 };
    if (send_fd >= 0) {
        m.msg_control = ctl.b;
        m.msg_controllen = sizeof ctl.b;
        struct cmsghdr *c = CMSG_FIRSTHDR(&m);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int));
        memcpy(CMSG_DATA(c), &send_fd, sizeof(int));
    }
    if (sendmsg(fd, &m, MSG_NOSIGNAL) < 0)
        perror("fake sendmsg");
}

/* CHECK from the fake's threads: counters touched atomically */
#define FAKE_CHECK(cond) do { \
    if (!(cond)) { \
        __atomic_add_fetch(&t_failures, 1, __ATOMIC_SEQ_CST); \
        fprintf(stderr, "%s:%d: fake service CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
    } \
} while (0)

static void reply(int fd, const struct hcs_frame_hdr *rq, int32_t hr, const char *doc)
{
    fake_send(fd, HCS_KIND_REPLY, rq->op, rq->request_id, 0, 0, hr, doc, -1, 0);
}

static void *fake_conn(void *arg)
{
    int fd = (int)(intptr_t)arg;
    uint32_t hung_rid = 0;              /* the GET_PROPERTIES waiting for CANCEL */
    uint32_t hung_op = 0;
    for (;;) {
        struct hcs_frame_hdr rq;
        unsigned char *p;
        int fds[3];
        if (hcs_frame_read(fd, &rq, &p, fds) != 0)
            break;
        const char *pl = p ? (const char *)p : "";
        FAKE_CHECK(rq.kind == HCS_KIND_REQUEST);
        switch (rq.op) {
        case HCS_OP_HELLO:
            FAKE_CHECK(strcmp(pl, "libcomputecore/1") == 0);
            reply(fd, &rq, 0, "{\"ProtocolVersion\":1,\"Service\":\"fake\"}");
            break;
        case HCS_OP_ENUMERATE:
            reply(fd, &rq, 0, "[{\"Id\":\"a\"}]");
            break;
        case HCS_OP_CREATE_SYSTEM: {
            FAKE_CHECK(rq.new_handle != 0);
            size_t idl = strlen(pl);
            const char *cfg = idl < rq.length ? pl + idl + 1 : "";
            if (strcmp(pl, "dup") == 0)
                reply(fd, &rq, (int32_t)0x8037010F,
                      "{\"Error\":-2143878897,\"ErrorMessage\":\"already exists\"}");
            else if (cfg[0] != '{')
                reply(fd, &rq, (int32_t)0x8037010D, "{\"Error\":-2143878899,\"ErrorMessage\":\"bad json\"}");
            else
                reply(fd, &rq, 0, NULL);
            break;
        }
        case HCS_OP_OPEN_SYSTEM:
            reply(fd, &rq, strcmp(pl, "missing") == 0 ? (int32_t)0x8037010E : 0, NULL);
            break;
        case HCS_OP_START:
            reply(fd, &rq, 0, NULL);
            break;
        case HCS_OP_TERMINATE:
            reply(fd, &rq, 0, NULL);
            fake_send(fd, HCS_KIND_EVENT, HcsEventSystemExited, 0, rq.handle, 0, 0,
                      "{\"Status\":0,\"ExitType\":\"ForcedExit\"}", -1, 0);
            break;
        case HCS_OP_GET_PROPERTIES:
            hung_rid = rq.request_id;
            hung_op = rq.op;
            break;
        case HCS_OP_CANCEL:
            if (rq.arg == hung_rid && hung_rid) {
                struct hcs_frame_hdr h = { .op = hung_op, .request_id = hung_rid };
                reply(fd, &h, (int32_t)0x80004004, NULL);
                hung_rid = 0;
            }
            break;
        case HCS_OP_CREATE_PROCESS: {
            int pp[2];
            REQUIRE(pipe(pp) == 0);
            REQUIRE(write(pp[1], "hi\n", 3) == 3);
            close(pp[1]);
            fake_send(fd, HCS_KIND_REPLY, rq.op, rq.request_id, 0, 42, 0, NULL, pp[0], 2u);
            close(pp[0]);
            fake_send(fd, HCS_KIND_EVENT, HcsEventProcessExited, 0, rq.new_handle, 0, 0,
                      "{\"ProcessId\":42,\"Exited\":true,\"ExitCode\":0,\"LastWaitResult\":0}", -1, 0);
            break;
        }
        case HCS_OP_GET_SERVICE_PROPERTIES:
            reply(fd, &rq, 0, "{\"Properties\":[]}");
            break;
        case HCS_OP_MODIFY_SERVICE_SETTINGS:
            if (strcmp(pl, "die") == 0) {
                free(p);
                goto out;
            }
            reply(fd, &rq, 0, NULL);
            break;
        case HCS_OP_CLOSE_SYSTEM:
        case HCS_OP_CLOSE_PROCESS:
            break;              /* no reply */
        default:
            reply(fd, &rq, (int32_t)0x80004001, NULL);
        }
        free(p);
        for (int i = 0; i < 3; i++)
            if (fds[i] >= 0)
                close(fds[i]);
    }
out:
    close(fd);
    return NULL;
}

static void *fake_accept(void *unused)
{
    (void)unused;
    for (;;) {
        int c = accept4(g_listen_fd, NULL, NULL, SOCK_CLOEXEC);
        if (c < 0)
            return NULL;
        pthread_mutex_lock(&g_fake_mu);
        g_connections++;
        pthread_mutex_unlock(&g_fake_mu);
        pthread_t t;
        pthread_create(&t, NULL, fake_conn, (void *)(intptr_t)c);
        pthread_detach(t);
    }
}

static void fake_start(void)
{
    snprintf(g_sock_path, sizeof g_sock_path, "/tmp/aiohcs-fake-%d.sock", (int)getpid());
    unlink(g_sock_path);
    g_listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    strcpy(sa.sun_path, g_sock_path);
    REQUIRE(bind(g_listen_fd, (struct sockaddr *)&sa, sizeof sa) == 0);
    REQUIRE(listen(g_listen_fd, 8) == 0);
    pthread_t t;
    pthread_create(&t, NULL, fake_accept, NULL);
    pthread_detach(t);
    setenv("AIOHCS_SOCKET", g_sock_path, 1);
}

/* ------------------------------------------------------------- helpers */

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

/* wait until count >= n or 5 s pass; returns the count */
static int flag_wait(struct flag *f, int n)
{
    struct timespec dl;
    clock_gettime(CLOCK_REALTIME, &dl);
    dl.tv_sec += 5;
    pthread_mutex_lock(&f->mu);
    while (f->count < n && pthread_cond_timedwait(&f->cv, &f->mu, &dl) != ETIMEDOUT)
        ;
    int c = f->count;
    pthread_mutex_unlock(&f->mu);
    return c;
}

static bool doc_has(PCWSTR doc, const char *needle)
{
    char *a = t_a(doc);
    bool r = a && strstr(a, needle) != NULL;
    free(a);
    return r;
}

/* ------------------------------------------------------------- tests */

static pthread_t g_main_thread;

struct cb_state {
    struct flag done;
    pthread_t thread;
    HRESULT hr;
    bool saw_doc;
    struct flag chained;
};

static void chained_cb(HCS_OPERATION op, void *ctx)
{
    struct cb_state *st = ctx;
    if (HcsGetOperationResult(op, NULL) == S_OK)
        flag_set(&st->chained);
    HcsCloseOperation(op);
}

/* completion callback: reads its result, starts another call, closes itself */
static void completion_cb(HCS_OPERATION op, void *ctx)
{
    struct cb_state *st = ctx;
    st->thread = pthread_self();
    PWSTR doc = NULL;
    st->hr = HcsGetOperationResult(op, &doc);
    st->saw_doc = doc_has(doc, "\"Id\"");
    LocalFree(doc);
    HCS_OPERATION next = HcsCreateOperation(st, chained_cb);
    if (next && HcsEnumerateComputeSystems(NULL, next) != S_OK)
        HcsCloseOperation(next);
    HcsCloseOperation(op);
    flag_set(&st->done);
}

static void test_frame_layout(void)
{
    struct hcs_frame_hdr h = { .magic = HCS_WIRE_MAGIC, .version = 1, .kind = 2, .op = 0x01020304,
                               .request_id = 5, .handle = 0x1122334455667788ull, .new_handle = 9,
                               .arg = 10, .hresult = (int32_t)0x8037010E, .fdmask = 2, .length = 7 };
    unsigned char b[48];
    hcs_frame_encode(&h, b);
    static const unsigned char want[48] = {
        0x41, 0x48, 0x43, 0x53, 1, 0, 2, 0, 4, 3, 2, 1, 5, 0, 0, 0,
        0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11, 9, 0, 0, 0, 0, 0, 0, 0,
        10, 0, 0, 0, 0x0E, 0x01, 0x37, 0x80, 2, 0, 0, 0, 7, 0, 0, 0,
    };
    CHECK(memcmp(b, want, 48) == 0);
}

static void test_sync_and_callback(void)
{
    HCS_OPERATION op = HcsCreateOperation(NULL, NULL);
    CHECK_HR(HcsEnumerateComputeSystems(NULL, op), S_OK);
    PWSTR doc = NULL;
    CHECK_HR(HcsWaitForOperationResult(op, 5000, &doc), S_OK);
    CHECK(doc_has(doc, "\"Id\":\"a\""));
    LocalFree(doc);
    CHECK(HcsGetOperationType(op) == HcsOperationTypeEnumerate);
    /* completed ops answer at once, and can be reused */
    CHECK_HR(HcsWaitForOperationResult(op, 0, NULL), S_OK);
    static const WCHAR empty[] = { 0 };
    CHECK_HR(HcsEnumerateComputeSystems(empty, op), S_OK);   /* "" == no query */
    CHECK_HR(HcsWaitForOperationResult(op, INFINITE, NULL), S_OK);
    HCS_PROCESS_INFORMATION pi;
    CHECK_HR(HcsGetOperationResultAndProcessInfo(op, &pi, NULL), E_INVALIDARG);
    HcsCloseOperation(op);

    static struct cb_state st = { .done = FLAG_INIT, .chained = FLAG_INIT };
    op = HcsCreateOperation(&st, completion_cb);
    CHECK_HR(HcsEnumerateComputeSystems(NULL, op), S_OK);
    CHECK(flag_wait(&st.done, 1) == 1);
    CHECK(!pthread_equal(st.thread, g_main_thread));
    CHECK_HR(st.hr, S_OK);
    CHECK(st.saw_doc);
    CHECK(flag_wait(&st.chained, 1) == 1);
    CHECK_HR(HcsGetOperationResult(op, NULL), E_HANDLE);   /* closed by its callback */
}

static struct flag g_cancel_cb = FLAG_INIT;
static void cancel_cb(HCS_OPERATION op, void *ctx) { (void)op; (void)ctx; flag_set(&g_cancel_cb); }

static struct flag g_sys_exit = FLAG_INIT, g_proc_exit = FLAG_INIT, g_opcb_event = FLAG_INIT;
static HCS_OPERATION g_routed_op;
static bool g_exit_doc_ok, g_proc_doc_ok;

static void sys_event_cb(HCS_EVENT *ev, void *ctx)
{
    (void)ctx;
    if (ev->Type == HcsEventSystemExited) {
        g_exit_doc_ok = doc_has(ev->EventData, "ForcedExit");
        flag_set(&g_sys_exit);
    } else if (ev->Type == HcsEventOperationCallback) {
        g_routed_op = ev->Operation;
        flag_set(&g_opcb_event);
    }
}

static void proc_event_cb(HCS_EVENT *ev, void *ctx)
{
    (void)ctx;
    if (ev->Type == HcsEventProcessExited) {
        g_proc_doc_ok = doc_has(ev->EventData, "\"ExitCode\":0");
        flag_set(&g_proc_exit);
    }
}

static void test_system_lifecycle(void)
{
    WCHAR *id = t_w("c1"), *cfg = t_w("{\"SchemaVersion\":{\"Major\":2,\"Minor\":1}}");
    HCS_OPERATION op = HcsCreateOperation(NULL, NULL);
    HCS_SYSTEM sys = NULL;
    CHECK_HR(HcsCreateComputeSystem(id, cfg, op, NULL, &sys), S_OK);
    REQUIRE(sys != NULL);
    CHECK(HcsGetComputeSystemFromOperation(op) == sys);
    CHECK_HR(HcsWaitForOperationResult(op, 5000, NULL), S_OK);
    CHECK_HR(HcsSetComputeSystemCallback(sys, HcsEventOptionNone, NULL, sys_event_cb), S_OK);
    CHECK_HR(HcsSetComputeSystemCallback(sys, HcsEventOptionNone, NULL, sys_event_cb),
             HCS_E_OPERATION_SYSTEM_CALLBACK_ALREADY_SET);
    CHECK_HR(HcsStartComputeSystem(sys, op, NULL), S_OK);
    CHECK_HR(HcsWaitForOperationResult(op, 5000, NULL), S_OK);
    CHECK(HcsGetOperationType(op) == HcsOperationTypeStart);

    /* a request the service sits on: timeouts, PENDING, ALREADY_STARTED, cancel */
    HCS_OPERATION slow = HcsCreateOperation(NULL, cancel_cb);
    CHECK_HR(HcsGetComputeSystemProperties(sys, slow, NULL), S_OK);
    CHECK_HR(HcsGetOperationResult(slow, NULL), HCS_E_OPERATION_PENDING);
    CHECK_HR(HcsWaitForOperationResult(slow, 0, NULL), HCS_E_OPERATION_TIMEOUT);
    double t0 = t_now();
    CHECK_HR(HcsWaitForOperationResult(slow, 100, NULL), HCS_E_OPERATION_TIMEOUT);
    double dt = t_now() - t0;
    CHECK(dt >= 0.09 && dt < 2.0);
    CHECK_HR(HcsStartComputeSystem(sys, slow, NULL), HCS_E_OPERATION_ALREADY_STARTED);
    CHECK(HcsGetOperationType(slow) == HcsOperationTypeGetProperties);
    CHECK_HR(HcsCancelOperation(slow), S_OK);
    CHECK_HR(HcsWaitForOperationResult(slow, 5000, NULL), E_ABORT);
    CHECK(flag_wait(&g_cancel_cb, 1) == 1);
    CHECK_HR(HcsCancelOperation(slow), S_OK);  /* completed: nothing to do */
    HcsCloseOperation(slow);
    CHECK(flag_wait(&g_cancel_cb, 2) == 1);     /* exactly once */

    /* process with a stdout pipe */
    WCHAR *params = t_w("{\"CommandLine\":\"/bin/echo hi\",\"CreateStdOutPipe\":true}");
    HCS_PROCESS proc = NULL;
    CHECK_HR(HcsCreateProcess(sys, params, op, NULL, &proc), S_OK);
    REQUIRE(proc != NULL);
    CHECK(HcsGetProcessFromOperation(op) == proc);
    CHECK_HR(HcsSetProcessCallback(proc, HcsEventOptionNone, NULL, proc_event_cb), S_OK);
    HCS_PROCESS_INFORMATION pi;
    memset(&pi, 0, sizeof pi);
    CHECK_HR(HcsWaitForOperationResultAndProcessInfo(op, 5000, &pi, NULL), S_OK);
    CHECK(pi.ProcessId == 42);
    CHECK(pi.StdInput == INVALID_HANDLE_VALUE);
    CHECK(pi.StdError == INVALID_HANDLE_VALUE);
    int outfd = (int)(intptr_t)pi.StdOutput;
    CHECK(outfd > 2);
    CHECK((fcntl(outfd, F_GETFD) & FD_CLOEXEC) != 0);
    char buf[16] = { 0 };
    CHECK(read(outfd, buf, sizeof buf - 1) == 3);
    CHECK(strcmp(buf, "hi\n") == 0);
    close(outfd);
    /* the fd is handed over once */
    CHECK_HR(HcsGetOperationResultAndProcessInfo(op, &pi, NULL), S_OK);
    CHECK(pi.StdOutput == INVALID_HANDLE_VALUE);
    PWSTR st = NULL;
    CHECK_HR(HcsWaitForProcessExit(proc, 5000, &st), S_OK);
    CHECK(doc_has(st, "\"Exited\":true"));
    LocalFree(st);
    /* the event may have arrived before the callback was set (the service
     * sends it right after the reply); only check it when it did come */
    if (flag_wait(&g_proc_exit, 1) == 1)
        CHECK(g_proc_doc_ok);
    HcsCloseProcess(proc);
    CHECK_HR(HcsWaitForProcessExit(proc, 0, NULL), E_HANDLE);

    /* exit wait timeout before the system exits */
    CHECK_HR(HcsWaitForComputeSystemExit(sys, 0, NULL), HCS_E_OPERATION_TIMEOUT);
    CHECK_HR(HcsWaitForComputeSystemExit(sys, 50, NULL), HCS_E_OPERATION_TIMEOUT);
    CHECK_HR(HcsTerminateComputeSystem(sys, op, NULL), S_OK);
    CHECK_HR(HcsWaitForOperationResult(op, 5000, NULL), S_OK);
    CHECK(flag_wait(&g_sys_exit, 1) == 1);
    CHECK(g_exit_doc_ok);
    PWSTR ex = NULL;
    CHECK_HR(HcsWaitForComputeSystemExit(sys, INFINITE, &ex), S_OK);
    CHECK(doc_has(ex, "ForcedExit"));
    LocalFree(ex);
    HcsCloseComputeSystem(sys);
    CHECK_HR(HcsStartComputeSystem(sys, op, NULL), E_HANDLE);

    /* failures carry a ResultError document */
    WCHAR *dup = t_w("dup"), *bad = t_w("not json");
    HCS_SYSTEM s2 = NULL;
    CHECK_HR(HcsCreateComputeSystem(dup, cfg, op, NULL, &s2), S_OK);
    PWSTR err = NULL;
    CHECK_HR(HcsWaitForOperationResult(op, 5000, &err), HCS_E_SYSTEM_ALREADY_EXISTS);
    CHECK(doc_has(err, "\"Error\""));
    LocalFree(err);
    HcsCloseComputeSystem(s2);
    CHECK_HR(HcsCreateComputeSystem(id, bad, op, NULL, &s2), S_OK);
    CHECK_HR(HcsWaitForOperationResult(op, 5000, &err), HCS_E_INVALID_JSON);
    CHECK(doc_has(err, "bad json"));
    LocalFree(err);
    HcsCloseComputeSystem(s2);

    /* open */
    WCHAR *missing = t_w("missing");
    CHECK_HR(HcsOpenComputeSystem(missing, GENERIC_ALL, &s2), HCS_E_SYSTEM_NOT_FOUND);
    CHECK(s2 == NULL);
    CHECK_HR(HcsOpenComputeSystem(id, GENERIC_ALL, &s2), S_OK);
    CHECK(s2 != NULL);

    /* operation-callback routing through the handle */
    CHECK_HR(HcsSetComputeSystemCallback(s2, HcsEventOptionEnableOperationCallbacks, NULL, sys_event_cb), S_OK);
    HCS_OPERATION with_cb = HcsCreateOperation(NULL, cancel_cb);
    CHECK_HR(HcsStartComputeSystem(s2, with_cb, NULL), HCS_E_OPERATION_SYSTEM_CALLBACK_ALREADY_SET);
    CHECK_HR(HcsGetOperationResult(with_cb, NULL), HCS_E_OPERATION_NOT_STARTED);
    HcsCloseOperation(with_cb);
    CHECK_HR(HcsStartComputeSystem(s2, op, NULL), S_OK);
    CHECK(flag_wait(&g_opcb_event, 1) == 1);
    CHECK(g_routed_op == op);
    CHECK_HR(HcsGetOperationResult(op, NULL), S_OK);
    HcsCloseComputeSystem(s2);

    PWSTR sp = NULL;
    CHECK_HR(HcsGetServiceProperties(NULL, &sp), S_OK);
    CHECK(doc_has(sp, "Properties"));
    LocalFree(sp);

    HcsCloseOperation(op);
    free(id); free(cfg); free(params); free(dup); free(bad); free(missing);
}

/* close from inside the handle's own callback, and from another thread
 * while the callback runs */
static struct flag g_slow_cb_in = FLAG_INIT;
static volatile int g_slow_cb_finished;
static HCS_SYSTEM g_self_close_sys;
static struct flag g_self_closed = FLAG_INIT;

static void slow_cb(HCS_EVENT *ev, void *ctx)
{
    (void)ctx;
    if (ev->Type != HcsEventSystemExited)
        return;
    flag_set(&g_slow_cb_in);
    usleep(200 * 1000);
    __atomic_store_n(&g_slow_cb_finished, 1, __ATOMIC_SEQ_CST);
}

static void self_close_cb(HCS_EVENT *ev, void *ctx)
{
    (void)ctx;
    if (ev->Type != HcsEventSystemExited)
        return;
    HcsCloseComputeSystem(g_self_close_sys);     /* must not deadlock */
    flag_set(&g_self_closed);
}

static void test_close_gates(void)
{
    WCHAR *id = t_w("c2"), *cfg = t_w("{}");
    HCS_OPERATION op = HcsCreateOperation(NULL, NULL);
    HCS_SYSTEM s = NULL;
    CHECK_HR(HcsCreateComputeSystem(id, cfg, op, NULL, &s), S_OK);
    CHECK_HR(HcsWaitForOperationResult(op, 5000, NULL), S_OK);
    CHECK_HR(HcsSetComputeSystemCallback(s, 0, NULL, slow_cb), S_OK);
    CHECK_HR(HcsTerminateComputeSystem(s, op, NULL), S_OK);
    CHECK(flag_wait(&g_slow_cb_in, 1) == 1);
    HcsCloseComputeSystem(s);                   /* waits for slow_cb */
    CHECK(__atomic_load_n(&g_slow_cb_finished, __ATOMIC_SEQ_CST) == 1);

    CHECK_HR(HcsCreateComputeSystem(id, cfg, op, NULL, &g_self_close_sys), S_OK);
    CHECK_HR(HcsWaitForOperationResult(op, 5000, NULL), S_OK);
    CHECK_HR(HcsSetComputeSystemCallback(g_self_close_sys, 0, NULL, self_close_cb), S_OK);
    CHECK_HR(HcsTerminateComputeSystem(g_self_close_sys, op, NULL), S_OK);
    CHECK(flag_wait(&g_self_closed, 1) == 1);
    CHECK_HR(HcsWaitForComputeSystemExit(g_self_close_sys, 0, NULL), E_HANDLE);
    HcsCloseOperation(op);
    free(id); free(cfg);
}

static struct flag g_disc_event = FLAG_INIT, g_disc_op = FLAG_INIT;
static HRESULT g_disc_hr;
static void disc_event_cb(HCS_EVENT *ev, void *ctx)
{
    (void)ctx;
    if (ev->Type == HcsEventServiceDisconnect)
        flag_set(&g_disc_event);
}
static void disc_op_cb(HCS_OPERATION op, void *ctx)
{
    (void)ctx;
    g_disc_hr = HcsGetOperationResult(op, NULL);
    flag_set(&g_disc_op);
}

struct waiter { HCS_SYSTEM s; HRESULT hr; };
static void *exit_waiter(void *arg)
{
    struct waiter *w = arg;
    w->hr = HcsWaitForComputeSystemExit(w->s, INFINITE, NULL);
    return NULL;
}

static void test_disconnect(void)
{
    WCHAR *id = t_w("c3"), *cfg = t_w("{}"), *die = t_w("die");
    HCS_OPERATION op = HcsCreateOperation(NULL, NULL);
    HCS_SYSTEM s = NULL;
    CHECK_HR(HcsCreateComputeSystem(id, cfg, op, NULL, &s), S_OK);
    CHECK_HR(HcsWaitForOperationResult(op, 5000, NULL), S_OK);
    CHECK_HR(HcsSetComputeSystemCallback(s, 0, NULL, disc_event_cb), S_OK);
    HCS_OPERATION pending = HcsCreateOperation(NULL, disc_op_cb);
    CHECK_HR(HcsGetComputeSystemProperties(s, pending, NULL), S_OK);   /* never answered */
    struct waiter w = { .s = s };
    pthread_t t;
    pthread_create(&t, NULL, exit_waiter, &w);
    usleep(50 * 1000);

    int before = g_connections;
    PWSTR res = NULL;
    CHECK_HR(HcsModifyServiceSettings(die, &res), HCS_E_SERVICE_DISCONNECT);
    CHECK(res == NULL);
    CHECK(flag_wait(&g_disc_op, 1) == 1);
    CHECK_HR(g_disc_hr, HCS_E_SERVICE_DISCONNECT);
    CHECK(flag_wait(&g_disc_event, 1) == 1);
    pthread_join(t, NULL);
    CHECK_HR(w.hr, HCS_E_SERVICE_DISCONNECT);
    CHECK_HR(HcsWaitForOperationResult(pending, 0, NULL), HCS_E_SERVICE_DISCONNECT);

    /* old handles stay allocated but are dead */
    CHECK_HR(HcsStartComputeSystem(s, op, NULL), HCS_E_SERVICE_DISCONNECT);
    CHECK_HR(HcsGetOperationResult(op, NULL), HCS_E_SERVICE_DISCONNECT);
    HcsCloseComputeSystem(s);
    CHECK_HR(HcsStartComputeSystem(s, op, NULL), E_HANDLE);

    /* the next call reconnects */
    CHECK_HR(HcsEnumerateComputeSystems(NULL, op), S_OK);
    CHECK_HR(HcsWaitForOperationResult(op, 5000, NULL), S_OK);
    CHECK(g_connections == before + 1);

    HcsCloseOperation(pending);
    HcsCloseOperation(op);
    free(id); free(cfg); free(die);
}

int main(void)
{
    g_main_thread = pthread_self();
    fake_start();
    test_frame_layout();
    test_sync_and_callback();
    test_system_lifecycle();
    test_close_gates();
    test_disconnect();
    close(g_listen_fd);
    unlink(g_sock_path);
    usleep(50 * 1000);          /* let the dispatcher finish the last callbacks */
    return t_done("test_transport");
}
