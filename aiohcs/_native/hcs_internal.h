/*
 * hcs_internal.h — declarations shared by the library's .c files.
 * Nothing here is exported (the library is built with -fvisibility=hidden
 * and only HCSAPI functions are default-visible).
 */
#ifndef AIOHCS_HCS_INTERNAL_H
#define AIOHCS_HCS_INTERNAL_H

#define AIOHCS_BUILDING_LIBRARY 1
#include "computecore.h"

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>
#include <unistd.h>

/* ---- wire (hcs_frame.c) ------------------------------------------------ */
#define HCS_WIRE_MAGIC      0x53434841u
#define HCS_WIRE_VERSION    1u
#define HCS_WIRE_HDR_SIZE   48u
#define HCS_WIRE_MAX_PAYLOAD (16u * 1024u * 1024u)

enum { HCS_KIND_REQUEST = 1, HCS_KIND_REPLY = 2, HCS_KIND_EVENT = 3 };

enum hcs_opcode {
    HCS_OP_HELLO = 1, HCS_OP_ENUMERATE = 2, HCS_OP_CREATE_SYSTEM = 3, HCS_OP_OPEN_SYSTEM = 4,
    HCS_OP_CLOSE_SYSTEM = 5, HCS_OP_START = 6, HCS_OP_SHUTDOWN = 7, HCS_OP_TERMINATE = 8,
    HCS_OP_CRASH = 9, HCS_OP_PAUSE = 10, HCS_OP_RESUME = 11, HCS_OP_SAVE = 12,
    HCS_OP_GET_PROPERTIES = 13, HCS_OP_MODIFY = 14, HCS_OP_CREATE_PROCESS = 15,
    HCS_OP_OPEN_PROCESS = 16, HCS_OP_CLOSE_PROCESS = 17, HCS_OP_TERMINATE_PROCESS = 18,
    HCS_OP_SIGNAL_PROCESS = 19, HCS_OP_GET_PROCESS_INFO = 20, HCS_OP_GET_PROCESS_PROPERTIES = 21,
    HCS_OP_MODIFY_PROCESS = 22, HCS_OP_GET_SERVICE_PROPERTIES = 23,
    HCS_OP_MODIFY_SERVICE_SETTINGS = 24, HCS_OP_CANCEL = 25,
};

struct hcs_frame_hdr {
    uint32_t magic;
    uint16_t version;
    uint16_t kind;
    uint32_t op;
    uint32_t request_id;
    uint64_t handle;
    uint64_t new_handle;
    uint32_t arg;
    int32_t  hresult;
    uint32_t fdmask;
    uint32_t length;
};

void hcs_frame_encode(const struct hcs_frame_hdr *h, unsigned char out[HCS_WIRE_HDR_SIZE]);
void hcs_frame_decode(const unsigned char in[HCS_WIRE_HDR_SIZE], struct hcs_frame_hdr *h);
/* Write one frame (header + payload) with MSG_NOSIGNAL; 0 or -errno. */
int hcs_frame_write(int fd, const struct hcs_frame_hdr *h, const void *payload);
/* Read one whole frame.  *payload is malloc'ed (NULL when empty); fds[0..2]
 * receive the stdio fds named by fdmask (or -1), each >= 3 and CLOEXEC; any
 * other fd that arrived is closed.  Returns 0, -errno, or -EPROTO. */
int hcs_frame_read(int fd, struct hcs_frame_hdr *h, unsigned char **payload, int fds[3]);
/* fd helper: make sure a received fd is not 0-2 (so it can never be taken
 * for stdio by accident) and is close-on-exec. */
int hcs_fd_sanitize(int fd);

/* ---- UTF-16 <-> UTF-8 (hcs_utf16.c) ------------------------------------ */
/* Convert a NUL-terminated UTF-16 string.  An empty string gives *out=NULL,
 * *len=0 (callers treat "" exactly like NULL).  Lone surrogates and strings
 * longer than the wire allows -> E_INVALIDARG. */
HRESULT hcs_utf16_to_utf8(PCWSTR in, char **out, size_t *len);
/* Convert len UTF-8 bytes into a new NUL-terminated UTF-16 string (malloc,
 * freed with LocalFree).  Malformed input becomes U+FFFD.  NULL on ENOMEM. */
PWSTR hcs_utf8_to_utf16(const char *in, size_t len);
/* Store a copy of a UTF-8 document in *out (NULL when len == 0).  Returns
 * S_OK or HCS_E_OPERATION_RESULT_ALLOCATION_FAILED. */
HRESULT hcs_result_string(const char *doc, size_t len, PWSTR *out);

/* ---- handle tables (hcs_handles.c) ------------------------------------- */
enum hcs_kind { HCS_KIND_OPERATION = 1, HCS_KIND_SYSTEM = 2, HCS_KIND_PROCESS = 3 };

