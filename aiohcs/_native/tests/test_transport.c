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
 *   ENUMERATE "hang" -> never answered until CANCELled (E_ABORT); any number
 *   HELLO            -> delayed by g_hello_delay_ms when that is set
 * and adversarial peers, also on MODIFY_SERVICE_SETTINGS:
 *   "garbage"   -> 48 bytes of junk instead of a reply
 *   "midframe"  -> half a reply, then the peer closes
 *   "bigreply"  -> a reply header announcing 16 MiB + 1 payload bytes
 *   "strayfds"  -> fds on a reply to an unknown request id, on an event and
 *                  on a reply whose fdmask does not name them; then a real reply
 *   "stall"     -> stops reading, waits 300 ms, sends junk, keeps the socket
 *                  open (not reading) for up to 5 s more
 */
#define _GNU_SOURCE
#include "hcs_frame.c"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sched.h>
#include <sys/wait.h>

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

static int g_hello_delay_ms;             /* atomic */
static int g_stall_release;             /* atomic: ends a "stall" early */

/* requests the fake sits on until they are cancelled */
#define MAX_HUNG 8192
struct hung { uint32_t rid, op; };

static void send_junk(int fd)
{
    unsigned char junk[HCS_WIRE_HDR_SIZE];
    memset(junk, 0x5A, sizeof junk);
    if (send(fd, junk, sizeof junk, MSG_NOSIGNAL) < 0)
        perror("fake junk");
}

/* adversarial behaviours; returns false when the connection must end now */
static bool fake_adversary(int fd, const struct hcs_frame_hdr *rq, const char *pl)
{
    if (strcmp(pl, "garbage") == 0) {
        send_junk(fd);
    } else if (strcmp(pl, "midframe") == 0) {
        unsigned char hdr[HCS_WIRE_HDR_SIZE];
        struct hcs_frame_hdr h = { .magic = HCS_WIRE_MAGIC, .version = 1, .kind = HCS_KIND_REPLY,
                                   .op = rq->op, .request_id = rq->request_id, .length = 100 };
        hcs_frame_encode(&h, hdr);
        if (send(fd, hdr, sizeof hdr, MSG_NOSIGNAL) < 0 || send(fd, "0123456789", 10, MSG_NOSIGNAL) < 0)
            perror("fake midframe");
        return false;
    } else if (strcmp(pl, "bigreply") == 0) {
        unsigned char hdr[HCS_WIRE_HDR_SIZE];
        struct hcs_frame_hdr h = { .magic = HCS_WIRE_MAGIC, .version = 1, .kind = HCS_KIND_REPLY,
                                   .op = rq->op, .request_id = rq->request_id,
                                   .length = HCS_WIRE_MAX_PAYLOAD + 1 };
        hcs_frame_encode(&h, hdr);
        if (send(fd, hdr, sizeof hdr, MSG_NOSIGNAL) < 0)
            perror("fake bigreply");
    } else if (strcmp(pl, "strayfds") == 0) {
        int pp[2];
        REQUIRE(pipe(pp) == 0);
        fake_send(fd, HCS_KIND_REPLY, rq->op, 0x7FFFFFF0u, 0, 0, 0, "stray", pp[0], 2u);  /* nobody's */
        fake_send(fd, HCS_KIND_EVENT, HcsEventSystemExited, 0, 0x7777, 0, 0, NULL, pp[1], 1u);  /* event */
        fake_send(fd, HCS_KIND_REPLY, rq->op, rq->request_id, 0, 0, 0, NULL, pp[0], 0u);  /* unnamed fd */
        close(pp[0]);
        close(pp[1]);
    } else if (strcmp(pl, "stall") == 0) {
        usleep(300 * 1000);         /* the client fills the socket meanwhile */
        send_junk(fd);
        for (int i = 0; i < 500 && !__atomic_load_n(&g_stall_release, __ATOMIC_SEQ_CST); i++)
            usleep(10 * 1000);
        return false;
    } else {
        return true;
    }
    return true;
}

