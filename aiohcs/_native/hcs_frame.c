/*
 * hcs_frame.c — the 48-byte frame header of docs/protocol.md and whole-frame
 * reads and writes over the unix socket, including SCM_RIGHTS fds.
 *
 * Fields are packed by hand (not by casting a struct) so the wire format is
 * little-endian and padding-free whatever the compiler does.
 */
#include "hcs_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>

static void put16(unsigned char *p, uint16_t v) { p[0] = (unsigned char)v; p[1] = (unsigned char)(v >> 8); }
static void put32(unsigned char *p, uint32_t v) { for (int i = 0; i < 4; i++) p[i] = (unsigned char)(v >> (8 * i)); }
static void put64(unsigned char *p, uint64_t v) { for (int i = 0; i < 8; i++) p[i] = (unsigned char)(v >> (8 * i)); }
static uint16_t get16(const unsigned char *p) { return (uint16_t)(p[0] | (p[1] << 8)); }
static uint32_t get32(const unsigned char *p)
{
    uint32_t v = 0;
    for (int i = 3; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}
static uint64_t get64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}

void hcs_frame_encode(const struct hcs_frame_hdr *h, unsigned char out[HCS_WIRE_HDR_SIZE])
{
    put32(out + 0, h->magic);
    put16(out + 4, h->version);
    put16(out + 6, h->kind);
    put32(out + 8, h->op);
    put32(out + 12, h->request_id);
    put64(out + 16, h->handle);
    put64(out + 24, h->new_handle);
    put32(out + 32, h->arg);
    put32(out + 36, (uint32_t)h->hresult);
    put32(out + 40, h->fdmask);
    put32(out + 44, h->length);
}

void hcs_frame_decode(const unsigned char in[HCS_WIRE_HDR_SIZE], struct hcs_frame_hdr *h)
{
    h->magic = get32(in + 0);
    h->version = get16(in + 4);
    h->kind = get16(in + 6);
    h->op = get32(in + 8);
    h->request_id = get32(in + 12);
    h->handle = get64(in + 16);
    h->new_handle = get64(in + 24);
    h->arg = get32(in + 32);
    h->hresult = (int32_t)get32(in + 36);
    h->fdmask = get32(in + 40);
    h->length = get32(in + 44);
}

int hcs_frame_write(int fd, const struct hcs_frame_hdr *h, const void *payload)
{
    unsigned char hdr[HCS_WIRE_HDR_SIZE];
    hcs_frame_encode(h, hdr);
    struct iovec iov[2] = {
        { .iov_base = hdr, .iov_len = sizeof hdr },
        { .iov_base = (void *)payload, .iov_len = payload ? h->length : 0 },
    };
    int n = 2;
    struct iovec *v = iov;
    while (n > 0) {
        struct msghdr m = { .msg_iov = v, .msg_iovlen = (size_t)n };
        /* MSG_NOSIGNAL: a dead service must give EPIPE, not kill the client. */
        ssize_t w = sendmsg(fd, &m, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        size_t left = (size_t)w;
        while (n > 0 && left >= v->iov_len) {
            left -= v->iov_len;
            v++;
            n--;
        }
        if (n > 0) {
            v->iov_base = (char *)v->iov_base + left;
            v->iov_len -= left;
        }
    }
    return 0;
}

int hcs_fd_sanitize(int fd)
{
    if (fd < 0)
        return fd;
    if (fd <= 2) {
        /* An fd in 0..2 would only happen if the process closed its stdio;
         * handing it out could make later code write into it as stdio. */
        int nfd = fcntl(fd, F_DUPFD_CLOEXEC, 3);
        close(fd);
        return nfd;
    }
    int fl = fcntl(fd, F_GETFD);
    if (fl >= 0 && !(fl & FD_CLOEXEC))
        fcntl(fd, F_SETFD, fl | FD_CLOEXEC);
    return fd;
}

#define HCS_MAX_RX_FDS 16

/* Read exactly len bytes; fds that arrive are appended to fds/nfds (extra
 * ones beyond the array are closed at once). */
static int read_full(int fd, unsigned char *buf, size_t len, int *fds, int *nfds)
{
    size_t got = 0;
    while (got < len) {
        union {
            struct cmsghdr align;
            char buf[CMSG_SPACE(sizeof(int) * HCS_MAX_RX_FDS)];
        } ctl;
        struct iovec iov = { .iov_base = buf + got, .iov_len = len - got };
        struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.buf,
                            .msg_controllen = sizeof ctl.buf };
        ssize_t r = recvmsg(fd, &m, MSG_CMSG_CLOEXEC);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        for (struct cmsghdr *c = CMSG_FIRSTHDR(&m); c; c = CMSG_NXTHDR(&m, c)) {
            if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
                continue;
            size_t cnt = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
            int *p = (int *)CMSG_DATA(c);
            for (size_t k = 0; k < cnt; k++) {
                int rfd;
                memcpy(&rfd, p + k, sizeof rfd);
                if (*nfds < 3)
                    fds[(*nfds)++] = rfd;
                else
                    close(rfd);  /* more fds than a frame can name */
            }
        }
        if (r == 0)
            return got == 0 && len > 0 ? -ECONNRESET : -EPROTO;
        got += (size_t)r;
    }
    return 0;
}

int hcs_frame_read(int fd, struct hcs_frame_hdr *h, unsigned char **payload, int fds[3])
{
    int rx[3] = { -1, -1, -1 };
    int nrx = 0;
    unsigned char hdr[HCS_WIRE_HDR_SIZE];
    *payload = NULL;
    fds[0] = fds[1] = fds[2] = -1;

    int rc = read_full(fd, hdr, sizeof hdr, rx, &nrx);
    if (rc == 0) {
        hcs_frame_decode(hdr, h);
        if (h->magic != HCS_WIRE_MAGIC || h->version != HCS_WIRE_VERSION ||
            h->length > HCS_WIRE_MAX_PAYLOAD)
            rc = -EPROTO;
    }
    if (rc == 0 && h->length > 0) {
        *payload = malloc(h->length + 1);   /* +1: room for a NUL, handy in tests */
        if (!*payload)
            rc = -ENOMEM;
        else {
            rc = read_full(fd, *payload, h->length, rx, &nrx);
            if (rc == 0)
                (*payload)[h->length] = 0;
        }
    }
    if (rc != 0) {
        free(*payload);
        *payload = NULL;
        for (int i = 0; i < nrx; i++)
            close(rx[i]);
        return rc;
    }
    /* fds ride in fdmask bit order: stdin, stdout, stderr. */
    int k = 0;
    for (int bit = 0; bit < 3; bit++) {
        if ((h->fdmask & (1u << bit)) && k < nrx)
            fds[bit] = hcs_fd_sanitize(rx[k++]);
    }
    for (; k < nrx; k++)
        close(rx[k]);           /* fds the header did not name: nobody owns them */
    return 0;
}
