/*
 * integ.c — the C client against a real gateway (switchyard gateway with
 * the embedded echo backend). client/c/ctest (a Go test) starts the
 * gateways and runs one scenario per process:
 *
 *   integ echo      ADDR          echo, reliable + ACK, downstream ACKs, takeover by resume (409)
 *   integ resume    ADDR          manual ACKs, redelivery of unacked downstream, resend of unsent upstream
 *   integ auth      ADDR SECRET   token made from the secret, a given token, wrong and missing (401)
 *   integ heartbeat ADDR          (gateway --heartbeat 1) idle for 4.5 s: PINGs keep the session
 *   integ ratelimit ADDR          (gateway --rate-burst 10) 30 reliable frames at once: ERROR 429,
 *                                 go back and resend, every frame echoed once
 *   integ goaway    ADDR NODE     prints "ready"; after the driver drains the gateway: GOAWAY,
 *                                 reconnect to the redirect (WELCOME from NODE), resend
 *   integ transport ADDR          the cfg.io_* callbacks over plain TCP with short reads and
 *                                 writes and "would block" answers (SY_WANT_READ/WRITE), a
 *                                 failing io_open, a resume: what a TLS layer does to the client
 *
 * Exit 0 and "ok SCENARIO" when every check held; 1 with the reason.
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

#include <sys/socket.h>

#ifndef MSG_NOSIGNAL
#define MSG_NOSIGNAL 0
#endif

#define MAX_LOG 64

struct dev {
    const char *name;
    struct sy_client c;
    uint8_t rx[16384], tx[8192], resend[16384];
    char id[64];
    /* what happened, from the callback */
    int welcomes, resumed, errors, last_error, goaways, closed, disconnects, last_result;
    uint32_t acked;
    char goaway_reason[32];
    size_t goaway_redirects;
    int ndata;
    uint32_t seqs[MAX_LOG];
    char payloads[MAX_LOG][32];
};

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void fail(const char *scenario, const char *why)
{
    printf("FAIL %s: %s\n", scenario, why);
    exit(1);
}

static void on_event(void *ctx, struct sy_client *c, const struct sy_event *ev)
{
    struct dev *d = ctx;
    size_t n;
    (void)c;
    switch (ev->type) {
    case SY_EV_WELCOME:
        d->welcomes++;
        d->resumed = ev->resumed;
        break;
    case SY_EV_DATA:
        if (d->ndata < MAX_LOG) {
            n = ev->data.n < 31 ? ev->data.n : 31;
            memcpy(d->payloads[d->ndata], ev->data.p, n);
            d->payloads[d->ndata][n] = '\0';
            d->seqs[d->ndata++] = ev->seq;
        }
        break;
    case SY_EV_ACKED:
        d->acked = ev->seq;
        break;
    case SY_EV_GOAWAY:
        d->goaways++;
        n = ev->data.n < 31 ? ev->data.n : 31;
        memcpy(d->goaway_reason, ev->data.p, n);
        d->goaway_reason[n] = '\0';
        d->goaway_redirects = ev->goaway->nredirect;
        break;
    case SY_EV_ERROR:
        d->errors++;
        d->last_error = ev->code;
        break;
    case SY_EV_DISCONNECT:
        d->disconnects++;
        d->last_result = ev->result;
        break;
    case SY_EV_CLOSED:
        d->closed++;
        break;
    }
    printf("  %s: event %d seq %u code %d\n", d->name, (int)ev->type, (unsigned)ev->seq, ev->code);
    fflush(stdout);
}

struct fake_io;
static void fake_io_config(struct sy_config *cfg, struct fake_io *io);