static void *fake_conn(void *arg)
{
    int fd = (int)(intptr_t)arg;
    struct hung *hung = calloc(MAX_HUNG, sizeof *hung);
    size_t nhung = 0;
    REQUIRE(hung != NULL);
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
            if (__atomic_load_n(&g_hello_delay_ms, __ATOMIC_SEQ_CST))
                usleep((useconds_t)__atomic_load_n(&g_hello_delay_ms, __ATOMIC_SEQ_CST) * 1000);
            reply(fd, &rq, 0, "{\"ProtocolVersion\":1,\"Service\":\"fake\"}");
            break;
        case HCS_OP_ENUMERATE:
            if (strcmp(pl, "hang") == 0 && nhung < MAX_HUNG)
                hung[nhung++] = (struct hung){ rq.request_id, rq.op };
            else
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
            if (nhung < MAX_HUNG)
                hung[nhung++] = (struct hung){ rq.request_id, rq.op };
            break;
        case HCS_OP_CANCEL:
            for (size_t i = 0; i < nhung; i++) {
                if (hung[i].rid == rq.arg) {
                    struct hcs_frame_hdr h = { .op = hung[i].op, .request_id = hung[i].rid };
                    reply(fd, &h, (int32_t)0x80004004, NULL);
                    hung[i] = hung[--nhung];
                    break;
                }
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
            if (!fake_adversary(fd, &rq, pl)) {
                free(p);
                goto out;
            }
            if (strcmp(pl, "garbage") != 0 && strcmp(pl, "bigreply") != 0 && strcmp(pl, "strayfds") != 0)
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
    free(hung);
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

/* ------------------------------------------------ adversarial peers */

static int count_fds(void)
{
    int n = 0;
    char path[64];
    for (int fd = 0; fd < 4096; fd++) {
        snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
        if (access(path, F_OK) == 0)
            n++;
    }
    return n;
}

static int connections(void)
{
    pthread_mutex_lock(&g_fake_mu);
    int n = g_connections;
    pthread_mutex_unlock(&g_fake_mu);
    return n;
}

static void make_live(void)
{
    HCS_OPERATION op = HcsCreateOperation(NULL, NULL);
    CHECK_HR(HcsEnumerateComputeSystems(NULL, op), S_OK);
    CHECK_HR(HcsWaitForOperationResult(op, 5000, NULL), S_OK);
    HcsCloseOperation(op);
}

static void test_adversarial_peer(void)
{
    WCHAR *hang = t_w("hang");
    const char *breaking[] = { "garbage", "midframe", "bigreply" };
    for (size_t i = 0; i < sizeof breaking / sizeof *breaking; i++) {
        make_live();
        HCS_OPERATION pending = HcsCreateOperation(NULL, NULL);
        CHECK_HR(HcsEnumerateComputeSystems(hang, pending), S_OK);
        WCHAR *cmd = t_w(breaking[i]);
        PWSTR res = NULL;
        double t0 = t_now();
        CHECK_HR(HcsModifyServiceSettings(cmd, &res), HCS_E_SERVICE_DISCONNECT);
        CHECK(t_now() - t0 < 2.0);
        CHECK(res == NULL);
        CHECK_HR(HcsWaitForOperationResult(pending, 3000, NULL), HCS_E_SERVICE_DISCONNECT);
        HcsCloseOperation(pending);
        free(cmd);
    }

    /* fds nobody may keep: closed on arrival, and the connection survives */
    make_live();
    usleep(100 * 1000);                 /* old fake connections finish closing */
    int before_conn = connections();
    int before = count_fds();
    WCHAR *stray = t_w("strayfds");
    PWSTR res = NULL;
    CHECK_HR(HcsModifyServiceSettings(stray, &res), S_OK);
    CHECK(res == NULL);
    CHECK(count_fds() == before);
    make_live();
    CHECK(connections() == before_conn);
    free(stray);
    free(hang);
}

/* The peer stops reading while a writer is blocked on the full socket, then
 * sends junk.  The reader must still fail every pending request promptly:
 * it used to wait for the write lock that the blocked writer held. */
struct big_call { WCHAR *doc; HRESULT hr; };
static void *stall_cmd_thread(void *arg)
{
    WCHAR *cmd = t_w("stall");
    *(HRESULT *)arg = HcsModifyServiceSettings(cmd, NULL);
    free(cmd);
    return NULL;
}
static void *big_writer_thread(void *arg)
{
    struct big_call *b = arg;
    usleep(50 * 1000);
    b->hr = HcsModifyServiceSettings(b->doc, NULL);
    return NULL;
}

static void test_stalled_peer_with_blocked_writer(void)
{
    make_live();
    WCHAR *hang = t_w("hang");
    HCS_OPERATION pending = HcsCreateOperation(NULL, NULL);
    CHECK_HR(HcsEnumerateComputeSystems(hang, pending), S_OK);
    size_t n = 4u * 1024 * 1024;
    struct big_call b = { .doc = malloc((n + 1) * sizeof(WCHAR)) };
    for (size_t i = 0; i < n; i++)
        b.doc[i] = 'a';
    b.doc[n] = 0;
    HRESULT stall_hr = S_OK;
    __atomic_store_n(&g_stall_release, 0, __ATOMIC_SEQ_CST);
    pthread_t ts, tb;
    pthread_create(&ts, NULL, stall_cmd_thread, &stall_hr);
    pthread_create(&tb, NULL, big_writer_thread, &b);
    double t0 = t_now();
    CHECK_HR(HcsWaitForOperationResult(pending, 3000, NULL), HCS_E_SERVICE_DISCONNECT);
    CHECK(t_now() - t0 < 2.5);
    __atomic_store_n(&g_stall_release, 1, __ATOMIC_SEQ_CST);
    pthread_join(ts, NULL);
    pthread_join(tb, NULL);
    CHECK_HR(stall_hr, HCS_E_SERVICE_DISCONNECT);
    CHECK_HR(b.hr, HCS_E_SERVICE_DISCONNECT);
    HcsCloseOperation(pending);
    free(b.doc);
    free(hang);
}

/* A cancel that arrives while the call is still connecting (HELLO) must not
 * be lost: the service would sit on the request forever. */
struct enum_call { HCS_OPERATION op; WCHAR *q; HRESULT hr; };
static void *enum_thread(void *arg)
{
    struct enum_call *e = arg;
    e->hr = HcsEnumerateComputeSystems(e->q, e->op);
    return NULL;
}

static void test_cancel_while_connecting(void)
{
    make_live();
    WCHAR *die = t_w("die");
    CHECK_HR(HcsModifyServiceSettings(die, NULL), HCS_E_SERVICE_DISCONNECT);
    __atomic_store_n(&g_hello_delay_ms, 400, __ATOMIC_SEQ_CST);
    struct enum_call e = { .op = HcsCreateOperation(NULL, NULL), .q = t_w("hang") };
    pthread_t t;
    pthread_create(&t, NULL, enum_thread, &e);
    usleep(150 * 1000);                 /* the call is inside HELLO now */
    CHECK_HR(HcsCancelOperation(e.op), S_OK);
    pthread_join(t, NULL);
    __atomic_store_n(&g_hello_delay_ms, 0, __ATOMIC_SEQ_CST);
    CHECK_HR(e.hr, S_OK);
    CHECK_HR(HcsWaitForOperationResult(e.op, 3000, NULL), E_ABORT);
    HcsCloseOperation(e.op);
    free(e.q);
    free(die);
}

/* A forked child (multiprocessing, os.fork) must get its own connection,
 * not write into the parent's with the parent's request ids. */
static void test_fork_child_reconnects(void)
{
    make_live();
    int before = connections();
    pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        alarm(10);
        HCS_OPERATION op = HcsCreateOperation(NULL, NULL);
        int rc = 0;
        if (HcsEnumerateComputeSystems(NULL, op) != S_OK)
            rc |= 1;
        PWSTR doc = NULL;
        if (HcsWaitForOperationResult(op, 3000, &doc) != S_OK)
            rc |= 2;
        if (!doc_has(doc, "\"Id\":\"a\""))
            rc |= 4;
        _exit(rc);                      /* no atexit/LSan in the child */
    }
    int status = 0;
    REQUIRE(waitpid(pid, &status, 0) == pid);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        fprintf(stderr, "fork child status 0x%x\n", status);
    CHECK(connections() == before + 1);
    make_live();                        /* the parent's connection is unharmed */
    CHECK(connections() == before + 1);
}

/* ------------------------------------------------------------- stress */

#define STRESS_THREADS 8
#define STRESS_OPS 500
static HCS_SYSTEM g_stress_sys;
static int g_stress_bad;                /* atomic: unexpected results */
static int g_stress_cb;                 /* atomic: callbacks run */

#define STRESS_BAD(what, hr) do { \
    __atomic_add_fetch(&g_stress_bad, 1, __ATOMIC_SEQ_CST); \
    fprintf(stderr, "stress: %s -> 0x%08X\n", what, (unsigned)(hr)); \
} while (0)

