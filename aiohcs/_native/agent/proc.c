/* Processes: create (pipes or a pty), relay stdio with credit-based flow
 * control, signals, resize, reaping and exit reports. */
#define _GNU_SOURCE
#include "agent.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#define MAX_ARGS 4096
#define EXIT_LINGER_MS 1000 /* EXIT waits this long for stdout/stderr EOF */

struct proc {
	struct proc *next;
	pid_t pid;
	int tty;
	int master;       /* pty master (tty mode), else -1; owns nothing else */
	int in_fd;        /* where stdin bytes go: pipe write end or the master; -1 = closed */
	unsigned char *in_buf; /* bytes from the host not yet written (≤ WINDOW) */
	size_t in_len;
	int in_eof;       /* the host ended stdin: close in_fd once in_buf is drained */
	int out_fd[3];    /* [1], [2]: pipe read ends or the master; -1 = at EOF */
	int out_discard[3]; /* host did not ask for it (tty without stdout): read and drop */
	uint32_t credit[3];
	int exited, exit_sent, status;
	long long exit_deadline;
};

static struct proc *procs;

void proc_init(void) {}

static struct proc *find(uint32_t pid)
{
	for (struct proc *p = procs; p; p = p->next)
		if ((uint32_t)p->pid == pid)
			return p;
	return NULL;
}

int proc_count(void)
{
	int n = 0;
	for (struct proc *p = procs; p; p = p->next)
		n += !p->exited;
	return n;
}

static void close_fd(int *fd)
{
	if (*fd >= 0)
		close(*fd);
	*fd = -1;
}

static void proc_free(struct proc *p)
{
	close_fd(&p->in_fd);
	close_fd(&p->out_fd[1]);
	close_fd(&p->out_fd[2]);
	close_fd(&p->master);
	free(p->in_buf);
	free(p);
}

/* ---------------------------------------------------------------- create */

struct spec {
	char **argv, **envp;
	size_t argc, envc;
	char cwd[4096];
	uid_t uid;
	gid_t gid;
	int want[3], tty;
	unsigned rows, cols;
};

static void spec_free(struct spec *s)
{
	for (size_t i = 0; i < s->argc; i++)
		free(s->argv[i]);
	for (size_t i = 0; i < s->envc; i++)
		free(s->envp[i]);
	free(s->argv);
	free(s->envp);
}

static int flag(const char *v, size_t vl, int *out)
{
	if (vl == 1 && (v[0] == '0' || v[0] == '1')) {
		*out = v[0] == '1';
		return 0;
	}
	return -1;
}

static int num(const char *v, size_t vl, unsigned long long max, unsigned long long *out)
{
	char tmp[24];
	if (vl >= sizeof tmp)
		return -1;
	memcpy(tmp, v, vl);
	tmp[vl] = 0;
	return parse_u64(tmp, max, out);
}