/* dev_init_io prepares a device; io, when not NULL, is its transport. */
static void dev_init_io(struct dev *d, const char *name, const char *addr, const char *id, int manual_ack,
                        const char *secret, const char *token, struct fake_io *io)
{
    struct sy_config cfg;
    memset(d, 0, sizeof *d);
    d->name = name;
    snprintf(d->id, sizeof d->id, "%s", id);
    memset(&cfg, 0, sizeof cfg);
    cfg.addr = addr;
    cfg.id = d->id;
    cfg.rx_buf = d->rx;
    cfg.rx_cap = sizeof d->rx;
    cfg.tx_buf = d->tx;
    cfg.tx_cap = sizeof d->tx;
    cfg.resend_buf = d->resend;
    cfg.resend_cap = sizeof d->resend;
    cfg.manual_ack = manual_ack;
    cfg.secret = (const uint8_t *)secret;
    cfg.secret_len = secret ? strlen(secret) : 0;
    cfg.token = token;
    cfg.backoff_min_ms = 50;
    cfg.backoff_max_ms = 500;
    cfg.resend_timeout_ms = 1500; /* a frame dropped without a 429 comes back soon */
    cfg.on_event = on_event;
    cfg.ctx = d;
    if (io != NULL)
        fake_io_config(&cfg, io);
    if (sy_init(&d->c, &cfg) != SY_OK)
        fail(name, "sy_init");
}

static void dev_init(struct dev *d, const char *name, const char *addr, const char *id, int manual_ack,
                     const char *secret, const char *token)
{
    dev_init_io(d, name, addr, id, manual_ack, secret, token, NULL);
}

/* run drives the devices' poll loop until cond holds (1) or timeout (0). */
static int run(struct dev **ds, int n, int (*cond)(void *), void *arg, int64_t timeout)
{
    int64_t end = now_ms() + timeout;
    struct pollfd p[4];
    int i, wait;
    while (!cond(arg)) {
        int64_t now = now_ms();
        if (now >= end)
            return 0;
        wait = 200;
        for (i = 0; i < n; i++) {
            int w = sy_tick(&ds[i]->c, now);
            if (w < wait)
                wait = w;
            p[i].fd = sy_fd(&ds[i]->c);
            p[i].events = sy_want_events(&ds[i]->c);
            p[i].revents = 0;
        }
        if (cond(arg))
            return 1;
        if (poll(p, (nfds_t)n, wait) < 0)
            return 0;
        now = now_ms();
        for (i = 0; i < n; i++) {
            if (p[i].fd < 0 || p[i].fd != sy_fd(&ds[i]->c))
                continue;
            if (p[i].revents & (POLLIN | POLLHUP | POLLERR))
                sy_on_readable(&ds[i]->c, now);
            if ((p[i].revents & POLLOUT) && p[i].fd == sy_fd(&ds[i]->c))
                sy_on_writable(&ds[i]->c, now);
        }
    }
    return 1;
}

static int run1(struct dev *d, int (*cond)(void *), void *arg, int64_t timeout)
{
    struct dev *ds[1];
    ds[0] = d;
    return run(ds, 1, cond, arg, timeout);
}

/* ---- conditions ---- */

static int is_ready(void *arg) { return sy_state(&((struct dev *)arg)->c) == SY_READY; }
static int is_closed(void *arg) { return sy_state(&((struct dev *)arg)->c) == SY_CLOSED; }
static int never(void *arg) { (void)arg; return 0; }

/* has_payload: some DATA event carried the payload */
struct want {
    struct dev *d;
    const char *payload;
    uint32_t acked;
};

static int seen(struct dev *d, const char *payload)
{
    int i;
    for (i = 0; i < d->ndata; i++) {
        if (strcmp(d->payloads[i], payload) == 0)
            return 1;
    }
    return 0;
}

static int got_payload_and_ack(void *arg)
{
    struct want *w = arg;
    return seen(w->d, w->payload) && w->d->acked >= w->acked && sy_unacked(&w->d->c) == 0;
}

static void send_or_fail(struct dev *d, const char *payload, int reliable)
{
    if (sy_send(&d->c, (const uint8_t *)payload, strlen(payload), reliable) < 0)
        fail(d->name, "sy_send");
}

static void expect_echo(struct dev *d, const char *payload, uint32_t acked, const char *why)
{
    struct want w;
    w.d = d;
    w.payload = payload;
    w.acked = acked;
    if (!run1(d, got_payload_and_ack, &w, 20000))
        fail(d->name, why);
}

static void start_ready(struct dev *d)
{
    if (sy_start(&d->c, now_ms()) != SY_OK || !run1(d, is_ready, d, 20000))
        fail(d->name, "no WELCOME");
}

