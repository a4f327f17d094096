/* PROCLIST: every process in the guest, read from /proc/<pid>/stat. */
#define _GNU_SOURCE
#include "agent.h"

#include <ctype.h>
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static ssize_t read_small(const char *path, char *out, size_t outsz)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	ssize_t n = read(fd, out, outsz - 1);
	close(fd);
	if (n < 0)
		return -1;
	out[n] = 0;
	return n;
}

static unsigned long long boot_time(void)
{
	/* /proc/stat "btime": wall-clock seconds at boot, what ps uses. */
	static char stat[8192];
	if (read_small("/proc/stat", stat, sizeof stat) < 0)
		return 0;
	char *b = strstr(stat, "\nbtime ");
	return b ? strtoull(b + 7, NULL, 10) : 0;
}

/* One process: fields after the ")" that ends comm (comm may hold spaces and parens). */
static int add_proc(struct buf *b, const char *pid)
{
	char path[64], stat[1024];
	snprintf(path, sizeof path, "/proc/%s/stat", pid);
	if (read_small(path, stat, sizeof stat) < 0)
		return 0; /* exited meanwhile */
	char *open_paren = strchr(stat, '(');
	char *close_paren = strrchr(stat, ')');
	if (!open_paren || !close_paren || close_paren < open_paren)
		return 0;
	*close_paren = 0;
	const char *name = open_paren + 1;
	char state = 0;
	unsigned long long f[24] = {0};
	/* Fields 4.. (ppid) follow "state"; we need ppid(4) utime(14) stime(15)
	 * starttime(22) vsize(23) rss(24, pages). */
	char *p = close_paren + 2;
	state = *p;
	p++;
	for (int i = 4; i <= 24 && *p; i++) {
		while (*p == ' ')
			p++;
		f[i - 1] = strtoull(p, &p, 10);
	}
	char st[2] = {state, 0};
	buf_kv(b, "pid", pid);
	buf_kvu(b, "ppid", f[3]);
	buf_kv(b, "name", name);
	buf_kv(b, "state", st);
	buf_kvu(b, "utime", f[13]);
	buf_kvu(b, "stime", f[14]);
	buf_kvu(b, "start", f[21]);
	buf_kvu(b, "vsize", f[22]);
	buf_kvu(b, "rss", f[23] * (unsigned long long)sysconf(_SC_PAGESIZE));
	return 1;
}

void proclist_reply(uint32_t req)
{
	struct buf b = {0};
	struct timespec up;
	clock_gettime(CLOCK_BOOTTIME, &up);
	char ups[32];
	snprintf(ups, sizeof ups, "%lld.%02ld", (long long)up.tv_sec, up.tv_nsec / 10000000);
	buf_kvu(&b, "hz", (unsigned long long)sysconf(_SC_CLK_TCK));
	buf_kvu(&b, "btime", boot_time());
	buf_kv(&b, "uptime", ups);
	DIR *d = opendir("/proc");
	if (!d) {
		buf_free(&b);
		outq_error(req, 0, 5, "PROCLIST: cannot open /proc");
		return;
	}
	struct dirent *e;
	while ((e = readdir(d)) != NULL) {
		if (!isdigit((unsigned char)e->d_name[0]))
			continue;
		size_t before = b.len;
		add_proc(&b, e->d_name);
		if (b.failed) {
			/* Too many processes for one frame: send what fits, say so. */
			b.failed = 0;
			b.len = before;
			buf_kv(&b, "truncated", "1");
			break;
		}
	}
	closedir(d);
	if (b.failed)
		outq_error(req, 0, 12, "PROCLIST: out of memory");
	else
		outq_frame(T_PROCLIST | T_REPLY, req, 0, 0, b.data, b.len);
	buf_free(&b);
}