/* Parse a CREATE record into s; on error fills msg and returns -1. */
static int spec_parse(struct spec *s, const unsigned char *p, size_t n, char *msg, size_t msgsz)
{
	struct rec_iter it = {p, p + n};
	const char *k, *v;
	size_t kl, vl;
	s->argv = calloc(MAX_ARGS + 1, sizeof *s->argv);
	s->envp = calloc(MAX_ARGS + 1, sizeof *s->envp);
	if (!s->argv || !s->envp) {
		snprintf(msg, msgsz, "out of memory");
		return -1;
	}
	strcpy(s->cwd, "/");
	while (rec_next(&it, &k, &kl, &v, &vl)) {
#define KEY(name) (kl == sizeof(name) - 1 && memcmp(k, name, kl) == 0)
		unsigned long long u;
		if (KEY("arg") || KEY("env")) {
			int is_arg = k[0] == 'a';
			size_t *cnt = is_arg ? &s->argc : &s->envc;
			char **arr = is_arg ? s->argv : s->envp;
			if (*cnt >= MAX_ARGS) {
				snprintf(msg, msgsz, "too many %s entries", is_arg ? "arg" : "env");
				return -1;
			}
			if (!is_arg && !memchr(v, '=', vl)) {
				snprintf(msg, msgsz, "env entry without '='");
				return -1;
			}
			arr[*cnt] = strndup(v, vl);
			if (!arr[*cnt]) {
				snprintf(msg, msgsz, "out of memory");
				return -1;
			}
			(*cnt)++;
		} else if (KEY("cwd")) {
			if (vl == 0 || vl >= sizeof s->cwd) {
				snprintf(msg, msgsz, "bad cwd");
				return -1;
			}
			memcpy(s->cwd, v, vl);
			s->cwd[vl] = 0;
		} else if (KEY("user")) {
			const char *colon = memchr(v, ':', vl);
			size_t ul = colon ? (size_t)(colon - v) : vl;
			unsigned long long uid, gid;
			if (num(v, ul, 0xFFFFFFFEu, &uid) < 0 ||
			    (colon && num(colon + 1, vl - ul - 1, 0xFFFFFFFEu, &gid) < 0)) {
				snprintf(msg, msgsz, "user must be uid[:gid] (numbers)");
				return -1;
			}
			s->uid = (uid_t)uid;
			s->gid = colon ? (gid_t)gid : (gid_t)uid;
		} else if (KEY("stdin") || KEY("stdout") || KEY("stderr")) {
			int idx = kl == 5 ? S_STDIN : (k[3] == 'o' ? S_STDOUT : S_STDERR);
			if (flag(v, vl, &s->want[idx]) < 0) {
				snprintf(msg, msgsz, "%.*s must be 0 or 1", (int)kl, k);
				return -1;
			}
		} else if (KEY("tty")) {
			if (flag(v, vl, &s->tty) < 0) {
				snprintf(msg, msgsz, "tty must be 0 or 1");
				return -1;
			}
		} else if (KEY("rows") || KEY("cols")) {
			if (num(v, vl, 0xFFFF, &u) < 0) {
				snprintf(msg, msgsz, "%.*s must be 0..65535", (int)kl, k);
				return -1;
			}
			*(k[0] == 'r' ? &s->rows : &s->cols) = (unsigned)u;
		}
		/* unknown keys: ignored (newer hosts) */
#undef KEY
	}
	if (s->argc == 0) {
		snprintf(msg, msgsz, "no arg= entries");
		return -1;
	}
	if (s->envc == 0) {
		s->envp[0] = strdup("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
		s->envp[1] = strdup("HOME=/");
		s->envc = 2;
		if (!s->envp[0] || !s->envp[1]) {
			snprintf(msg, msgsz, "out of memory");
			return -1;
		}
	}
	if (s->tty)
		s->want[S_STDERR] = 0;
	return 0;
}

/* execve argv[0], searching PATH from the process's own environment like a
 * shell does; returns the errno that best explains the failure. */
static int exec_search(char **argv, char **envp)
{
	if (strchr(argv[0], '/')) {
		execve(argv[0], argv, envp);
		return errno;
	}
	const char *path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
	for (char **e = envp; *e; e++)
		if (strncmp(*e, "PATH=", 5) == 0)
			path = *e + 5;
	int err = ENOENT;
	char full[4096];
	while (*path) {
		const char *end = strchr(path, ':');
		size_t dl = end ? (size_t)(end - path) : strlen(path);
		if (dl == 0)
			snprintf(full, sizeof full, "./%s", argv[0]);
		else
			snprintf(full, sizeof full, "%.*s/%s", (int)dl, path, argv[0]);
		execve(full, argv, envp);
		if (errno == EACCES)
			err = EACCES; /* remember: a later ENOENT must not hide it */
		else if (errno != ENOENT && errno != ENOTDIR)
			err = errno;
		path += dl + (end ? 1 : 0);
	}
	return err;
}

/* In the child: never returns. Reports a failure as {errno, step} on errpipe. */
enum child_step { STEP_EXEC, STEP_STDIO, STEP_USER, STEP_CWD };

static void child(struct spec *s, int fds[3], int errpipe)
{
	sigset_t all;
	sigemptyset(&all);
	sigprocmask(SIG_SETMASK, &all, NULL);
	for (int sig = 1; sig < NSIG; sig++)
		signal(sig, SIG_DFL);
	int err = 0, step = STEP_STDIO;
	setsid();
	/* Move the three fds out of the way first so dup2 cannot clobber one with another. */
	int hi[3];
	for (int i = 0; i < 3; i++) {
		hi[i] = fcntl(fds[i], F_DUPFD_CLOEXEC, 10);
		if (hi[i] < 0) {
			err = errno;
			goto fail;
		}
	}
	for (int i = 0; i < 3; i++)
		if (dup2(hi[i], i) < 0) {
			err = errno;
			goto fail;
		}
	if (s->tty && ioctl(0, TIOCSCTTY, 0) < 0) {
		err = errno;
		goto fail;
	}
	step = STEP_USER;
	if (s->gid || s->uid) {
		if (setgroups(0, NULL) < 0 || setgid(s->gid) < 0 || setuid(s->uid) < 0) {
			err = errno;
			goto fail;
		}
	}
	step = STEP_CWD;
	if (chdir(s->cwd) < 0) {
		err = errno;
		goto fail;
	}
	step = STEP_EXEC;
	err = exec_search(s->argv, s->envp);
fail:;
	int rep[2] = {err, step};
	while (write(errpipe, rep, sizeof rep) < 0 && errno == EINTR)
		;
	_exit(127);
}

static int open_pty(int *master, int *slave, unsigned rows, unsigned cols)
{
	/* posix_openpt + grantpt + unlockpt + ptsname: what openpty does, with CLOEXEC. */
	char name[64];
	int m = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
	if (m < 0)
		return -1;
	if (grantpt(m) < 0 || unlockpt(m) < 0 || ptsname_r(m, name, sizeof name) != 0) {
		int e = errno;
		close(m);
		errno = e;
		return -1;
	}
	int sl = open(name, O_RDWR | O_NOCTTY | O_CLOEXEC);
	if (sl < 0) {
		int e = errno;
		close(m);
		errno = e;
		return -1;
	}
	if (rows || cols) {
		struct winsize ws = {.ws_row = (unsigned short)rows, .ws_col = (unsigned short)cols};
		ioctl(m, TIOCSWINSZ, &ws);
	}
	*master = m;
	*slave = sl;
	return 0;
}

void proc_create(uint32_t req, const unsigned char *p, size_t n)
{
	struct spec s = {0};
	char msg[256];
	/* child_fd: what the child gets on 0..2; mine: the agent's ends. All -1 = none. */
	int child_fd[3] = {-1, -1, -1}, mine[3] = {-1, -1, -1};
	int master = -1, slave = -1, devnull = -1, errpipe[2] = {-1, -1};
	struct proc *pr = NULL;
	int err = 0;

	if (spec_parse(&s, p, n, msg, sizeof msg) < 0) {
		outq_error(req, 0, EINVAL, "CREATE: %s", msg);
		goto out;
	}
	devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
	if (devnull < 0) {
		err = errno;
		snprintf(msg, sizeof msg, "open /dev/null: %s", strerror(err));
		goto fail;
	}
	if (s.tty) {
		if (open_pty(&master, &slave, s.rows, s.cols) < 0) {
			err = errno;
			snprintf(msg, sizeof msg, "pty: %s", strerror(err));
			goto fail;
		}
		for (int i = 0; i < 3; i++)
			child_fd[i] = slave;
	} else {
		for (int i = 0; i < 3; i++) {
			int pp[2];
			if (!s.want[i]) {
				child_fd[i] = devnull;
				continue;
			}
			if (pipe2(pp, O_CLOEXEC) < 0) {
				err = errno;
				snprintf(msg, sizeof msg, "pipe: %s", strerror(err));
				goto fail;
			}
			child_fd[i] = i == S_STDIN ? pp[0] : pp[1];
			mine[i] = i == S_STDIN ? pp[1] : pp[0];
			fcntl(mine[i], F_SETFL, O_NONBLOCK);
		}
	}
	if (pipe2(errpipe, O_CLOEXEC) < 0) {
		err = errno;
		snprintf(msg, sizeof msg, "pipe: %s", strerror(err));
		goto fail;
	}
	pr = calloc(1, sizeof *pr);
	if (!pr) {
		err = ENOMEM;
		snprintf(msg, sizeof msg, "out of memory");
		goto fail;
	}
	pid_t pid = fork();
	if (pid < 0) {
		err = errno;
		snprintf(msg, sizeof msg, "fork: %s", strerror(err));
		goto fail;
	}
	if (pid == 0)
		child(&s, child_fd, errpipe[1]);
	close_fd(&errpipe[1]);
	int child_err[2] = {0, STEP_EXEC};
	ssize_t r;
	/* Blocks until exec succeeded (CLOEXEC closes the pipe: EOF) or failed. */
	while ((r = read(errpipe[0], child_err, sizeof child_err)) < 0 && errno == EINTR)
		;
	if (r == (ssize_t)sizeof child_err) {
		/* Reap it here: it is not in the table, so proc_reap would ignore it anyway. */
		while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
			;
		err = child_err[0];
		if (child_err[1] == STEP_CWD)
			snprintf(msg, sizeof msg, "working directory %s: %s", s.cwd, strerror(err));
		else if (child_err[1] == STEP_USER)
			snprintf(msg, sizeof msg, "user %u:%u: %s", (unsigned)s.uid, (unsigned)s.gid,
				 strerror(err));
		else if (child_err[1] == STEP_STDIO)
			snprintf(msg, sizeof msg, "stdio: %s", strerror(err));
		else
			snprintf(msg, sizeof msg, "exec %s: %s", s.argv[0], strerror(err));
		goto fail;
	}
	pr->pid = pid;
	pr->tty = s.tty;
	pr->master = -1;
	pr->in_fd = -1;
	pr->out_fd[0] = pr->out_fd[1] = pr->out_fd[2] = -1;
	for (int i = 0; i < 3; i++)
		pr->credit[i] = WINDOW;
	if (s.tty) {
		fcntl(master, F_SETFL, O_NONBLOCK);
		pr->master = master;
		/* The master is used for both directions; dups keep the close logic simple. */
		pr->out_fd[S_STDOUT] = fcntl(master, F_DUPFD_CLOEXEC, 0);
		pr->out_discard[S_STDOUT] = !s.want[S_STDOUT];
		if (s.want[S_STDIN])
			pr->in_fd = fcntl(master, F_DUPFD_CLOEXEC, 0);
		master = -1;
	} else {
		pr->in_fd = mine[S_STDIN];
		pr->out_fd[S_STDOUT] = mine[S_STDOUT];
		pr->out_fd[S_STDERR] = mine[S_STDERR];
		mine[0] = mine[1] = mine[2] = -1;
	}
	pr->next = procs;
	procs = pr;
	pr = NULL;
	{
		struct buf b = {0};
		buf_kvu(&b, "pid", (unsigned)pid);
		outq_frame(T_CREATE | T_REPLY, req, 0, 0, b.data, b.len);
		buf_free(&b);
	}
	goto out;
fail:
	outq_error(req, 0, err ? err : EIO, "CREATE: %s", msg);
out:
	/* The child has its copies now (or never got them): drop ours. */
	if (!s.tty) {
		for (int i = 0; i < 3; i++)
			if (child_fd[i] >= 0 && child_fd[i] != devnull)
				close(child_fd[i]);
	}
	close_fd(&slave);
	close_fd(&master);
	close_fd(&devnull);
	close_fd(&errpipe[0]);
	close_fd(&errpipe[1]);
	for (int i = 0; i < 3; i++)
		close_fd(&mine[i]);
	free(pr);
	spec_free(&s);
}

/* ---------------------------------------------------------------- control */

void proc_signal(uint32_t req, uint32_t pid, const unsigned char *p, size_t n)
{
	char v[16];
	unsigned long long sig;
	struct proc *pr = find(pid);
	if (!pr || pr->exited) {
		outq_error(req, pid, ESRCH, "SIGNAL: no running process %u", pid);
		return;
	}
	if (!rec_get(p, n, "signal", v, sizeof v) || parse_u64(v, 64, &sig) < 0 || sig == 0) {
		outq_error(req, pid, EINVAL, "SIGNAL: signal=1..64 required");
		return;
	}
	if (kill(pr->pid, (int)sig) < 0) {
		outq_error(req, pid, errno, "SIGNAL: kill: %s", strerror(errno));
		return;
	}
	outq_frame(T_SIGNAL | T_REPLY, req, pid, 0, NULL, 0);
}

void proc_resize(uint32_t req, uint32_t pid, const unsigned char *p, size_t n)
{
	char v[16];
	unsigned long long rows, cols;
	struct proc *pr = find(pid);
	if (!pr || pr->exited) {
		outq_error(req, pid, ESRCH, "RESIZE: no running process %u", pid);
		return;
	}
	if (!pr->tty) {
		outq_error(req, pid, ENOTTY, "RESIZE: process %u has no tty", pid);
		return;
	}
	if (!rec_get(p, n, "rows", v, sizeof v) || parse_u64(v, 0xFFFF, &rows) < 0 ||
	    !rec_get(p, n, "cols", v, sizeof v) || parse_u64(v, 0xFFFF, &cols) < 0) {
		outq_error(req, pid, EINVAL, "RESIZE: rows= and cols= (0..65535) required");
		return;
	}
	struct winsize ws = {.ws_row = (unsigned short)rows, .ws_col = (unsigned short)cols};
	if (ioctl(pr->master, TIOCSWINSZ, &ws) < 0) {
		outq_error(req, pid, errno, "RESIZE: %s", strerror(errno));
		return;
	}
	outq_frame(T_RESIZE | T_REPLY, req, pid, 0, NULL, 0);
}

/* ---------------------------------------------------------------- stdio */

void proc_data(uint32_t pid, uint8_t stream, const unsigned char *p, size_t n)
{
	struct proc *pr = find(pid);
	if (stream != S_STDIN) {
		outq_error(0, pid, EINVAL, "DATA: host may only send stream 0 (stdin)");
		return;
	}
	if (!pr)
		return; /* exited and forgotten: the host's data is moot */
	if (pr->in_fd < 0 || pr->in_eof)
		return; /* no stdin requested, or already closed */
	if (n == 0) {
		pr->in_eof = 1;
		return;
	}
	if (pr->in_len + n > WINDOW) {
		outq_error(0, pid, ENOBUFS, "DATA: stdin window of %u bytes exceeded", WINDOW);
		return;
	}
	if (!pr->in_buf) {
		pr->in_buf = malloc(WINDOW);
		if (!pr->in_buf) {
			outq_error(0, pid, ENOMEM, "DATA: out of memory");
			return;
		}
	}
	memcpy(pr->in_buf + pr->in_len, p, n);
	pr->in_len += n;
}

void proc_credit(uint32_t pid, uint8_t stream, const unsigned char *p, size_t n)
{
	struct proc *pr = find(pid);
	if (n != 4 || (stream != S_STDOUT && stream != S_STDERR)) {
		outq_error(0, pid, EINVAL, "CREDIT: 4-byte payload on stream 1 or 2 required");
		return;
	}
	if (!pr)
		return;
	uint32_t add = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
		       (uint32_t)p[3] << 24;
	/* Cap the window: a confused host must not make us buffer without bound. */
	uint64_t c = (uint64_t)pr->credit[stream] + add;
	pr->credit[stream] = c > 4 * WINDOW ? 4 * WINDOW : (uint32_t)c;
}

static void send_exit(struct proc *pr)
{
	struct buf b = {0};
	int st = pr->status;
	unsigned code = WIFEXITED(st) ? (unsigned)WEXITSTATUS(st)
		       : WIFSIGNALED(st) ? 128u + (unsigned)WTERMSIG(st) : 255u;
	buf_kvu(&b, "code", code);
	buf_kvu(&b, "signal", WIFSIGNALED(st) ? (unsigned)WTERMSIG(st) : 0);
	buf_kvu(&b, "status", (unsigned)st);
	outq_frame(T_EXIT, 0, (uint32_t)pr->pid, 0, b.data, b.len);
	buf_free(&b);
	pr->exit_sent = 1;
}

static void out_eof(struct proc *pr, int s)
{
	close_fd(&pr->out_fd[s]);
	if (!pr->out_discard[s])
		outq_frame(T_DATA, 0, (uint32_t)pr->pid, (uint8_t)s, NULL, 0);
}

/* Send EXIT when due; forget the process once nothing refers to it anymore. */
static void settle(void)
{
	for (struct proc **pp = &procs; *pp;) {
		struct proc *pr = *pp;
		if (pr->exited && !pr->exit_sent &&
		    ((pr->out_fd[1] < 0 && pr->out_fd[2] < 0) || now_ms() >= pr->exit_deadline))
			send_exit(pr);
		if (pr->exit_sent && pr->out_fd[1] < 0 && pr->out_fd[2] < 0) {
			*pp = pr->next;
			proc_free(pr);
			continue;
		}
		pp = &pr->next;
	}
}

void proc_reap(void)
{
	int st;
	pid_t pid;
	/* As PID 1 this also collects orphans that are not ours: nothing to report. */
	while ((pid = waitpid(-1, &st, WNOHANG)) > 0) {
		struct proc *pr = find((uint32_t)pid);
		if (pid == g_late_pid)
			g_late_done = 1;
		if (!pr)
			continue;
		pr->exited = 1;
		pr->status = st;
		pr->exit_deadline = now_ms() + EXIT_LINGER_MS;
		/* Stdin has no reader anymore. */
		close_fd(&pr->in_fd);
		pr->in_len = 0;
	}
	/* No settle() here: the poll slots still point at these processes until
	 * proc_handle_poll ran; main calls proc_timers() after it. */
}

void proc_timers(void) { settle(); }

/* The poll set maps back to (process, fd kind) through this table. */
static struct {
	struct proc *pr;
	int kind; /* 0 = stdin, 1/2 = stdout/stderr */
} slots[1024];

int proc_pollfds(struct pollfd *pfd, int max, int out_ok, int *timeout_ms)
{
	int n = 0;
	long long now = now_ms();
	for (struct proc *pr = procs; pr && n < max && n < (int)(sizeof slots / sizeof *slots);
	     pr = pr->next) {
		if (pr->exited && !pr->exit_sent) {
			long long left = pr->exit_deadline - now;
			if (left < 0)
				left = 0;
			if (*timeout_ms < 0 || left < *timeout_ms)
				*timeout_ms = (int)left;
		}
		if (pr->in_fd >= 0 && (pr->in_len > 0 || pr->in_eof) && n < max) {
			if (pr->in_len == 0 && pr->in_eof) {
				/* Nothing left to write: end stdin now (pty: send VEOF). */
				if (pr->tty) {
					char eof = 4;
					if (write(pr->in_fd, &eof, 1) < 0) { /* best effort */
					}
				}
				close_fd(&pr->in_fd);
			} else {
				pfd[n] = (struct pollfd){.fd = pr->in_fd, .events = POLLOUT};
				slots[n].pr = pr;
				slots[n].kind = 0;
				n++;
			}
		}
		for (int s = 1; s <= 2 && n < max; s++) {
			if (pr->out_fd[s] < 0)
				continue;
			/* Back-pressure: no credit (slow host) or host away = do not read. */
			if (!pr->out_discard[s] && (pr->credit[s] == 0 || !out_ok))
				continue;
			pfd[n] = (struct pollfd){.fd = pr->out_fd[s], .events = POLLIN};
			slots[n].pr = pr;
			slots[n].kind = s;
			n++;
		}
	}
	return n;
}

void proc_handle_poll(struct pollfd *pfd, int n)
{
	unsigned char chunk[DATA_CHUNK];
	for (int i = 0; i < n; i++) {
		struct proc *pr = slots[i].pr;
		int s = slots[i].kind;
		if (!pfd[i].revents)
			continue;
		if (s == 0) {
			if (pr->in_fd < 0)
				continue;
			ssize_t w = write(pr->in_fd, pr->in_buf, pr->in_len);
			if (w < 0) {
				if (errno == EAGAIN || errno == EINTR)
					continue;
				/* EPIPE: the process closed stdin; discard what the host sends. */
				close_fd(&pr->in_fd);
				w = (ssize_t)pr->in_len;
			}
			memmove(pr->in_buf, pr->in_buf + w, pr->in_len - (size_t)w);
			pr->in_len -= (size_t)w;
			uint32_t c = (uint32_t)w;
			unsigned char le[4] = {(unsigned char)c, (unsigned char)(c >> 8),
					       (unsigned char)(c >> 16), (unsigned char)(c >> 24)};
			if (c)
				outq_frame(T_CREDIT, 0, (uint32_t)pr->pid, S_STDIN, le, 4);
			continue;
		}
		if (pr->out_fd[s] < 0)
			continue;
		size_t want = sizeof chunk;
		if (!pr->out_discard[s] && pr->credit[s] < want)
			want = pr->credit[s];
		ssize_t r = read(pr->out_fd[s], chunk, want);
		if (r < 0 && (errno == EAGAIN || errno == EINTR))
			continue;
		if (r <= 0) {
			/* 0 = writers gone; EIO = pty slave closed by everyone. */
			out_eof(pr, s);
			continue;
		}
		if (pr->out_discard[s])
			continue;
		pr->credit[s] -= (uint32_t)r;
		outq_frame(T_DATA, 0, (uint32_t)pr->pid, (uint8_t)s, chunk, (size_t)r);
	}
	settle();
}

void proc_kill_all(int sig)
{
	for (struct proc *pr = procs; pr; pr = pr->next)
		if (!pr->exited)
			kill(pr->pid, sig);
}