static void stress_cb(HCS_OPERATION op, void *ctx)
{
    __atomic_add_fetch(&g_stress_cb, 1, __ATOMIC_SEQ_CST);
    PWSTR doc = NULL;
    /* API.md §5.1: inside its completion callback the op is completed */
    HRESULT hr = HcsGetOperationResult(op, &doc);
    if (hr == HCS_E_OPERATION_PENDING || hr == HCS_E_OPERATION_NOT_STARTED)
        STRESS_BAD("result inside completion callback", hr);
    LocalFree(doc);
    if ((intptr_t)ctx == 1)
        HcsCloseOperation(op);          /* close inside its own callback */
}

static void stress_ecb(HCS_EVENT *ev, void *ctx)
{
    (void)ctx;
    __atomic_add_fetch(&g_stress_cb, 1, __ATOMIC_SEQ_CST);
    HcsGetOperationResult(ev->Operation, NULL);
}

/* Operations shared with the chaos thread, which cancels or closes them
 * from under their owner (waits then see E_HANDLE; reuse gets E_HANDLE). */
#define STRESS_SLOTS 64
static HCS_OPERATION g_slots[STRESS_SLOTS];
static int g_stress_stop;

static void *chaos_thread(void *arg)
{
    unsigned seed = (unsigned)(uintptr_t)arg;
    while (!__atomic_load_n(&g_stress_stop, __ATOMIC_SEQ_CST)) {
        unsigned r = (unsigned)rand_r(&seed);
        HCS_OPERATION op = __atomic_exchange_n(&g_slots[r % STRESS_SLOTS], NULL, __ATOMIC_SEQ_CST);
        if (!op) {
            sched_yield();
            continue;
        }
        HRESULT hr = HcsCancelOperation(op);   /* the op may be closed already */
        if (hr != S_OK && hr != E_HANDLE && hr != HCS_E_OPERATION_NOT_STARTED)
            STRESS_BAD("chaos cancel", hr);
        if ((r >> 8) % 3 == 0)
            HcsCloseOperation(op);
    }
    return NULL;
}

