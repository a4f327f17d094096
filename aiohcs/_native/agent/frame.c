/* Frame header codec, key=value records and the output queue (see agent.h). */
#define _GNU_SOURCE
#include "agent.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---------------------------------------------------------------- buffers */

void buf_put(struct buf *b, const void *p, size_t n)
{
	if (b->failed)
		return;
	if (b->len + n > MAX_PAYLOAD) {
		/* A payload never exceeds one frame; the caller reports the failure. */
		b->failed = 1;
		return;
	}
	if (b->len + n > b->cap) {
		size_t cap = b->cap ? b->cap : 256;
		while (cap < b->len + n)
			cap *= 2;
		unsigned char *d = realloc(b->data, cap);
		if (!d) {
			b->failed = 1;
			return;
		}
		b->data = d;
		b->cap = cap;
	}
	memcpy(b->data + b->len, p, n);
	b->len += n;
}

void buf_kv(struct buf *b, const char *key, const char *value)
{
	buf_put(b, key, strlen(key));
	buf_put(b, "=", 1);
	buf_put(b, value, strlen(value));
	buf_put(b, "", 1);
}

void buf_kvu(struct buf *b, const char *key, unsigned long long value)
{
	char num[24];
	snprintf(num, sizeof num, "%llu", value);
	buf_kv(b, key, num);
}

void buf_free(struct buf *b)
{
	free(b->data);
	b->data = NULL;
	b->len = b->cap = 0;
	b->failed = 0;
}

/* ---------------------------------------------------------------- records */

int rec_valid(const unsigned char *p, size_t n)
{
	/* Every record ends in NUL, so the last byte of a non-empty payload must be 0. */
	return n == 0 || p[n - 1] == 0;
}

int rec_next(struct rec_iter *it, const char **key, size_t *klen, const char **val, size_t *vlen)
{
	while (it->p < it->end) {
		const unsigned char *nul = memchr(it->p, 0, (size_t)(it->end - it->p));
		const unsigned char *stop = nul ? nul : it->end;
		const unsigned char *start = it->p;
		it->p = nul ? nul + 1 : it->end;
		if (stop == start)
			continue; /* tolerate empty strings */
		const unsigned char *eq = memchr(start, '=', (size_t)(stop - start));
		*key = (const char *)start;
		if (eq) {
			*klen = (size_t)(eq - start);
			*val = (const char *)eq + 1;
			*vlen = (size_t)(stop - eq - 1);
		} else {
			*klen = (size_t)(stop - start);
			*val = (const char *)stop;
			*vlen = 0;
		}
		return 1;
	}
	return 0;
}

const char *rec_get(const unsigned char *p, size_t n, const char *key, char *out, size_t outsz)
{
	struct rec_iter it = {p, p + n};
	const char *k, *v;
	size_t kl, vl, want = strlen(key);
	while (rec_next(&it, &k, &kl, &v, &vl)) {
		if (kl == want && memcmp(k, key, kl) == 0) {
			if (vl + 1 > outsz)
				return NULL;
			memcpy(out, v, vl);
			out[vl] = 0;
			return out;
		}
	}
	return NULL;
}

int parse_u64(const char *s, unsigned long long max, unsigned long long *out)
{
	/* Strict decimal: strtoull would accept signs, spaces and hex. */
	unsigned long long v = 0;
	if (!s || !*s)
		return -1;
	for (; *s; s++) {
		if (*s < '0' || *s > '9')
			return -1;
		unsigned d = (unsigned)(*s - '0');
		if (v > (max - d) / 10)
			return -1;
		v = v * 10 + d;
	}
	*out = v;
	return 0;
}

/* ---------------------------------------------------------------- headers */

static uint8_t hdr_check(const unsigned char *h)
{
	uint8_t c = 0x5A;
	for (int i = 0; i < HDR_SIZE; i++)
		if (i != 13)
			c ^= h[i];
	return c;
}

static void put32(unsigned char *p, uint32_t v)
{
	p[0] = (unsigned char)v;
	p[1] = (unsigned char)(v >> 8);
	p[2] = (unsigned char)(v >> 16);
	p[3] = (unsigned char)(v >> 24);
}

static uint32_t get32(const unsigned char *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

void hdr_encode(unsigned char *out, const struct frame_hdr *h)
{
	out[0] = FRAME_MAGIC & 0xff;
	out[1] = FRAME_MAGIC >> 8;
	out[2] = FRAMING_VERSION;
	out[3] = h->type;
	put32(out + 4, h->req);
	put32(out + 8, h->pid);
	out[12] = h->stream;
	out[14] = (unsigned char)h->len;
	out[15] = (unsigned char)(h->len >> 8);
	out[13] = hdr_check(out);
}

int hdr_decode(const unsigned char *in, struct frame_hdr *h)
{
	if (in[0] != (FRAME_MAGIC & 0xff) || in[1] != FRAME_MAGIC >> 8 || in[2] != FRAMING_VERSION)
		return 0;
	if (in[13] != hdr_check(in))
		return 0;
	h->type = in[3];
	h->req = get32(in + 4);
	h->pid = get32(in + 8);
	h->stream = in[12];
	h->len = (uint16_t)(in[14] | in[15] << 8);
	return h->len <= MAX_PAYLOAD;
}

/* ---------------------------------------------------------------- output queue */

struct obuf {
	struct obuf *next;
	size_t len, off;
	unsigned char data[];
};

static struct obuf *q_head, *q_tail;
static size_t q_bytes;

int outq_frame(uint8_t type, uint32_t req, uint32_t pid, uint8_t stream, const void *payload,
	       size_t len)
{
	if (len > MAX_PAYLOAD)
		return -1;
	struct obuf *o = malloc(sizeof *o + HDR_SIZE + len);
	if (!o)
		return -1;
	struct frame_hdr h = {type, req, pid, stream, (uint16_t)len};
	hdr_encode(o->data, &h);
	if (len)
		memcpy(o->data + HDR_SIZE, payload, len);
	o->next = NULL;
	o->len = HDR_SIZE + len;
	o->off = 0;
	if (q_tail)
		q_tail->next = o;
	else
		q_head = o;
	q_tail = o;
	q_bytes += o->len;
	if (g_debug)
		logmsg("tx type=%#x req=%u pid=%u stream=%u len=%zu", type, req, pid, stream, len);
	return 0;
}

void outq_error(uint32_t req, uint32_t pid, int err, const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	struct buf b = {0};
	buf_kvu(&b, "errno", (unsigned)err);
	buf_kv(&b, "message", msg);
	if (!b.failed)
		outq_frame(T_ERROR, req, pid, 0, b.data, b.len);
	buf_free(&b);
}

size_t outq_bytes(void) { return q_bytes; }

int outq_empty(void) { return q_head == NULL; }

int outq_flush(int fd)
{
	while (q_head) {
		struct obuf *o = q_head;
		ssize_t w = write(fd, o->data + o->off, o->len - o->off);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == ENOTCONN)
				return 0; /* port full or host away: try again later */
			return -1;
		}
		o->off += (size_t)w;
		q_bytes -= (size_t)w;
		if (o->off < o->len)
			return 0;
		q_head = o->next;
		if (!q_head)
			q_tail = NULL;
		free(o);
	}
	return 0;
}
