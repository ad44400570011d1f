/*
 * device_loop.h — the part of the example devices (device.c, device_tls.c)
 * that does not depend on the transport: stdin's lines go out as reliable
 * DATA, every downstream message is printed as "< text", one poll loop
 * drives stdin and the connection. Static functions only: include it in
 * one program.
 */
#ifndef SWITCHYARD_DEVICE_LOOP_H
#define SWITCHYARD_DEVICE_LOOP_H

#include "../switchyard.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static uint8_t rx_buf[16384], tx_buf[8192], resend_buf[65536];

struct device {
    struct sy_config cfg; /* addr, id, secret, transport: the caller's; buffers and on_event: device_run's */
    long want;            /* -n: end after this many replies (every line ACKed); -1: at stdin's end */
    /* transport_error, when set, explains a transport failure (a DISCONNECT
     * with result SY_ETRANSPORT) and says whether retrying is pointless
     * (e.g. the gateway's certificate did not verify): the device stops. */
    const char *(*transport_error)(void *io_ctx, int *fatal);
    /* state */
    char line[4096];
    size_t line_len;
    long replies;
    int gave_up;
};

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void device_event(void *ctx, struct sy_client *c, const struct sy_event *ev)
{
    struct device *d = ctx;
    switch (ev->type) {
    case SY_EV_WELCOME:
        fprintf(stderr, "connected to %s, session %s%s\n", sy_node(c), sy_session(c),
                ev->resumed ? " (resumed)" : "");
        break;
    case SY_EV_DATA:
        printf("< %.*s\n", (int)ev->data.n, (const char *)ev->data.p);
        fflush(stdout);
        d->replies++;
        break;
    case SY_EV_GOAWAY:
        fprintf(stderr, "gateway going away (%.*s), reconnecting\n", (int)ev->data.n, (const char *)ev->data.p);
        break;
    case SY_EV_ERROR:
        fprintf(stderr, "gateway error %d: %.*s\n", ev->code, (int)ev->data.n, (const char *)ev->data.p);
        break;
    case SY_EV_DISCONNECT:
        if (ev->result == SY_ETRANSPORT && d->transport_error != NULL) {
            int fatal = 0;
            const char *why = d->transport_error(d->cfg.io_ctx, &fatal);
            fprintf(stderr, "disconnected (%s)%s\n", why, fatal ? ": giving up" : "");
            if (fatal) {
                d->gave_up = 1;
                sy_stop(c);
            }
        } else {
            fprintf(stderr, "disconnected (%s)\n", ev->sys_errno ? strerror(ev->sys_errno) : "by the gateway");
        }
        break;
    case SY_EV_CLOSED:
        fprintf(stderr, "refused for good (%d)\n", ev->code);
        break;
    case SY_EV_ACKED:
        break;
    }
}

/* read_secret reads the first line of path into buf. */
static size_t read_secret(const char *path, char *buf, size_t cap)
{
    FILE *f = fopen(path, "r");
    size_t n;
    if (f == NULL || fgets(buf, (int)cap, f) == NULL) {
        perror(path);
        if (f != NULL)
            fclose(f);
        return 0;
    }
    fclose(f);
    n = strcspn(buf, "\r\n");
    buf[n] = '\0';
    return n;
}

/* pending_line: a whole line waits in line[] (it could not be sent yet). */
static int pending_line(const struct device *d) { return memchr(d->line, '\n', d->line_len) != NULL; }

/* send_lines sends the complete lines in line[]; a full resend buffer
 * leaves them for later. */
static void send_lines(struct device *d, struct sy_client *c)
{
    char *nl;
    while ((nl = memchr(d->line, '\n', d->line_len)) != NULL) {
        size_t n = (size_t)(nl - d->line);
        int64_t r = sy_send(c, (const uint8_t *)d->line, n, 1);
        if (r == SY_EFULL)
            return;
        if (r < 0)
            fprintf(stderr, "line dropped: %s\n", sy_strerror((int)r));
        memmove(d->line, nl + 1, d->line_len - n - 1);
        d->line_len -= n + 1;
    }
}

/* device_run runs the device until its work is done (0), it is refused for
 * good or gave up (1), or a setup error (2). */
static int device_run(struct device *d)
{
    struct sy_client c;
    struct pollfd p[2];
    int stdin_open = 1, err;
    d->cfg.rx_buf = rx_buf;
    d->cfg.rx_cap = sizeof rx_buf;
    d->cfg.tx_buf = tx_buf;
    d->cfg.tx_cap = sizeof tx_buf;
    d->cfg.resend_buf = resend_buf;
    d->cfg.resend_cap = sizeof resend_buf;
    d->cfg.on_event = device_event;
    d->cfg.ctx = d;
    if ((err = sy_init(&c, &d->cfg)) != SY_OK || (err = sy_start(&c, now_ms())) != SY_OK) {
        fprintf(stderr, "device: %s\n", sy_strerror(err));
        return 2;
    }
    for (;;) {
        int wait = sy_tick(&c, now_ms());
        int done_input = d->want >= 0 ? d->replies >= d->want : !stdin_open && !pending_line(d);
        if (sy_state(&c) == SY_CLOSED || d->gave_up) {
            sy_stop(&c);
            return 1;
        }
        if (done_input && d->line_len == 0 && sy_unacked(&c) == 0 && sy_state(&c) == SY_READY) {
            sy_stop(&c);
            return 0;
        }
        /* read stdin only while a line can be taken */
        p[0].fd = stdin_open && !pending_line(d) && d->line_len < sizeof d->line ? 0 : -1;
        p[0].events = POLLIN;
        p[1].fd = sy_fd(&c);
        p[1].events = sy_want_events(&c);
        p[0].revents = p[1].revents = 0;
        if (poll(p, 2, wait) < 0 && errno != EINTR) {
            sy_stop(&c);
            return 1;
        }
        if (p[0].revents & (POLLIN | POLLHUP)) {
            ssize_t n = read(0, d->line + d->line_len, sizeof d->line - d->line_len);
            if (n <= 0) {
                stdin_open = 0;
                if (d->line_len > 0 && d->line_len < sizeof d->line)
                    d->line[d->line_len++] = '\n'; /* the last line without a newline */
            } else {
                d->line_len += (size_t)n;
            }
            if (d->line_len == sizeof d->line && !pending_line(d))
                d->line[d->line_len - 1] = '\n'; /* a line longer than the buffer: cut */
        }
        if (p[1].fd >= 0 && (p[1].revents & (POLLIN | POLLHUP | POLLERR)))
            sy_on_readable(&c, now_ms());
        if (p[1].fd >= 0 && p[1].fd == sy_fd(&c) && (p[1].revents & POLLOUT))
            sy_on_writable(&c, now_ms());
        send_lines(d, &c);
    }
}

#endif