static void *stress_thread(void *arg)
{
    unsigned seed = (unsigned)(uintptr_t)arg;
    WCHAR hang[] = { 'h', 'a', 'n', 'g', 0 };
    WCHAR *params = t_w("{\"CommandLine\":\"x\",\"CreateStdOutPipe\":true}");
    HCS_OPERATION keep = NULL;
    for (int i = 0; i < STRESS_OPS; i++) {
        unsigned r = (unsigned)rand_r(&seed);
        HCS_OPERATION op;
        if (keep && (r & 1)) {
            op = keep;                  /* reuse a completed operation */
        } else {
            if (keep)
                HcsCloseOperation(keep);
            switch ((r >> 1) % 4) {
            case 0: op = HcsCreateOperation(NULL, NULL); break;
            case 1: op = HcsCreateOperation((void *)0, stress_cb); break;
            case 2: op = HcsCreateOperation((void *)1, stress_cb); break;
            default: op = HcsCreateOperationWithNotifications(0, NULL, stress_ecb); break;
            }
        }
        keep = NULL;
        int kind = (int)((r >> 3) % 4);
        HCS_PROCESS proc = NULL;
        HRESULT hr;
        switch (kind) {
        case 0: hr = HcsEnumerateComputeSystems(NULL, op); break;
        case 1: hr = HcsEnumerateComputeSystems(hang, op); break;
        case 2: hr = HcsCreateProcess(g_stress_sys, params, op, NULL, &proc); break;
        default: hr = HcsGetComputeSystemProperties(g_stress_sys, op, NULL); break;
        }
        if (hr == E_HANDLE || hr == HCS_E_OPERATION_ALREADY_STARTED) {
            /* a reused op that was closed (by its callback or the chaos
             * thread), or whose last completion is not delivered yet */
            HcsCloseOperation(op);
            continue;
        }
        if (hr != S_OK) {
            STRESS_BAD("start", hr);
            HcsCloseOperation(op);
            continue;
        }
        if ((r >> 10) % 4 == 0)
            __atomic_store_n(&g_slots[(r >> 12) % STRESS_SLOTS], op, __ATOMIC_SEQ_CST);
        bool hangs = kind == 1 || kind == 3;
        int act = (int)((r >> 5) % 4);
        if (act == 0) {
            HcsCloseOperation(op);      /* close while running; reply dropped */
            op = NULL;
        } else {
            if (act == 1 || hangs) {
                hr = HcsCancelOperation(op);
                if (hr != S_OK && hr != E_HANDLE)
                    STRESS_BAD("cancel", hr);
            }
            HCS_PROCESS_INFORMATION pi;
            hr = kind == 2 ? HcsWaitForOperationResultAndProcessInfo(op, 5000, &pi, NULL)
                           : HcsWaitForOperationResult(op, 5000, NULL);
            if (hr == S_OK && kind == 2) {
                if (pi.StdOutput != INVALID_HANDLE_VALUE)
                    close((int)(intptr_t)pi.StdOutput);
            } else if (hr != S_OK && hr != E_ABORT && hr != E_HANDLE) {
                STRESS_BAD("wait", hr);
            }
            if ((r >> 7) & 1) {
                keep = op;              /* reused next round (maybe) */
            } else if ((r >> 8) & 1) {
                /* leave unclaimed stdio fds on it: close must free them */
                HcsCloseOperation(op);
            } else {
                HcsCloseOperation(op);
            }
        }
        if (proc)
            HcsCloseProcess(proc);
    }
    if (keep)
        HcsCloseOperation(keep);
    free(params);
    return NULL;
}