/* ---- scenarios ---- */

/* echo: reliable and best-effort DATA echoed, upstream ACKs, downstream
 * ACKs reaching the gateway (a resume with last 0 gets nothing they
 * covered), takeover: the older connection gets 409 and stops. */
static void scenario_echo(const char *addr)
{
    static struct dev a, b;
    struct dev *both[2];
    char id[64];
    const uint8_t *tok;
    uint32_t last;
    size_t n;
    int i;
    snprintf(id, sizeof id, "c-echo-%ld", (long)getpid());
    dev_init(&a, "echo-a", addr, id, 0, NULL, NULL);
    start_ready(&a);
    send_or_fail(&a, "r1", 1);
    send_or_fail(&a, "r2", 1);
    send_or_fail(&a, "b1", 0);
    send_or_fail(&a, "r3", 1);
    expect_echo(&a, "r3", 3, "reliable echo r3 and ACK 3");
    if (!seen(&a, "r1") || !seen(&a, "r2") || !seen(&a, "b1") || a.ndata != 4)
        fail("echo", "not every frame echoed once");
    for (i = 0; i < a.ndata; i++) {
        if (strcmp(a.payloads[i], "b1") == 0 ? a.seqs[i] != 0 : a.seqs[i] == 0)
            fail("echo", "reliable echo without seq, or best-effort echo with one");
    }
    /* The ACKs for 1..3 go out before this frame on the connection: once
     * the gateway ACKed it, it had them. */
    send_or_fail(&a, "sync", 1);
    expect_echo(&a, "sync", 4, "sync echo");
    n = sy_resume_token(&a.c, &tok, &last);
    if (n == 0 || last != 4)
        fail("echo", "no resume token, or last != 4");

    /* b takes the session over by resuming it with a's token and last 0 */
    snprintf(id, sizeof id, "%s", a.id);
    dev_init(&b, "echo-b", addr, id, 0, NULL, NULL);
    if (sy_set_resume(&b.c, tok, n, 0) != SY_OK)
        fail("echo", "sy_set_resume");
    both[0] = &a;
    both[1] = &b;
    if (sy_start(&b.c, now_ms()) != SY_OK || !run(both, 2, is_ready, &b, 20000))
        fail("echo", "b: no WELCOME");
    if (!b.resumed || strcmp(sy_session(&a.c), sy_session(&b.c)) != 0)
        fail("echo", "b did not resume a's session");
    if (!run(both, 2, is_closed, &a, 20000) || sy_last_code(&a.c) != SY_CODE_CONFLICT || a.closed != 1)
        fail("echo", "a did not get 409 and stop");
    send_or_fail(&b, "after", 1); /* the resumed session continues at seq 5 */
    expect_echo(&b, "after", 5, "b: echo after takeover");
    for (i = 0; i < b.ndata; i++) {
        if (b.seqs[i] != 0 && b.seqs[i] <= 3)
            fail("echo", "b got frames a had ACKed: downstream ACKs did not reach the gateway");
    }
    sy_stop(&b.c);
    printf("ok echo\n");
}

static int redelivered(void *arg)
{
    struct dev *d = arg;
    return d->ndata >= 6 + 5 && d->acked >= 8 && sy_unacked(&d->c) == 0;
}

/* resume: manual ACKs; the connection drops with 4..6 unACKed downstream
 * and 7..8 never written; the resumed session redelivers 4..6 and the
 * client resends 7..8. */