/* Common header of every object a user handle can name.  The user never
 * sees this pointer: handles are the 'id' field cast to a pointer, looked up
 * in a locked table (hcs_obj_get), so a stale or garbage handle yields
 * E_HANDLE instead of touching freed memory. */
struct hcs_obj {
    uint64_t id;
    enum hcs_kind kind;
    int refs;                   /* atomic; the table holds one until close */
    pthread_mutex_t mu;         /* guards the object's mutable fields */
    pthread_cond_t cv;          /* CLOCK_MONOTONIC; state changes, callback exit */
    bool closed;                /* HcsClose* called; no callback after that */
    int cb_running;             /* invocations of the user callback now running */
    pthread_t cb_thread;        /* ... and the thread running it */
    void (*destroy)(struct hcs_obj *);
    struct hcs_obj *hnext;      /* hash chain */
};

void hcs_obj_init(struct hcs_obj *o, enum hcs_kind kind, void (*destroy)(struct hcs_obj *));
/* Insert into the table (assigns o->id); the table takes the caller's ref. */
void hcs_obj_publish(struct hcs_obj *o);
/* Look up a handle value; returns a new ref or NULL (E_HANDLE). */
struct hcs_obj *hcs_obj_get(const void *handle, enum hcs_kind kind);
struct hcs_obj *hcs_obj_get_id(uint64_t id, enum hcs_kind kind);
void hcs_obj_ref(struct hcs_obj *o);
void hcs_obj_unref(struct hcs_obj *o);
/* Remove from the table (handle becomes invalid) and drop the table's ref.
 * Returns false if it was already removed. */
bool hcs_obj_unpublish(struct hcs_obj *o);
static inline void *hcs_obj_handle(const struct hcs_obj *o) { return (void *)(uintptr_t)o->id; }
/* Collect refs to every system/process object bound to connection gen. */
size_t hcs_obj_collect_gen(uint64_t gen, struct hcs_obj ***out);
/* Callback gate: close waits for a running callback unless it is the caller. */
void hcs_obj_close_gate(struct hcs_obj *o);
int hcs_cond_timedwait_ms(pthread_cond_t *cv, pthread_mutex_t *mu, const struct timespec *deadline);
void hcs_deadline(struct timespec *ts, DWORD timeout_ms);

/* System and process handles share one struct. */
struct hcs_handle {
    struct hcs_obj obj;
    uint64_t gen;               /* connection generation the handle lives on */
    uint64_t system_id;         /* processes: the user handle of their system */
    bool disconnected;          /* its connection broke */
    bool cb_set;
    HCS_EVENT_OPTIONS cb_options;
    HCS_EVENT_CALLBACK cb;
    void *cb_context;
    bool exited;
    char *exit_doc;             /* SystemExitStatus / ProcessStatus (UTF-8) */
    size_t exit_len;
};

struct hcs_handle *hcs_handle_new(enum hcs_kind kind, uint64_t gen);
struct hcs_handle *hcs_handle_get(const void *h, enum hcs_kind kind);
/* HcsSet{ComputeSystem,Process}Callback */
HRESULT hcs_handle_set_callback(const void *h, enum hcs_kind kind, HCS_EVENT_OPTIONS opts,
                                const void *ctx, HCS_EVENT_CALLBACK cb);
void hcs_handle_close(const void *h, enum hcs_kind kind);
HRESULT hcs_handle_wait_exit(const void *h, enum hcs_kind kind, DWORD timeout_ms, PWSTR *result);
/* Reader thread: an event arrived for handle id on connection gen. */
void hcs_handle_on_event(uint64_t gen, uint64_t id, uint32_t type, unsigned char *payload, size_t len);
/* Reader thread: connection gen broke. */
void hcs_handle_on_disconnect(uint64_t gen);

/* ---- operations (hcs_operation.c) --------------------------------------- */
enum hcs_op_state { HCS_OPSTATE_IDLE, HCS_OPSTATE_RUNNING, HCS_OPSTATE_COMPLETED };

struct hcs_op {
    struct hcs_obj obj;
    enum hcs_op_state state;
    HCS_OPERATION_TYPE type;
    const void *context;
    HCS_OPERATION_COMPLETION cb;
    HCS_EVENT_CALLBACK ecb;     /* HcsCreateOperationWithNotifications */
    struct hcs_handle *target;  /* ref: handle the call was made on (or created) */
    uint64_t system_id, process_id;
    uint32_t request_id;        /* on the wire while running; 0 until the request is written */
    uint64_t gen;
    uint64_t run;               /* bumped by every hcs_op_begin: which call is current */
    bool cancel_requested;      /* HcsCancelOperation came before request_id was known */
    bool routed;                /* this call's completion goes to its handle's callback */
    int deliveries;             /* completions queued or being delivered to a callback */
    bool delivering;            /* the dispatcher is delivering one of them now */
    HRESULT hr;
    char *doc;
    size_t doc_len;
    uint32_t pid;
    int fds[3];                 /* unclaimed stdio fds, -1 when none */
};