static void test_stress(void)
{
    WCHAR *id = t_w("stress"), *cfg = t_w("{}"), *die = t_w("die");
    make_live();
    HCS_OPERATION op = HcsCreateOperation(NULL, NULL);
    CHECK_HR(HcsCreateComputeSystem(id, cfg, op, NULL, &g_stress_sys), S_OK);
    CHECK_HR(HcsWaitForOperationResult(op, 5000, NULL), S_OK);
    HcsCloseOperation(op);
    usleep(200 * 1000);
    int fds_before = count_fds();

    double t0 = t_now();
    pthread_t t[STRESS_THREADS], chaos;
    pthread_create(&chaos, NULL, chaos_thread, (void *)(uintptr_t)0xC4A05u);
    for (int i = 0; i < STRESS_THREADS; i++)
        pthread_create(&t[i], NULL, stress_thread, (void *)(uintptr_t)(0x1234u + (unsigned)i * 7919u));
    for (int i = 0; i < STRESS_THREADS; i++)
        pthread_join(t[i], NULL);
    __atomic_store_n(&g_stress_stop, 1, __ATOMIC_SEQ_CST);
    pthread_join(chaos, NULL);
    double dt = t_now() - t0;
    printf("stress: %d x %d operations in %.2f s, %d callbacks\n", STRESS_THREADS, STRESS_OPS, dt,
           __atomic_load_n(&g_stress_cb, __ATOMIC_SEQ_CST));
    CHECK(dt < 20.0);
    CHECK(__atomic_load_n(&g_stress_bad, __ATOMIC_SEQ_CST) == 0);
    HcsCloseComputeSystem(g_stress_sys);

    /* Requests closed while running still sit in the fake: dropping the
     * connection completes (and frees) them.  Then nothing may be left
     * open beyond the fresh connection. */
    CHECK_HR(HcsModifyServiceSettings(die, NULL), HCS_E_SERVICE_DISCONNECT);
    usleep(300 * 1000);
    make_live();
    usleep(100 * 1000);
    int fds_after = count_fds();
    CHECK(fds_after == fds_before);
    if (fds_after != fds_before)
        fprintf(stderr, "stress: %d fds before, %d after\n", fds_before, fds_after);
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
    test_adversarial_peer();
    test_stalled_peer_with_blocked_writer();
    test_cancel_while_connecting();
    test_fork_child_reconnects();
    test_stress();
    close(g_listen_fd);
    unlink(g_sock_path);
    usleep(50 * 1000);          /* let the dispatcher finish the last callbacks */
    return t_done("test_transport");
}