static void scenario_resume(const char *addr)
{
    static struct dev a;
    char id[64], session[64];
    static const char *want[5] = {"r4", "r5", "sync", "r7", "r8"};
    int i;
    snprintf(id, sizeof id, "c-resume-%ld", (long)getpid());
    dev_init(&a, "resume", addr, id, 1, NULL, NULL);
    start_ready(&a);
    snprintf(session, sizeof session, "%s", sy_session(&a.c));
    send_or_fail(&a, "r1", 1);
    send_or_fail(&a, "r2", 1);
    send_or_fail(&a, "r3", 1);
    send_or_fail(&a, "r4", 1);
    send_or_fail(&a, "r5", 1);
    expect_echo(&a, "r5", 5, "echo r5");
    sy_ack(&a.c, 3);
    send_or_fail(&a, "sync", 1); /* after ACK 3 on the wire */
    expect_echo(&a, "sync", 6, "sync echo");
    if (a.ndata != 6)
        fail("resume", "want 6 echoes before the drop");
    send_or_fail(&a, "r7", 1);
    send_or_fail(&a, "r8", 1);
    if (sy_unacked(&a.c) != 2)
        fail("resume", "r7 r8 not kept");
    sy_disconnect(&a.c, now_ms()); /* drops the unsent r7 r8 with the connection */
    if (!run1(&a, redelivered, &a, 20000))
        fail("resume", "no redelivery of 4..6 and echo of 7..8");
    if (a.welcomes != 2 || !a.resumed || strcmp(session, sy_session(&a.c)) != 0)
        fail("resume", "not resumed into the same session");
    for (i = 0; i < 5; i++) {
        if (a.seqs[6 + i] != (uint32_t)(4 + i) || strcmp(a.payloads[6 + i], want[i]) != 0) {
            printf("  got seq %u %s at %d\n", (unsigned)a.seqs[6 + i], a.payloads[6 + i], 6 + i);
            fail("resume", "redelivery out of order or missing");
        }
    }
    sy_ack(&a.c, 8);
    sy_stop(&a.c);
    printf("ok resume\n");
}

static void scenario_auth(const char *addr, const char *secret)
{
    static struct dev a, b, c, d;
    static const char *wrong = "not-the-secret";
    char id[64], token[SY_TOKEN_MAX];
    snprintf(id, sizeof id, "c-auth-%ld", (long)getpid());
    dev_init(&a, "auth-secret", addr, id, 0, secret, NULL);
    start_ready(&a);
    send_or_fail(&a, "authed", 1);
    expect_echo(&a, "authed", 1, "echo with token");
    sy_stop(&a.c);

    snprintf(id, sizeof id, "c-auth-token-%ld", (long)getpid());
    if (sy_make_token(token, sizeof token, (const uint8_t *)secret, strlen(secret), id, (int64_t)time(NULL) + 60) < 0)
        fail("auth", "sy_make_token");
    dev_init(&b, "auth-token", addr, id, 0, NULL, token);
    start_ready(&b);
    sy_stop(&b.c);

    snprintf(id, sizeof id, "c-auth-wrong-%ld", (long)getpid());
    dev_init(&c, "auth-wrong", addr, id, 0, wrong, NULL);
    if (sy_start(&c.c, now_ms()) != SY_OK || !run1(&c, is_closed, &c, 20000) || c.last_error != 401 || c.welcomes != 0)
        fail("auth", "wrong secret: no 401");

    snprintf(id, sizeof id, "c-auth-none-%ld", (long)getpid());
    dev_init(&d, "auth-none", addr, id, 0, NULL, NULL);
    if (sy_start(&d.c, now_ms()) != SY_OK || !run1(&d, is_closed, &d, 20000) || sy_last_code(&d.c) != 401)
        fail("auth", "no token: no 401");
    printf("ok auth\n");
}

static void scenario_heartbeat(const char *addr)
{
    static struct dev a;
    char id[64];
    snprintf(id, sizeof id, "c-hb-%ld", (long)getpid());
    dev_init(&a, "heartbeat", addr, id, 0, NULL, NULL);
    start_ready(&a);
    run1(&a, never, NULL, 4500); /* 1.5 × the gateway's idle close (3 × hb 1 s) */
    if (a.welcomes != 1 || a.disconnects != 0 || sy_state(&a.c) != SY_READY)
        fail("heartbeat", "the idle session was closed");
    send_or_fail(&a, "alive", 1);
    expect_echo(&a, "alive", 1, "echo after idling");
    sy_stop(&a.c);
    printf("ok heartbeat\n");
}

static int all_echoed(void *arg)
{
    struct dev *d = arg;
    return d->ndata >= 30 && sy_unacked(&d->c) == 0;
}

/* ratelimit: frames the gateway dropped with ERROR 429 are resent (go
 * back to the last ACK a second later) until every one is through; those
 * it dropped without one (429 goes out at most once a second) come back
 * after resend_timeout_ms. */
