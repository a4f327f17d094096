/* aiohcs-agent: the guest agent of the aiohcs utility VM.
 *
 * Protocol: docs/guest-agent.md. One concern per file:
 *   main.c      PID 1 duties, the poll loop, request dispatch
 *   frame.c     frame header codec, key=value records, the output queue
 *   channel.c   finding and driving the virtio-serial port ("host away")
 *   proc.c      create processes (pipes or pty), relay stdio, reap, exits
 *   proclist.c  the process list from /proc
 *   system.c    mounts, kernel modules, 9p, clock, power button, shutdown
 */
#ifndef AIOHCS_AGENT_H
#define AIOHCS_AGENT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define AGENT_VERSION_STRING "aiohcs-agent/0.1"
#define PROTO_VERSION 1
#define FRAME_MAGIC 0xA6C1u
#define FRAMING_VERSION 1
#define HDR_SIZE 16
#define MAX_FRAME 0xFFFF
#define MAX_PAYLOAD (MAX_FRAME - HDR_SIZE)
#define DATA_CHUNK 16384
#define WINDOW 65536u
#define PORT_NAME "org.aiohcs.agent"

enum msg_type {
	T_HELLO = 0x01,
	T_PING = 0x02,
	T_CREATE = 0x03,
	T_SIGNAL = 0x04,
	T_RESIZE = 0x05,
	T_PROCLIST = 0x07,
	T_MOUNT9P = 0x08,
	T_UNMOUNT = 0x09,
	T_SETTIME = 0x0A,
	T_SHUTDOWN = 0x0B,
	T_BIND = 0x0C,
	T_DATA = 0x20,
	T_CREDIT = 0x21,
	T_EXIT = 0x40,
	T_ERROR = 0x7F,
	T_REPLY = 0x80,
};

enum { S_STDIN = 0, S_STDOUT = 1, S_STDERR = 2 };

struct frame_hdr {
	uint8_t type;
	uint32_t req;
	uint32_t pid;
	uint8_t stream;
	uint16_t len;
};

/* ---- frame.c ---- */

/* A growable byte buffer for building payloads (records). */
struct buf {
	unsigned char *data;
	size_t len, cap;
	int failed; /* an allocation failed or the payload would exceed MAX_PAYLOAD */
};
void buf_put(struct buf *b, const void *p, size_t n);
void buf_kv(struct buf *b, const char *key, const char *value);
void buf_kvu(struct buf *b, const char *key, unsigned long long value);
void buf_free(struct buf *b);

/* key=value\0 records: iterate with rec_next (returns 0 at the end). */
struct rec_iter {
	const unsigned char *p, *end;
};
int rec_next(struct rec_iter *it, const char **key, size_t *klen, const char **val, size_t *vlen);
/* The first value of `key`, copied NUL-terminated into out (NULL if absent or too long). */
const char *rec_get(const unsigned char *p, size_t n, const char *key, char *out, size_t outsz);
int rec_valid(const unsigned char *p, size_t n);
int parse_u64(const char *s, unsigned long long max, unsigned long long *out);

void hdr_encode(unsigned char *out, const struct frame_hdr *h);
/* 1: a valid header decoded; 0: bad magic/version/check. */
int hdr_decode(const unsigned char *in, struct frame_hdr *h);

/* The output queue towards the host. Frames are queued whole; the channel
 * writes them out as the port accepts bytes. */
int outq_frame(uint8_t type, uint32_t req, uint32_t pid, uint8_t stream, const void *payload,
	       size_t len);
void outq_error(uint32_t req, uint32_t pid, int err, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
size_t outq_bytes(void);
int outq_empty(void);
/* Write as much as fd accepts; -1 with errno on a hard error, 0 otherwise. */
int outq_flush(int fd);

/* ---- channel.c ---- */
struct channel {
	int fd;
	int owns_fd;     /* test mode passes an fd we do not reopen */
	int host_away;   /* read returned EOF: retry on a timer, do not poll */
	int exit_on_eof; /* test mode: EOF means the harness is gone */
	unsigned char in[HDR_SIZE + MAX_PAYLOAD];
	size_t in_len;
	int garbage; /* inside a run of bad bytes: one ERROR per run */
};
/* Wait (polling sysfs) for the port named `name`; open it. -1 on failure. */
int channel_open_port(struct channel *c, const char *name, int timeout_ms);
/* Read what is there and call on_frame for each complete frame. Returns -1 on
 * a fatal condition (test mode EOF), 0 otherwise. */
int channel_read(struct channel *c, void (*on_frame)(const struct frame_hdr *, const unsigned char *));

/* ---- proc.c ---- */
struct pollfd;
void proc_init(void);
/* Handle T_CREATE; replies itself. */
void proc_create(uint32_t req, const unsigned char *p, size_t n);
void proc_signal(uint32_t req, uint32_t pid, const unsigned char *p, size_t n);
void proc_resize(uint32_t req, uint32_t pid, const unsigned char *p, size_t n);
void proc_data(uint32_t pid, uint8_t stream, const unsigned char *p, size_t n);
void proc_credit(uint32_t pid, uint8_t stream, const unsigned char *p, size_t n);
/* Reap every exited child (SIGCHLD). */
void proc_reap(void);
/* Add process fds to the poll set; returns the count added; *timeout_ms shrinks
 * to the next exit deadline. `out_ok` = may read process output now. */
int proc_pollfds(struct pollfd *pfd, int max, int out_ok, int *timeout_ms);
void proc_handle_poll(struct pollfd *pfd, int n);
void proc_timers(void);
int proc_count(void); /* processes not yet reaped */
void proc_kill_all(int sig);

/* ---- proclist.c ---- */
void proclist_reply(uint32_t req);

/* ---- system.c ---- */
void sys_early_mounts(void);
void sys_load_modules(const char *group);
void sys_mount9p(uint32_t req, const unsigned char *p, size_t n);
void sys_unmount(uint32_t req, const unsigned char *p, size_t n);
void sys_bind(uint32_t req, const unsigned char *p, size_t n);
void sys_settime(uint32_t req, const unsigned char *p, size_t n);
int sys_power_button_open(void); /* fd or -1 */
/* A small text file (sysfs attribute) into buf, NUL-terminated, trailing
 * newline dropped; its length, or -1 when missing or empty. */
int sys_read_line(const char *path, char *buf, size_t size);
/* Terminate everything and power off / reboot; never returns in PID 1 mode. */
void sys_shutdown(int poweroff, int grace_ms, struct channel *c);

/* ---- main.c ---- */
extern int g_pid1;  /* running as init in the VM (not the test harness) */
extern int g_debug; /* log every frame on the console */
extern pid_t g_late_pid; /* the child loading the "late" modules */
extern int g_late_done;  /* 1: it exited (set by proc_reap); 2: handled */
void logmsg(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
long long now_ms(void);

#endif
