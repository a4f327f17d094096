/* The virtio-serial port: discovery, reading frames, resync, "host away". */
#define _GNU_SOURCE
#include "agent.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* /sys/class/virtio-ports/vportNpM/name holds the name QEMU gave the port.
 * Without udev there is no /dev/virtio-ports/NAME, so we find vportNpM. */
static int find_port(const char *name, char *dev, size_t devsz)
{
	DIR *d = opendir("/sys/class/virtio-ports");
	if (!d)
		return -1;
	struct dirent *e;
	int found = -1;
	while ((e = readdir(d)) != NULL) {
		if (e->d_name[0] == '.')
			continue;
		char path[300], got[128];
		snprintf(path, sizeof path, "/sys/class/virtio-ports/%s/name", e->d_name);
		if (sys_read_line(path, got, sizeof got) < 0)
			continue;
		if (strcmp(got, name) == 0) {
			snprintf(dev, devsz, "/dev/%s", e->d_name);
			found = 0;
			break;
		}
	}
	closedir(d);
	return found;
}

int channel_open_port(struct channel *c, const char *name, int timeout_ms)
{
	char dev[300];
	long long deadline = now_ms() + timeout_ms;
	/* Ports are announced asynchronously after virtio_console loads. */
	while (find_port(name, dev, sizeof dev) < 0) {
		if (now_ms() > deadline)
			return -1;
		usleep(5000);
	}
	int fd = -1;
	/* devtmpfs may create the node a moment after sysfs shows the port. */
	while ((fd = open(dev, O_RDWR | O_NONBLOCK | O_CLOEXEC)) < 0) {
		if (errno != ENOENT || now_ms() > deadline)
			return -1;
		usleep(2000);
	}
	mkdir("/dev/virtio-ports", 0755);
	char link[300];
	snprintf(link, sizeof link, "/dev/virtio-ports/%s", name);
	unlink(link);
	if (symlink(dev, link) < 0)
		logmsg("symlink %s: %s", link, strerror(errno));
	c->fd = fd;
	c->owns_fd = 1;
	c->host_away = 0;
	return 0;
}

/* Drop the bytes before the next possible header start. Reports one ERROR
 * per run of garbage so a noisy host cannot make us flood it. */
static void skip_garbage(struct channel *c)
{
	size_t drop = 1;
	while (drop < c->in_len && c->in[drop] != (FRAME_MAGIC & 0xff))
		drop++;
	if (!c->garbage) {
		c->garbage = 1;
		outq_error(0, 0, EINVAL, "bad frame header (magic, version or check byte); resyncing");
	}
	memmove(c->in, c->in + drop, c->in_len - drop);
	c->in_len -= drop;
}

int channel_read(struct channel *c,
		 void (*on_frame)(const struct frame_hdr *, const unsigned char *))
{
	for (;;) {
		if (c->in_len == sizeof c->in) {
			/* Cannot happen with a valid header (len <= MAX_PAYLOAD); be safe anyway. */
			c->in_len = 0;
		}
		ssize_t n = read(c->fd, c->in + c->in_len, sizeof c->in - c->in_len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN)
				return 0;
			/* ENOTCONN etc.: treat like host away. */
			c->host_away = 1;
			return 0;
		}
		if (n == 0) {
			if (c->exit_on_eof)
				return -1;
			/* The host closed its end of the chardev. The guest keeps seeing EOF until it
			 * reconnects; a half-received frame is stale now. */
			if (!c->host_away)
				logmsg("host away");
			c->host_away = 1;
			c->in_len = 0;
			return 0;
		}
		if (c->host_away)
			logmsg("host back");
		c->host_away = 0;
		c->in_len += (size_t)n;
		size_t pos = 0;
		for (;;) {
			if (c->in_len - pos < HDR_SIZE)
				break;
			struct frame_hdr h;
			if (!hdr_decode(c->in + pos, &h)) {
				memmove(c->in, c->in + pos, c->in_len - pos);
				c->in_len -= pos;
				pos = 0;
				skip_garbage(c);
				continue;
			}
			if (c->in_len - pos < HDR_SIZE + (size_t)h.len)
				break;
			c->garbage = 0;
			if (g_debug)
				logmsg("rx type=%#x req=%u pid=%u stream=%u len=%u", h.type, h.req, h.pid,
				       h.stream, h.len);
			on_frame(&h, c->in + pos + HDR_SIZE);
			pos += HDR_SIZE + h.len;
		}
		if (pos) {
			memmove(c->in, c->in + pos, c->in_len - pos);
			c->in_len -= pos;
		}
	}
}