static void scenario_ratelimit(const char *addr)
{
    static struct dev a;
    char id[64], p[16];
    int i, j;
    snprintf(id, sizeof id, "c-rate-%ld", (long)getpid());
    dev_init(&a, "ratelimit", addr, id, 0, NULL, NULL);
    start_ready(&a);
    for (i = 1; i <= 30; i++) {
        snprintf(p, sizeof p, "m%d", i);
        send_or_fail(&a, p, 1);
    }
    if (!run1(&a, all_echoed, &a, 30000))
        fail("ratelimit", "not every frame echoed after the 429s");
    if (a.errors == 0 || a.last_error != SY_CODE_RATE_LIMITED)
        fail("ratelimit", "no ERROR 429: the gateway's limit was not reached");
    for (i = 0; i < a.ndata; i++) {
        snprintf(p, sizeof p, "m%d", i + 1);
        if (a.seqs[i] != (uint32_t)(i + 1) || strcmp(a.payloads[i], p) != 0)
            fail("ratelimit", "echoes out of order or twice");
        for (j = 0; j < i; j++) {
            if (a.seqs[j] == a.seqs[i])
                fail("ratelimit", "an echo delivered twice");
        }
    }
    sy_stop(&a.c);
    printf("ok ratelimit\n");
}

static int goaway_done(void *arg)
{
    struct dev *d = arg;
    return d->goaways > 0 && d->welcomes >= 2 && sy_state(&d->c) == SY_READY;
}

static void scenario_goaway(const char *addr, const char *node)
{
    static struct dev a;
    char id[64];
    snprintf(id, sizeof id, "c-goaway-%ld", (long)getpid());
    dev_init(&a, "goaway", addr, id, 0, NULL, NULL);
    start_ready(&a);
    send_or_fail(&a, "before", 1);
    expect_echo(&a, "before", 1, "echo before the drain");
    printf("ready\n");
    fflush(stdout);
    if (!run1(&a, goaway_done, &a, 30000))
        fail("goaway", "no GOAWAY and reconnect");
    if (strcmp(a.goaway_reason, "draining") != 0 || a.goaway_redirects != 1)
        fail("goaway", "GOAWAY without reason draining and one redirect");
    if (strcmp(sy_node(&a.c), node) != 0)
        fail("goaway", "did not reconnect to the redirect");
    send_or_fail(&a, "after", 1);
    {
        struct want w;
        w.d = &a;
        w.payload = "after";
        w.acked = 1;
        if (!run1(&a, got_payload_and_ack, &w, 20000))
            fail("goaway", "no echo through the redirect");
    }
    sy_stop(&a.c);
    printf("ok goaway\n");
}

/* ---- a transport: plain TCP through cfg.io_*, made awkward ---- */

/* fake_io passes bytes through the socket at most 7 (send) or 5 (recv) at a
 * time and answers "would block" as a TLS layer does: every other send
 * SY_WANT_WRITE, every third recv SY_WANT_WRITE (as a TLS read that must
 * write first), and SY_WANT_READ from send when tx_want_read is set. Like
 * TLS it reads the socket in big gulps and holds what it read, where poll
 * cannot see it. */
struct fake_io {
    int fd;
    uint8_t in[4096];
    size_t in_off, in_len;
    int opens, closes, fail_opens, sends, recvs;
    int tx_want_read;          /* the next send says SY_WANT_READ */
    int rx_plain;              /* recv never says SY_WANT_WRITE */
    int rx_want_write_pending; /* the last recv said SY_WANT_WRITE */
    int rx_want_write_seen;    /* ... and sy_want_events asked for POLLOUT then */
    char host[SY_MAX_ADDR];
};

static int fake_open(void *ctx, int fd, const char *host)
{
    struct fake_io *io = ctx;
    if (io->fd >= 0)
        fail("transport", "io_open while a connection is open");
    snprintf(io->host, sizeof io->host, "%s", host);
    if (io->fail_opens > 0) {
        io->fail_opens--;
        return SY_ETRANSPORT;
    }
    io->opens++;
    io->fd = fd;
    io->in_off = io->in_len = 0;
    return SY_OK;
}

