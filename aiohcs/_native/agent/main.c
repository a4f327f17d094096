/* aiohcs-agent main: PID 1 duties, the poll loop and request dispatch.
 *
 *   aiohcs-agent               as /init in the utility VM
 *   aiohcs-agent --fd N        test harness: fd N is the channel (a socket);
 *                              no mounts, EOF ends the agent
 */
#define _GNU_SOURCE
#include "agent.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#define HOST_AWAY_RETRY_MS 10
#define OUTQ_HIGH_WATER (1u << 20) /* stop reading process output above this */
#define MAX_POLL 1024

int g_pid1;
int g_debug;
pid_t g_late_pid = -1;
int g_late_done;
static struct channel chan;
static int shutdown_requested, shutdown_poweroff = 1, shutdown_grace = 2000;

long long now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void logmsg(const char *fmt, ...)
{
	char line[600];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(line, sizeof line - 1, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if (n > (int)sizeof line - 2)
		n = (int)sizeof line - 2;
	line[n++] = '\n';
	/* stderr is the console in the VM and the test's stderr on the host. */
	dprintf(2, "aiohcs-agent: %.*s", n, line);
}

static void hello_record(struct buf *b, unsigned version)
{
	struct utsname u;
	struct timespec up;
	char ups[32];
	clock_gettime(CLOCK_BOOTTIME, &up);
	snprintf(ups, sizeof ups, "%lld.%03ld", (long long)up.tv_sec, up.tv_nsec / 1000000);
	buf_kvu(b, "version", version);
	buf_kv(b, "agent", AGENT_VERSION_STRING);
	buf_kv(b, "kernel", uname(&u) == 0 ? u.release : "?");
	buf_kv(b, "uptime", ups);
	buf_kv(b, "features", "pipes,pty,signal,resize,proclist,9p,bind,settime,shutdown,powerbutton,credit");
}

static void on_hello(const struct frame_hdr *h, const unsigned char *p, size_t n)
{
	char v[16];
	unsigned long long lo = 1, hi = 1;
	if ((rec_get(p, n, "version_min", v, sizeof v) && parse_u64(v, 0xFFFF, &lo) < 0) ||
	    (rec_get(p, n, "version_max", v, sizeof v) && parse_u64(v, 0xFFFF, &hi) < 0)) {
		outq_error(h->req, 0, EINVAL, "HELLO: bad version_min/version_max");
		return;
	}
	if (lo > PROTO_VERSION || hi < 1 || lo > hi) {
		outq_error(h->req, 0, EOPNOTSUPP,
			   "HELLO: no common protocol version (agent speaks 1..%d, host %llu..%llu)",
			   PROTO_VERSION, lo, hi);
		return;
	}
	struct buf b = {0};
	hello_record(&b, hi < PROTO_VERSION ? (unsigned)hi : PROTO_VERSION);
	outq_frame(T_HELLO | T_REPLY, h->req, 0, 0, b.data, b.len);
	buf_free(&b);
}

static void on_shutdown(const struct frame_hdr *h, const unsigned char *p, size_t n)
{
	char v[32];
	unsigned long long grace = 2000;
	int poweroff = 1;
	if (rec_get(p, n, "mode", v, sizeof v)) {
		if (strcmp(v, "reboot") == 0)
			poweroff = 0;
		else if (strcmp(v, "poweroff") != 0) {
			outq_error(h->req, 0, EINVAL, "SHUTDOWN: mode must be poweroff or reboot");
			return;
		}
	}
	if (rec_get(p, n, "grace_ms", v, sizeof v) && parse_u64(v, 600000, &grace) < 0) {
		outq_error(h->req, 0, EINVAL, "SHUTDOWN: bad grace_ms");
		return;
	}
	outq_frame(T_SHUTDOWN | T_REPLY, h->req, 0, 0, NULL, 0);
	/* Leave the dispatch loop first: the reply goes out before we kill things. */
	shutdown_requested = 1;
	shutdown_poweroff = poweroff;
	shutdown_grace = (int)grace;
}

static void on_frame(const struct frame_hdr *h, const unsigned char *p)
{
	size_t n = h->len;
	switch (h->type) {
	case T_DATA:
		proc_data(h->pid, h->stream, p, n);
		return;
	case T_CREDIT:
		proc_credit(h->pid, h->stream, p, n);
		return;
	case T_PING:
		outq_frame(T_PING | T_REPLY, h->req, h->pid, 0, p, n);
		return;
	default:
		break;
	}
	/* Everything else is a request with a record payload. */
	if (!rec_valid(p, n)) {
		outq_error(h->req, h->pid, EINVAL, "payload of type %#x is not NUL-terminated records",
			   h->type);
		return;
	}
	switch (h->type) {
	case T_HELLO:
		on_hello(h, p, n);
		break;
	case T_CREATE:
		proc_create(h->req, p, n);
		break;
	case T_SIGNAL:
		proc_signal(h->req, h->pid, p, n);
		break;
	case T_RESIZE:
		proc_resize(h->req, h->pid, p, n);
		break;
	case T_PROCLIST:
		proclist_reply(h->req);
		break;
	case T_MOUNT9P:
		sys_mount9p(h->req, p, n);
		break;
	case T_UNMOUNT:
		sys_unmount(h->req, p, n);
		break;
	case T_BIND:
		sys_bind(h->req, p, n);
		break;
	case T_SETTIME:
		sys_settime(h->req, p, n);
		break;
	case T_SHUTDOWN:
		on_shutdown(h, p, n);
		break;
	default:
		outq_error(h->req, h->pid, EOPNOTSUPP, "unknown message type %#x", h->type);
	}
}

/* PID 1 in the VM: filesystems, console, modules, options from the cmdline. */
static void init_system(void)
{
	sys_early_mounts();
	/* The kernel passes unknown key=value cmdline words to init as environment. */
	const char *dbg = getenv("aiohcs_debug");
	g_debug = dbg && dbg[0] == '1';
	if (open("/dev/null", O_RDONLY) < 0) { /* make sure fds 0..2 exist: console */
	}
	setenv("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", 1);
	sys_load_modules("boot");
}

int main(int argc, char **argv)
{
	int test_fd = -1;
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--fd") == 0 && i + 1 < argc)
			test_fd = atoi(argv[++i]);
		else if (strcmp(argv[i], "--debug") == 0)
			g_debug = 1;
	}
	g_pid1 = getpid() == 1 && test_fd < 0;
	if (g_pid1)
		init_system();
	else
		prctl(PR_SET_CHILD_SUBREAPER, 1); /* like PID 1: orphans come to us */

	sigset_t mask;
	sigemptyset(&mask);
	sigaddset(&mask, SIGCHLD);
	sigprocmask(SIG_BLOCK, &mask, NULL);
	int sfd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
	signal(SIGPIPE, SIG_IGN);
	proc_init();

	if (test_fd >= 0) {
		chan.fd = test_fd;
		chan.exit_on_eof = 1;
		fcntl(test_fd, F_SETFD, FD_CLOEXEC);
		fcntl(test_fd, F_SETFL, O_NONBLOCK);
	} else if (channel_open_port(&chan, PORT_NAME, 30000) < 0) {
		logmsg("port %s not found", PORT_NAME);
		if (!g_pid1)
			return 1;
		sys_shutdown(1, 0, &chan); /* nothing to serve: power off rather than hang */
	}
	{
		struct buf b = {0};
		hello_record(&b, PROTO_VERSION);
		outq_frame(T_HELLO | T_REPLY, 0, 0, 0, b.data, b.len);
		buf_free(&b);
		outq_flush(chan.fd);
	}
	logmsg("ready");
	int power_fd = -1;
	if (g_pid1) {
		/* Not needed for the first hello: load them in a child so that requests
		 * are served meanwhile; the power button appears once they are in. */
		g_late_pid = fork();
		if (g_late_pid == 0) {
			sys_load_modules("late");
			_exit(0);
		}
		if (g_late_pid < 0) {
			sys_load_modules("late");
			g_late_done = 1;
		}
	}

	struct pollfd pfd[MAX_POLL];
	for (;;) {
		int n = 0, timeout = -1;
		int ch_slot = -1, sig_slot = -1, pw_slot = -1;
		pfd[n] = (struct pollfd){.fd = sfd, .events = POLLIN};
		sig_slot = n++;
		if (!chan.host_away) {
			pfd[n] = (struct pollfd){.fd = chan.fd,
						 .events = (short)(POLLIN | (outq_empty() ? 0 : POLLOUT))};
			ch_slot = n++;
		} else {
			timeout = HOST_AWAY_RETRY_MS;
		}
		if (power_fd >= 0) {
			pfd[n] = (struct pollfd){.fd = power_fd, .events = POLLIN};
			pw_slot = n++;
		}
		int out_ok = !chan.host_away && outq_bytes() < OUTQ_HIGH_WATER;
		int first_proc = n;
		n += proc_pollfds(pfd + n, MAX_POLL - n, out_ok, &timeout);
		int r = poll(pfd, (nfds_t)n, timeout);
		if (r < 0 && errno != EINTR) {
			logmsg("poll: %s", strerror(errno));
			usleep(10000);
			continue;
		}
		if (r > 0 && pfd[sig_slot].revents) {
			struct signalfd_siginfo si;
			while (read(sfd, &si, sizeof si) > 0)
				;
			proc_reap();
		}
		if (pw_slot >= 0 && pfd[pw_slot].revents) {
			logmsg("power button");
			sys_shutdown(1, 2000, &chan);
		}
		if (r > 0)
			proc_handle_poll(pfd + first_proc, n - first_proc);
		proc_timers();
		/* Host away: retry the port on a timer (poll would spin on POLLHUP). */
		if (chan.host_away || (ch_slot >= 0 && (pfd[ch_slot].revents & (POLLIN | POLLHUP | POLLERR)))) {
			if (channel_read(&chan, on_frame) < 0)
				break;
		}
		if (outq_flush(chan.fd) < 0 && !chan.exit_on_eof)
			chan.host_away = 1;
		if (g_late_done == 1) {
			g_late_done = 2;
			power_fd = sys_power_button_open();
			if (power_fd < 0)
				logmsg("no ACPI power button: system_powerdown will not work");
		}
		if (shutdown_requested)
			sys_shutdown(shutdown_poweroff, shutdown_grace, &chan);
	}
	/* Test harness: the host end closed. Leave no processes behind. */
	proc_kill_all(SIGKILL);
	return 0;
}