struct hcs_op *hcs_op_get(const void *h);
/* Move an op to RUNNING for a call of 'type' on 'target' (may be NULL).
 * Fails with HCS_E_OPERATION_ALREADY_STARTED or _SYSTEM_CALLBACK_ALREADY_SET. */
HRESULT hcs_op_begin(struct hcs_op *op, HCS_OPERATION_TYPE type, struct hcs_handle *target,
                     uint64_t system_id, uint64_t process_id);
/* The call failed before reaching the service: complete with hr, no callback. */
void hcs_op_fail_sync(struct hcs_op *op, HRESULT hr);

/* ---- connection (hcs_conn.c) -------------------------------------------- */
struct hcs_reply {
    HRESULT hr;
    uint32_t arg;
    unsigned char *payload;     /* owned by the receiver of the reply */
    size_t len;
    int fds[3];
};

/* A request waiting for its reply.  complete() runs on the reader thread
 * (or on the thread that finds the connection broken) and takes ownership
 * of the reply's payload and fds.  It must not call user code. */
struct hcs_pending {
    uint32_t request_id;
    void (*complete)(struct hcs_pending *p, struct hcs_reply *r);
    struct hcs_pending *next;
};

/* Open the connection if needed; *gen = its generation.  Fails with
 * HCS_E_SERVICE_NOT_AVAILABLE (or the HELLO's failure HRESULT). */
HRESULT hcs_conn_ensure(uint64_t *gen);
uint32_t hcs_conn_next_request_id(void);
/* Send a request on connection 'gen'.  If p is not NULL it is registered
 * under p->request_id (set by the caller) before the frame is written. Returns
 * S_OK (then p->complete will run exactly once), or a failure (then it will
 * not): HCS_E_SERVICE_DISCONNECT when gen is no longer the live connection. */
HRESULT hcs_conn_request(uint64_t gen, uint32_t op, uint64_t handle, uint64_t new_handle, uint32_t arg,
                         const void *payload, size_t len, struct hcs_pending *p);
/* Synchronous request (never called on the reader thread): connect if
 * needed, send, block for the reply.  The reply's payload and fds are
 * handed to the caller. */
HRESULT hcs_conn_call(uint64_t gen_or_zero, uint32_t op, uint64_t handle, uint64_t new_handle,
                      uint32_t arg, const void *payload, size_t len, struct hcs_reply *out);
bool hcs_conn_is_live(uint64_t gen);
/* Async request on behalf of an operation (pending ref'ed to the op). */
HRESULT hcs_op_send(struct hcs_op *op, uint64_t gen, uint32_t opcode, uint64_t handle,
                    uint64_t new_handle, uint32_t arg, const void *payload, size_t len);

/* ---- dispatcher (hcs_dispatch.c) ----------------------------------------- */
/* Queue a completion callback for op (takes new refs).  target is the
 * handle the completed call was made on, captured at completion time.
 * counted: op->deliveries was raised for this item; the dispatcher lowers
 * it when the callback has returned.  Returns false (nothing queued, nothing
 * lowered) when out of memory. */
bool hcs_dispatch_op(struct hcs_op *op, struct hcs_handle *target, bool counted);
/* Queue an event for a handle (takes a new ref; takes ownership of payload). */
void hcs_dispatch_event(struct hcs_handle *h, uint32_t type, unsigned char *payload, size_t len);
bool hcs_dispatch_on_thread(void);
/* Run the handle's event callback with *ev through the callback gate. */
void hcs_handle_invoke(struct hcs_handle *h, HCS_EVENT *ev, bool op_completion);

/* ---- fork() (registered in hcs_conn.c) ----------------------------------- */
/* The child of a fork has only the forking thread: no reader, no dispatcher,
 * and any library lock another thread held would stay locked forever.  The
 * prepare phase takes the short-held global locks, parent releases them,
 * child releases them and forgets the parent's connection and queued work,
 * so the child can use the library afresh (the parent's handles are dead
 * there: calls on them give HCS_E_SERVICE_DISCONNECT). */
enum hcs_fork_phase { HCS_FORK_PREPARE, HCS_FORK_PARENT, HCS_FORK_CHILD };
void hcs_dispatch_atfork(enum hcs_fork_phase ph);
void hcs_obj_atfork(enum hcs_fork_phase ph);

/* ---- misc ----------------------------------------------------------------- */
static inline void hcs_close_fd(int *fd) {
    if (*fd >= 0) { close(*fd); *fd = -1; }
}

#endif
