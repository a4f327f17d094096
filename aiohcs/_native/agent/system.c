/* The guest system: early mounts, kernel modules, 9p shares, the clock, the
 * ACPI power button and orderly shutdown. */
#define _GNU_SOURCE
#include "agent.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MODULES_LIST "/etc/aiohcs/modules"
#define MODULES_DIR "/lib/modules/aiohcs"

static void mount_one(const char *src, const char *dst, const char *type, unsigned long flags,
		      const char *opts)
{
	mkdir(dst, 0755);
	if (mount(src, dst, type, flags, opts) < 0 && errno != EBUSY)
		logmsg("mount %s on %s: %s", type, dst, strerror(errno));
}

void sys_early_mounts(void)
{
	mount_one("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL);
	mount_one("sysfs", "/sys", "sysfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL);
	mount_one("devtmpfs", "/dev", "devtmpfs", MS_NOSUID, "mode=0755");
	mount_one("devpts", "/dev/pts", "devpts", MS_NOSUID | MS_NOEXEC, "mode=0620,ptmxmode=0666");
	mount_one("tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777");
	mount_one("tmpfs", "/run", "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755");
}

/* mkdir -p */
static int mkdirs(const char *path)
{
	char tmp[4096];
	size_t n = strlen(path);
	if (n == 0 || n >= sizeof tmp) {
		errno = EINVAL;
		return -1;
	}
	memcpy(tmp, path, n + 1);
	for (char *p = tmp + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = 0;
		if (mkdir(tmp, 0755) < 0 && errno != EEXIST)
			return -1;
		*p = '/';
	}
	if (mkdir(tmp, 0755) < 0 && errno != EEXIST)
		return -1;
	return 0;
}

/* Load the modules of one group from MODULES_LIST ("group name" per line, in
 * dependency order). Groups load once; a missing module is logged, not fatal:
 * the kernel may have it built in. */
void sys_load_modules(const char *group)
{
	static char loaded[8][16];
	for (int i = 0; i < 8; i++)
		if (strcmp(loaded[i], group) == 0)
			return;
	for (int i = 0; i < 8; i++)
		if (!loaded[i][0]) {
			snprintf(loaded[i], sizeof loaded[i], "%s", group);
			break;
		}
	FILE *f = fopen(MODULES_LIST, "re");
	if (!f)
		return;
	char line[256], g[64], name[128];
	while (fgets(line, sizeof line, f)) {
		if (sscanf(line, "%63s %127s", g, name) != 2 || strcmp(g, group) != 0)
			continue;
		char path[300];
		snprintf(path, sizeof path, MODULES_DIR "/%s.ko", name);
		int fd = open(path, O_RDONLY | O_CLOEXEC);
		if (fd < 0) {
			logmsg("module %s: %s", name, strerror(errno));
			continue;
		}
		if (syscall(SYS_finit_module, fd, "", 0) < 0 && errno != EEXIST)
			logmsg("insmod %s: %s", name, strerror(errno));
		close(fd);
	}
	fclose(f);
}

void sys_mount9p(uint32_t req, const unsigned char *p, size_t n)
{
	char tag[256], path[4096], v[32], opts[128];
	unsigned long long msize = 262144, ro = 0;
	if (!rec_get(p, n, "tag", tag, sizeof tag) || !tag[0] ||
	    !rec_get(p, n, "path", path, sizeof path) || path[0] != '/') {
		outq_error(req, 0, EINVAL, "MOUNT9P: tag= and an absolute path= required");
		return;
	}
	if (rec_get(p, n, "msize", v, sizeof v) && parse_u64(v, 1 << 24, &msize) < 0) {
		outq_error(req, 0, EINVAL, "MOUNT9P: bad msize");
		return;
	}
	if (rec_get(p, n, "ro", v, sizeof v) && parse_u64(v, 1, &ro) < 0) {
		outq_error(req, 0, EINVAL, "MOUNT9P: ro must be 0 or 1");
		return;
	}
	/* The 9p stack is not needed to boot: load it on first use. */
	sys_load_modules("9p");
	if (mkdirs(path) < 0) {
		outq_error(req, 0, errno, "MOUNT9P: mkdir %s: %s", path, strerror(errno));
		return;
	}
	snprintf(opts, sizeof opts, "trans=virtio,version=9p2000.L,msize=%llu", msize);
	if (mount(tag, path, "9p", ro ? MS_RDONLY : 0, opts) < 0) {
		outq_error(req, 0, errno, "MOUNT9P: mount %s on %s: %s", tag, path, strerror(errno));
		return;
	}
	outq_frame(T_MOUNT9P | T_REPLY, req, 0, 0, NULL, 0);
}

void sys_unmount(uint32_t req, const unsigned char *p, size_t n)
{
	char path[4096];
	if (!rec_get(p, n, "path", path, sizeof path) || path[0] != '/') {
		outq_error(req, 0, EINVAL, "UNMOUNT: absolute path= required");
		return;
	}
	if (umount2(path, 0) < 0) {
		outq_error(req, 0, errno, "UNMOUNT %s: %s", path, strerror(errno));
		return;
	}
	outq_frame(T_UNMOUNT | T_REPLY, req, 0, 0, NULL, 0);
}

/* BIND: bind-mount guest directory src= on path= (created), read-only with
 * ro=1 (a bind takes MS_RDONLY only on a remount). Used for Plan9 shares added
 * at run time: each is a subdirectory of the one staging 9p export. */
void sys_bind(uint32_t req, const unsigned char *p, size_t n)
{
	char src[4096], path[4096], v[32];
	unsigned long long ro = 0;
	struct stat st;
	if (!rec_get(p, n, "src", src, sizeof src) || src[0] != '/' ||
	    !rec_get(p, n, "path", path, sizeof path) || path[0] != '/') {
		outq_error(req, 0, EINVAL, "BIND: absolute src= and path= required");
		return;
	}
	if (rec_get(p, n, "ro", v, sizeof v) && parse_u64(v, 1, &ro) < 0) {
		outq_error(req, 0, EINVAL, "BIND: ro must be 0 or 1");
		return;
	}
	if (stat(src, &st) < 0) {
		outq_error(req, 0, errno, "BIND: %s: %s", src, strerror(errno));
		return;
	}
	if (!S_ISDIR(st.st_mode)) {
		outq_error(req, 0, ENOTDIR, "BIND: %s is not a directory", src);
		return;
	}
	if (mkdirs(path) < 0) {
		outq_error(req, 0, errno, "BIND: mkdir %s: %s", path, strerror(errno));
		return;
	}
	if (mount(src, path, NULL, MS_BIND, NULL) < 0) {
		outq_error(req, 0, errno, "BIND: mount %s on %s: %s", src, path, strerror(errno));
		return;
	}
	if (ro && mount(NULL, path, NULL, MS_REMOUNT | MS_BIND | MS_RDONLY, NULL) < 0) {
		int e = errno;
		umount2(path, MNT_DETACH);
		outq_error(req, 0, e, "BIND: read-only remount of %s: %s", path, strerror(e));
		return;
	}
	outq_frame(T_BIND | T_REPLY, req, 0, 0, NULL, 0);
}

void sys_settime(uint32_t req, const unsigned char *p, size_t n)
{
	char v[32];
	unsigned long long sec, nsec = 0;
	if (!rec_get(p, n, "sec", v, sizeof v) || parse_u64(v, (1ULL << 62), &sec) < 0 ||
	    (rec_get(p, n, "nsec", v, sizeof v) && parse_u64(v, 999999999, &nsec) < 0)) {
		outq_error(req, 0, EINVAL, "SETTIME: sec= (and nsec= < 1e9) required");
		return;
	}
	struct timespec ts = {.tv_sec = (time_t)sec, .tv_nsec = (long)nsec};
	if (clock_settime(CLOCK_REALTIME, &ts) < 0) {
		outq_error(req, 0, errno, "SETTIME: %s", strerror(errno));
		return;
	}
	outq_frame(T_SETTIME | T_REPLY, req, 0, 0, NULL, 0);
}

int sys_read_line(const char *path, char *buf, size_t size)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	ssize_t n = read(fd, buf, size - 1);
	close(fd);
	if (n <= 0)
		return -1;
	buf[n] = 0;
	if (buf[n - 1] == '\n')
		buf[--n] = 0;
	return (int)n;
}

/* QEMU's system_powerdown raises an ACPI event; with button.ko + evdev.ko it
 * becomes a key press on the "Power Button" input device. Any event there
 * means: shut down. */
int sys_power_button_open(void)
{
	DIR *d = opendir("/sys/class/input");
	if (!d)
		return -1;
	struct dirent *e;
	int fd = -1;
	while (fd < 0 && (e = readdir(d)) != NULL) {
		if (strncmp(e->d_name, "event", 5) != 0)
			continue;
		char path[300], name[128];
		snprintf(path, sizeof path, "/sys/class/input/%s/device/name", e->d_name);
		if (sys_read_line(path, name, sizeof name) < 0)
			continue;
		if (strstr(name, "Power Button")) {
			snprintf(path, sizeof path, "/dev/input/%s", e->d_name);
			fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
		}
	}
	closedir(d);
	return fd;
}

/* Push queued frames (the SHUTDOWN reply) out for up to `ms` milliseconds. */
static void drain_output(struct channel *c, int ms)
{
	long long deadline = now_ms() + ms;
	while (!outq_empty() && now_ms() < deadline && !c->host_away) {
		struct pollfd p = {.fd = c->fd, .events = POLLOUT};
		poll(&p, 1, 10);
		if (outq_flush(c->fd) < 0)
			break;
	}
}

static int children_left(void)
{
	/* PID 1: every process is our descendant; reap and see if any remain. */
	int st;
	while (waitpid(-1, &st, WNOHANG) > 0)
		;
	return errno != ECHILD;
}

void sys_shutdown(int poweroff, int grace_ms, struct channel *c)
{
	logmsg("shutdown (%s, grace %d ms)", poweroff ? "poweroff" : "reboot", grace_ms);
	drain_output(c, 500);
	if (g_pid1)
		kill(-1, SIGTERM); /* everyone but us */
	else
		proc_kill_all(SIGTERM);
	long long deadline = now_ms() + grace_ms;
	while (now_ms() < deadline) {
		errno = 0;
		if (g_pid1 ? !children_left() : proc_count() == 0)
			break;
		if (!g_pid1)
			proc_reap();
		usleep(10000);
	}
	if (g_pid1)
		kill(-1, SIGKILL);
	else
		proc_kill_all(SIGKILL);
	sync();
	if (!g_pid1)
		exit(0); /* test harness: "power off" = the agent ends */
	reboot(poweroff ? RB_POWER_OFF : RB_AUTOBOOT);
	/* reboot(2) only returns on error; PID 1 must not exit (kernel panic). */
	logmsg("reboot: %s", strerror(errno));
	for (;;)
		pause();
}
