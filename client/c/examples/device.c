/*
 * device.c — an example device on the Switchyard C client.
 *
 *   device [-s SECRET_FILE] [-n REPLIES] HOST:PORT DEVICE_ID
 *
 * Connects, says HELLO (with a token made from the first line of
 * SECRET_FILE when given), sends each line of stdin as reliable DATA,
 * prints every downstream message as "< text", and reconnects and resumes
 * on its own. It ends when stdin is closed and every line was ACKed, or
 * after REPLIES downstream messages (with every line ACKed) when -n is
 * given. One poll loop drives stdin and the connection; nothing is
 * allocated.
 *
 * Build: cc -std=c99 -O2 -o device examples/device.c switchyard.c
 */
#define _POSIX_C_SOURCE 200809L

#include "../switchyard.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static uint8_t rx_buf[16384], tx_buf[8192], resend_buf[65536];
static char line[4096];
static size_t line_len;
static long replies;

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void on_event(void *ctx, struct sy_client *c, const struct sy_event *ev)
{
    (void)ctx;
    switch (ev->type) {
    case SY_EV_WELCOME:
        fprintf(stderr, "connected to %s, session %s%s\n", sy_node(c), sy_session(c),
                ev->resumed ? " (resumed)" : "");
        break;
    case SY_EV_DATA:
        printf("< %.*s\n", (int)ev->data.n, (const char *)ev->data.p);
        fflush(stdout);
        replies++;
        break;
    case SY_EV_GOAWAY:
        fprintf(stderr, "gateway going away (%.*s), reconnecting\n", (int)ev->data.n, (const char *)ev->data.p);
        break;
    case SY_EV_ERROR:
        fprintf(stderr, "gateway error %d: %.*s\n", ev->code, (int)ev->data.n, (const char *)ev->data.p);
        break;
    case SY_EV_DISCONNECT:
        fprintf(stderr, "disconnected (%s)\n", ev->sys_errno ? strerror(ev->sys_errno) : "by the gateway");
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
        exit(2);
    }
    fclose(f);
    n = strcspn(buf, "\r\n");
    buf[n] = '\0';
    return n;
}

/* pending_line: a whole line waits in line[] (it could not be sent yet). */
static int pending_line(void) { return memchr(line, '\n', line_len) != NULL; }

/* send_lines sends the complete lines in line[]; a full resend buffer
 * leaves them for later. */
static void send_lines(struct sy_client *c)
{
    char *nl;
    while ((nl = memchr(line, '\n', line_len)) != NULL) {
        size_t n = (size_t)(nl - line);
        int64_t r = sy_send(c, (const uint8_t *)line, n, 1);
        if (r == SY_EFULL)
            return;
        if (r < 0)
            fprintf(stderr, "line dropped: %s\n", sy_strerror((int)r));
        memmove(line, nl + 1, line_len - n - 1);
        line_len -= n + 1;
    }
}

int main(int argc, char **argv)
{
    static char secret[512];
    struct sy_config cfg;
    struct sy_client c;
    struct pollfd p[2];
    long want = -1;
    int opt, stdin_open = 1, err;
    signal(SIGPIPE, SIG_IGN);
    memset(&cfg, 0, sizeof cfg);
    while ((opt = getopt(argc, argv, "s:n:")) != -1) {
        if (opt == 's') {
            cfg.secret_len = read_secret(optarg, secret, sizeof secret);
            cfg.secret = (const uint8_t *)secret;
        } else if (opt == 'n') {
            want = atol(optarg);
        } else {
            fprintf(stderr, "usage: %s [-s SECRET_FILE] [-n REPLIES] HOST:PORT DEVICE_ID\n", argv[0]);
            return 2;
        }
    }
    if (argc - optind != 2) {
        fprintf(stderr, "usage: %s [-s SECRET_FILE] [-n REPLIES] HOST:PORT DEVICE_ID\n", argv[0]);
        return 2;
    }
    cfg.addr = argv[optind];
    cfg.id = argv[optind + 1];
    cfg.rx_buf = rx_buf;
    cfg.rx_cap = sizeof rx_buf;
    cfg.tx_buf = tx_buf;
    cfg.tx_cap = sizeof tx_buf;
    cfg.resend_buf = resend_buf;
    cfg.resend_cap = sizeof resend_buf;
    cfg.on_event = on_event;
    if ((err = sy_init(&c, &cfg)) != SY_OK || (err = sy_start(&c, now_ms())) != SY_OK) {
        fprintf(stderr, "device: %s\n", sy_strerror(err));
        return 2;
    }
    for (;;) {
        int wait = sy_tick(&c, now_ms());
        int done_input = want >= 0 ? replies >= want : !stdin_open && !pending_line();
        if (sy_state(&c) == SY_CLOSED)
            return 1;
        if (done_input && line_len == 0 && sy_unacked(&c) == 0 && sy_state(&c) == SY_READY)
            return 0;
        /* read stdin only while a line can be taken */
        p[0].fd = stdin_open && !pending_line() && line_len < sizeof line ? 0 : -1;
        p[0].events = POLLIN;
        p[1].fd = sy_fd(&c);
        p[1].events = sy_want_events(&c);
        p[0].revents = p[1].revents = 0;
        if (poll(p, 2, wait) < 0 && errno != EINTR)
            return 1;
        if (p[0].revents & (POLLIN | POLLHUP)) {
            ssize_t n = read(0, line + line_len, sizeof line - line_len);
            if (n <= 0) {
                stdin_open = 0;
                if (line_len > 0 && line_len < sizeof line)
                    line[line_len++] = '\n'; /* the last line without a newline */
            } else {
                line_len += (size_t)n;
            }
            if (line_len == sizeof line && !pending_line())
                line[line_len - 1] = '\n'; /* a line longer than the buffer: cut */
        }
        if (p[1].fd >= 0 && (p[1].revents & (POLLIN | POLLHUP | POLLERR)))
            sy_on_readable(&c, now_ms());
        if (p[1].fd >= 0 && p[1].fd == sy_fd(&c) && (p[1].revents & POLLOUT))
            sy_on_writable(&c, now_ms());
        send_lines(&c);
    }
}