static void fake_close(void *ctx)
{
    struct fake_io *io = ctx;
    if (io->fd < 0)
        fail("transport", "io_close without io_open");
    io->closes++;
    io->fd = -1;
    io->rx_want_write_pending = 0; /* that connection's wish and bytes end with it */
    io->in_off = io->in_len = 0;
}

static int fake_send(void *ctx, const uint8_t *p, size_t n)
{
    struct fake_io *io = ctx;
    ssize_t w;
    if (io->fd < 0)
        fail("transport", "io_send without io_open");
    if (io->tx_want_read)
        return SY_WANT_READ;
    if (io->sends++ % 2 == 0)
        return SY_WANT_WRITE;
    w = send(io->fd, p, n < 7 ? n : 7, MSG_NOSIGNAL);
    if (w < 0)
        return errno == EAGAIN || errno == EWOULDBLOCK ? SY_WANT_WRITE : SY_ESYS;
    return (int)w;
}

static int fake_recv(void *ctx, uint8_t *p, size_t n)
{
    struct fake_io *io = ctx;
    ssize_t r;
    if (io->fd < 0)
        fail("transport", "io_recv without io_open");
    io->rx_want_write_pending = 0;
    if (io->recvs++ % 3 == 0 && !io->rx_plain) {
        io->rx_want_write_pending = 1;
        return SY_WANT_WRITE;
    }
    if (io->in_off == io->in_len) {
        r = recv(io->fd, io->in, sizeof io->in, 0);
        if (r < 0)
            return errno == EAGAIN || errno == EWOULDBLOCK ? SY_WANT_READ : SY_ESYS;
        if (r == 0)
            return 0;
        io->in_off = 0;
        io->in_len = (size_t)r;
    }
    if (n > 5)
        n = 5;
    if (n > io->in_len - io->in_off)
        n = io->in_len - io->in_off;
    memcpy(p, io->in + io->in_off, n);
    io->in_off += n;
    return (int)n;
}

static void fake_io_config(struct sy_config *cfg, struct fake_io *io)
{
    memset(io, 0, sizeof *io);
    io->fd = -1;
    cfg->io_open = fake_open;
    cfg->io_send = fake_send;
    cfg->io_recv = fake_recv;
    cfg->io_close = fake_close;
    cfg->io_ctx = io;
}

static struct fake_io *the_io; /* the transport of scenario_transport's device */

/* transport_ready checks, at every turn of the loop, that a recv waiting
 * to write made the client ask for POLLOUT. */
static int transport_ready(void *arg)
{
    struct dev *d = arg;
    struct fake_io *io = the_io;
    if (io->rx_want_write_pending && sy_fd(&d->c) >= 0) {
        if (!(sy_want_events(&d->c) & POLLOUT))
            fail("transport", "a recv said SY_WANT_WRITE and the client did not ask for POLLOUT");
        io->rx_want_write_seen++;
    }
    return sy_state(&d->c) == SY_READY;
}

static void scenario_transport(const char *addr)
{
    static struct dev a;
    static struct fake_io io;
    char id[64], session[64];
    snprintf(id, sizeof id, "c-transport-%ld", (long)getpid());

    dev_init_io(&a, "transport", addr, id, 0, NULL, NULL, &io);
    the_io = &io;
    io.fail_opens = 1; /* the first connection fails in io_open (a TLS setup error) */
    if (sy_start(&a.c, now_ms()) != SY_OK || !run1(&a, transport_ready, &a, 20000))
        fail("transport", "no WELCOME through the transport");
    if (a.disconnects != 1 || a.last_result != SY_ETRANSPORT)
        fail("transport", "a failed io_open was not one DISCONNECT with result SY_ETRANSPORT");
    if (strcmp(io.host, "127.0.0.1") != 0)
        fail("transport", "io_open did not get the host of the address");
    if (io.opens != 1 || io.closes != 0)
        fail("transport", "io_open/io_close not once per connection");
    send_or_fail(&a, "t1", 1);
    send_or_fail(&a, "t2-through-short-writes", 1);
    expect_echo(&a, "t2-through-short-writes", 2, "echo through the transport");

    /* a send that waits to read must not ask for POLLOUT (TLS: it would
     * spin while the peer's handshake is on the way) */
    while (io.rx_want_write_pending) /* no read's wish for POLLOUT in the way */
        sy_on_readable(&a.c, now_ms());
    io.tx_want_read = 1;
    send_or_fail(&a, "t3", 1);
    sy_on_writable(&a.c, now_ms());
    if (sy_want_events(&a.c) != POLLIN)
        fail("transport", "a send waiting to read asked for POLLOUT");
    io.tx_want_read = 0;
    sy_on_readable(&a.c, now_ms()); /* readable (spuriously): the send goes on */
    expect_echo(&a, "t3", 3, "echo after a send that waited to read");

    /* an echo longer than 64 reads of 5 bytes (and no SY_WANT_WRITE to
     * come back for): the rest waits in the transport, poll sees nothing,
     * sy_tick must read on */
    {
        static char big[1000];
        int64_t end = now_ms() + 20000;
        int held = 0;
        memset(big, 'L', sizeof big - 1);
        io.rx_plain = 1;
        send_or_fail(&a, big, 1);
        big[31] = '\0'; /* the log keeps 31 bytes of a payload */
        while (!seen(&a, big) || a.acked < 4) {
            struct pollfd p;
            int wait = sy_tick(&a.c, now_ms());
            if (io.in_off < io.in_len) {
                held++;
                if (wait != 0)
                    fail("transport", "sy_tick would wait in poll while the transport holds bytes");
            }
            if (now_ms() > end)
                fail("transport", "no long echo");
            p.fd = sy_fd(&a.c);
            p.events = sy_want_events(&a.c);
            p.revents = 0;
            poll(&p, 1, wait);
            if (p.revents & (POLLIN | POLLHUP | POLLERR))
                sy_on_readable(&a.c, now_ms());
            if ((p.revents & POLLOUT) && p.fd == sy_fd(&a.c))
                sy_on_writable(&a.c, now_ms());
        }
        if (held == 0)
            fail("transport", "the long echo never waited in the transport");
        io.rx_plain = 0;
    }

    /* the connection drops: the session resumes through a new io_open */
    snprintf(session, sizeof session, "%s", sy_session(&a.c));
    sy_disconnect(&a.c, now_ms());
    if (io.closes != 1)
        fail("transport", "sy_disconnect did not call io_close");
    send_or_fail(&a, "t5", 1);
    if (!run1(&a, transport_ready, &a, 20000) || !a.resumed || strcmp(session, sy_session(&a.c)) != 0)
        fail("transport", "no resume through the transport");
    expect_echo(&a, "t5", 5, "echo after the resume");
    if (io.rx_want_write_seen == 0)
        fail("transport", "no recv said SY_WANT_WRITE while the loop looked");
    sy_stop(&a.c);
    if (io.opens != 2 || io.closes != 2)
        fail("transport", "io_open/io_close not paired");
    printf("ok transport\n");
}

int main(int argc, char **argv)
{
    signal(SIGPIPE, SIG_IGN);
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc >= 3 && strcmp(argv[1], "echo") == 0)
        scenario_echo(argv[2]);
    else if (argc >= 3 && strcmp(argv[1], "resume") == 0)
        scenario_resume(argv[2]);
    else if (argc >= 4 && strcmp(argv[1], "auth") == 0)
        scenario_auth(argv[2], argv[3]);
    else if (argc >= 3 && strcmp(argv[1], "heartbeat") == 0)
        scenario_heartbeat(argv[2]);
    else if (argc >= 3 && strcmp(argv[1], "ratelimit") == 0)
        scenario_ratelimit(argv[2]);
    else if (argc >= 4 && strcmp(argv[1], "goaway") == 0)
        scenario_goaway(argv[2], argv[3]);
    else if (argc >= 3 && strcmp(argv[1], "transport") == 0)
        scenario_transport(argv[2]);
    else {
        fprintf(stderr, "usage: %s echo|resume|heartbeat|ratelimit|transport ADDR | auth ADDR SECRET | goaway ADDR NODE\n", argv[0]);
        return 2;
    }
    return 0;
}
