/*
 * switchyard.h — a C99 client for the Switchyard device protocol, version 1
 * (docs/protocol.md; the contract is PROTOCOL.md).
 *
 * One header, one source (switchyard.c), POSIX sockets, no allocation: the
 * caller owns every buffer (struct sy_config) and the poll loop. The library
 * never blocks and never sleeps; it tells the caller what to wait for:
 *
 *     sy_init(&c, &cfg);  sy_start(&c, now_ms());
 *     for (;;) {
 *         struct pollfd p = { sy_fd(&c), sy_want_events(&c), 0 };
 *         int wait = sy_tick(&c, now_ms());          // ms until the next deadline
 *         poll(&p, p.fd >= 0, wait);
 *         if (p.revents & (POLLIN | POLLHUP | POLLERR)) sy_on_readable(&c, now_ms());
 *         if (p.revents & POLLOUT) sy_on_writable(&c, now_ms());
 *     }
 *
 * What happens is reported through one callback, cfg.on_event, called from
 * inside sy_on_readable / sy_on_writable / sy_tick. The callback may call
 * sy_send, sy_ack, the getters, sy_disconnect and sy_stop; payload views in
 * an event are valid only during the call.
 *
 * A client is used by one thread. Times are the caller's monotonic clock in
 * milliseconds (now_ms); only tokens read the wall clock.
 *
 * Layers, usable on their own: the frame codec (sy_frame_*), a MessagePack
 * writer and a total reader (sy_mpw_*, sy_mpr_*), the protocol maps
 * (sy_hello_encode, sy_welcome_decode, sy_goaway_decode, sy_error_decode),
 * the auth token (sy_make_token: SHA-256 and HMAC built in). Every decoder is
 * total: any input returns a result or a negative SY_E* code, never reads out
 * of bounds.
 */
#ifndef SWITCHYARD_H
#define SWITCHYARD_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- wire constants (PROTOCOL.md) ---- */

#define SY_HEADER_SIZE 10          /* length(4) type flags seq(4) */
#define SY_MIN_LENGTH 6            /* smallest legal length field */
#define SY_DEFAULT_MAX_FRAME 65536 /* max_frame until WELCOME says otherwise */
#define SY_MAX_HELLO 4096          /* largest HELLO payload */
#define SY_MAX_PING 64             /* largest PING/PONG payload */
#define SY_MAX_ID 128              /* longest device id */
#define SY_MAX_TAGS 16             /* most HELLO tags */
#define SY_MAX_DEPTH 16            /* deepest MessagePack nesting accepted */

#define SY_FLAG_ACK_REQUESTED 0x01

enum sy_type {
    SY_HELLO = 0x01,
    SY_WELCOME = 0x02,
    SY_PING = 0x03,
    SY_PONG = 0x04,
    SY_DATA = 0x10,
    SY_ACK = 0x11,
    SY_GOAWAY = 0x20,
    SY_ERROR = 0x7F
};

/* ERROR codes the gateway sends (PROTOCOL.md, "Errors"). */
enum sy_code {
    SY_CODE_BAD_REQUEST = 400,
    SY_CODE_UNAUTHORIZED = 401,
    SY_CODE_TIMEOUT = 408,
    SY_CODE_CONFLICT = 409,
    SY_CODE_TOO_LARGE = 413,
    SY_CODE_RATE_LIMITED = 429,
    SY_CODE_INTERNAL = 500,
    SY_CODE_UNAVAILABLE = 503
};

/* Library results: 0 or a count on success, one of these on failure. */
enum sy_result {
    SY_OK = 0,
    SY_EINCOMPLETE = -1, /* decoder: need more bytes (not an error of the input) */
    SY_EBADFRAME = -2,   /* frame: length < 6, unknown type, reserved flag (ERROR 400) */
    SY_ETOOLARGE = -3,   /* frame payload over the limit (ERROR 413), or a send over max_frame */
    SY_EMSGPACK = -4,    /* malformed, truncated or too deeply nested MessagePack */
    SY_EFIELD = -5,      /* a map key holds the wrong type, or a required key is missing */
    SY_ESPACE = -6,      /* a caller-provided buffer is too small */
    SY_EFULL = -7,       /* the resend buffer cannot take this reliable frame now (wait for ACKs) */
    SY_ESTATE = -8,      /* not possible in this state (e.g. best-effort send while not connected) */
    SY_EINVAL = -9,      /* bad argument (id, address, config) */
    SY_ESYS = -10,       /* a socket call failed; errno tells why */
    SY_EAGAIN = -11,     /* best-effort send: the transmit buffer is full now */
    SY_WANT_READ = -12,  /* transport (cfg.io_*): nothing moved; retry once the socket is readable */
    SY_WANT_WRITE = -13, /* transport (cfg.io_*): nothing moved; retry once the socket is writable */
    SY_ETRANSPORT = -14  /* transport (cfg.io_*): failed for good on this connection (e.g. a TLS
                            handshake or certificate verification failure) */
};

/* A view into caller or library memory; never owned. */
struct sy_bytes {
    const uint8_t *p;
    size_t n;
};

/* ---- frame codec ---- */

struct sy_frame {
    uint8_t type;
    uint8_t flags;
    uint32_t seq;
    const uint8_t *payload; /* aliases the decoder's input */
    size_t len;
};

/* sy_frame_encode writes one frame into buf (cap bytes) and returns its size
 * (SY_HEADER_SIZE + n) or SY_ESPACE. */
int sy_frame_encode(uint8_t *buf, size_t cap, uint8_t type, uint8_t flags, uint32_t seq,
                    const uint8_t *payload, size_t n);

/* sy_frame_decode decodes the first frame of buf[0:len]. It returns the bytes
 * the frame used (> 0), SY_EINCOMPLETE when more bytes are needed, or
 * SY_EBADFRAME / SY_ETOOLARGE. The length field is checked against
 * max_payload as soon as its 4 bytes are present. */
int sy_frame_decode(const uint8_t *buf, size_t len, size_t max_payload, struct sy_frame *f);

/* ---- MessagePack ---- */

/* A writer into buf; after any overflow err is SY_ESPACE and len stops. */
struct sy_mpw {
    uint8_t *buf;
    size_t cap, len;
    int err;
};

void sy_mpw_init(struct sy_mpw *w, uint8_t *buf, size_t cap);
void sy_mpw_map(struct sy_mpw *w, uint32_t n);
void sy_mpw_array(struct sy_mpw *w, uint32_t n);
void sy_mpw_str(struct sy_mpw *w, const char *s, size_t n);
void sy_mpw_cstr(struct sy_mpw *w, const char *s);
void sy_mpw_bin(struct sy_mpw *w, const uint8_t *p, size_t n);
void sy_mpw_uint(struct sy_mpw *w, uint64_t v);
void sy_mpw_int(struct sy_mpw *w, int64_t v);
void sy_mpw_bool(struct sy_mpw *w, int v);
void sy_mpw_nil(struct sy_mpw *w);

/* A reader over p[0:n]; every function returns SY_OK or a negative code and
 * never reads past n. */
struct sy_mpr {
    const uint8_t *p;
    size_t n, pos;
};

void sy_mpr_init(struct sy_mpr *r, const uint8_t *p, size_t n);
int sy_mpr_map(struct sy_mpr *r, uint32_t *count);   /* a map header */
int sy_mpr_array(struct sy_mpr *r, uint32_t *count); /* an array header */
int sy_mpr_str(struct sy_mpr *r, struct sy_bytes *s); /* str (nil = empty) */
int sy_mpr_bin(struct sy_mpr *r, struct sy_bytes *b); /* bin or str (nil = empty) */
int sy_mpr_int(struct sy_mpr *r, int64_t *v);         /* any int family fitting int64 */
int sy_mpr_bool(struct sy_mpr *r, int *v);
int sy_mpr_skip(struct sy_mpr *r, int depth);         /* one whole value, nested at most depth */

/* ---- protocol maps ---- */

struct sy_tag {
    const char *key, *value;
};

/* HELLO; keys are written in this order: v, id, token, resume, last, tags.
 * token, resume (and with it last) and tags are left out when empty. */
struct sy_hello {
    const char *id;      /* 1–128 bytes, 0x21–0x7E */
    const char *token;   /* NULL or "" when the gateway has no auth */
    struct sy_bytes resume;
    uint32_t last;       /* highest downstream reliable seq received (with resume) */
    const struct sy_tag *tags;
    size_t ntags;
};

/* sy_hello_encode writes the HELLO map into buf; returns its size,
 * SY_EINVAL (bad id, more than 16 tags) or SY_ESPACE (over cap or over
 * SY_MAX_HELLO). */
int sy_hello_encode(uint8_t *buf, size_t cap, const struct sy_hello *h);

#define SY_MAX_REDIRECTS 8

struct sy_welcome {
    struct sy_bytes session, resume, node;
    int64_t hb, max_frame;
    int resumed;
    uint32_t last;
};

struct sy_goaway {
    struct sy_bytes reason;
    int64_t retry_ms;
    struct sy_bytes redirect[SY_MAX_REDIRECTS]; /* the first SY_MAX_REDIRECTS */
    size_t nredirect;
};

struct sy_errmsg {
    int64_t code;
    struct sy_bytes message;
};

/* Decoders of the gateway's maps; views alias p. Unknown keys are skipped
 * (depth-bounded); trailing bytes after the map are SY_EMSGPACK. */
int sy_welcome_decode(const uint8_t *p, size_t n, struct sy_welcome *w);
int sy_goaway_decode(const uint8_t *p, size_t n, struct sy_goaway *g);
int sy_error_decode(const uint8_t *p, size_t n, struct sy_errmsg *e);

/* ---- auth token ---- */

#define SY_TOKEN_MAX 64 /* 20 digits + '.' + 43 base64url chars, and the NUL */

/* sy_make_token writes "<exp>.<sig>" with sig = base64url_nopad(
 * HMAC-SHA256(secret, "<id>.<exp>")) and a NUL into out; returns its length
 * or SY_ESPACE / SY_EINVAL. */
int sy_make_token(char *out, size_t cap, const uint8_t *secret, size_t secret_len,
                  const char *id, int64_t exp);

void sy_sha256(const uint8_t *p, size_t n, uint8_t out[32]);
void sy_hmac_sha256(const uint8_t *key, size_t klen, const uint8_t *p, size_t n, uint8_t out[32]);

/* ---- the client ---- */

enum sy_state {
    SY_IDLE,       /* not started, or stopped */
    SY_WAITING,    /* disconnected, reconnecting at the next deadline */
    SY_CONNECTING, /* non-blocking connect in progress */
    SY_HANDSHAKE,  /* HELLO queued or sent, waiting for WELCOME */
    SY_READY,      /* WELCOME received: DATA flows */
    SY_CLOSED      /* refused for good (ERROR 400, 401, 409, 413): no reconnect */
};

enum sy_event_type {
    SY_EV_WELCOME,    /* a session is up: welcome, resumed, seq = WELCOME last */
    SY_EV_DATA,       /* downstream DATA: data, seq (0 = best effort) */
    SY_EV_ACKED,      /* the gateway acknowledged upstream reliable DATA up to seq */
    SY_EV_GOAWAY,     /* goaway, data = reason, code = retry_ms: the client reconnects
                         (to the redirects first) within retry_ms and resumes */
    SY_EV_ERROR,      /* ERROR from the gateway: code, message */
    SY_EV_DISCONNECT, /* the connection or a connect attempt ended: code (the ERROR
                         code, or 0), sys_errno and result; the client reconnects by itself */
    SY_EV_CLOSED      /* the client gave up for good (state SY_CLOSED): code */
};

struct sy_event {
    enum sy_event_type type;
    uint32_t seq;
    int code;
    int sys_errno;
    int result;              /* SY_EV_DISCONNECT: SY_ETRANSPORT when a cfg.io_* callback failed
                                (sys_errno is then EPROTO or the errno it set), SY_ESYS for a
                                socket call, else 0 */
    int resumed;
    struct sy_bytes data;    /* DATA payload, ERROR message, GOAWAY reason */
    const struct sy_welcome *welcome; /* SY_EV_WELCOME only */
    const struct sy_goaway *goaway;   /* SY_EV_GOAWAY only */
};

struct sy_client;
typedef void (*sy_event_fn)(void *ctx, struct sy_client *c, const struct sy_event *ev);

/* Resolves "host" "port" into a socket address; return 0 on success. The
 * default accepts numeric IPv4/IPv6 and "localhost" only (no allocation);
 * pass one built on getaddrinfo for DNS names. */
typedef int (*sy_resolve_fn)(void *ctx, const char *host, const char *port, void *sockaddr_out,
                             unsigned *socklen_inout);

#define SY_MAX_ADDR 128 /* longest "host:port" kept (redirects included) */

/* A transport over the connected socket, for TLS through OpenSSL, mbedTLS,
 * wolfSSL, … (the library holds no TLS code; examples/device_tls.c is one
 * on OpenSSL). Leave all four NULL for plain send/recv; io_send and io_recv
 * go together, io_open and io_close are optional. Every call is for the
 * connection io_open last accepted, on the client's thread.
 *
 * io_open: the TCP connect to "host:port" finished; wrap the non-blocking
 *   socket fd (e.g. SSL_set_fd, SNI and the name to verify from host, which
 *   is the host part of the address in use: cfg.addr or a GOAWAY redirect).
 *   Return SY_OK or a negative code (the attempt fails and is retried with
 *   backoff). The handshake need not finish here: io_send and io_recv drive
 *   it (OpenSSL's SSL_write and SSL_read do).
 * io_send: write up to n bytes of p; return the count written (> 0),
 *   SY_WANT_WRITE or SY_WANT_READ (nothing written; the client waits for
 *   that readiness and calls again with the same bytes at the same address,
 *   possibly with more after them: with OpenSSL set
 *   SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER),
 *   or SY_ESYS (errno set) / SY_ETRANSPORT: the connection ends.
 * io_recv: read up to n bytes into p; return the count (> 0), 0 when the
 *   peer closed, SY_WANT_READ or SY_WANT_WRITE (nothing read now), or
 *   SY_ESYS / SY_ETRANSPORT. The client reads until SY_WANT_READ, so bytes a
 *   TLS layer holds decrypted (that poll cannot see) are never left behind:
 *   if a burst is cut short, sy_tick reads on.
 * io_close: the connection ends (the socket is closed right after it); free
 *   or reset the per-connection state. Called once per successful io_open.
 *
 * n is at most INT_MAX. TLS libraries write with write(2), without
 * MSG_NOSIGNAL: a caller with a transport ignores SIGPIPE. */
typedef int (*sy_io_open_fn)(void *io_ctx, int fd, const char *host);
typedef int (*sy_io_send_fn)(void *io_ctx, const uint8_t *p, size_t n);
typedef int (*sy_io_recv_fn)(void *io_ctx, uint8_t *p, size_t n);
typedef void (*sy_io_close_fn)(void *io_ctx);

struct sy_config {
    const char *addr;  /* "host:port" of the gateway; "[v6]:port" for IPv6 */
    const char *id;    /* device id */
    const char *token; /* a token made elsewhere, or NULL */
    const uint8_t *secret; /* or: the auth secret, the client makes a token per connection */
    size_t secret_len;
    int64_t token_ttl_s;   /* token validity with secret; 0 = 3600 */
    const struct sy_tag *tags;
    size_t ntags;

    /* Buffers (the library allocates nothing):
     *   rx: at least SY_HEADER_SIZE + the largest downstream payload accepted
     *       (frames with bigger payloads end the connection); 16 KiB fits most.
     *   tx: at least SY_HEADER_SIZE + SY_MAX_HELLO and one largest frame sent.
     *   resend: the unacknowledged reliable upstream frames, each stored as
     *       SY_HEADER_SIZE + payload bytes; sy_send returns SY_EFULL when full. */
    uint8_t *rx_buf;
    size_t rx_cap;
    uint8_t *tx_buf;
    size_t tx_cap;
    uint8_t *resend_buf;
    size_t resend_cap;

    int manual_ack;           /* 0: ACK each reliable DATA once on_event returned; 1: the
                                 application calls sy_ack (ACK after it persisted) */
    int64_t connect_timeout_ms; /* connect + HELLO → WELCOME; 0 = 10000 */
    int64_t backoff_min_ms;   /* first reconnect delay; 0 = 100 */
    int64_t backoff_max_ms;   /* largest reconnect delay; 0 = 30000 */
    int64_t resend_timeout_ms; /* reliable frames sent and not ACKed this long are sent again
                                  from the last ACK: the gateway may drop one without a 429
                                  (429 goes out at most once a second; a full link, a move's
                                  buffer); 0 = 10000, as the Go client's ResendTimeout */
    int64_t unix_now;         /* a fixed unix time for tokens (tests, devices without a
                                 clock set their own); 0 = time(NULL) at each connect */
    uint32_t seed;            /* jitter seed; 0 = from the clock */

    sy_event_fn on_event;
    void *ctx;
    sy_resolve_fn resolve;
    void *resolve_ctx;

    /* The transport (above); all NULL = plain TCP. */
    sy_io_open_fn io_open;
    sy_io_send_fn io_send;
    sy_io_recv_fn io_recv;
    sy_io_close_fn io_close;
    void *io_ctx;
};

/* The client. Treat every field as private; use the functions below. */
struct sy_client {
    struct sy_config cfg;
    enum sy_state state;
    int fd;
    unsigned gen; /* bumped when a connection ends: callbacks may end it */
    int io_opened;      /* cfg.io_open accepted this connection: io_close is due */
    int tx_wants_read;  /* the transport's last send said SY_WANT_READ */
    int rx_wants_write; /* the transport's last recv said SY_WANT_WRITE */
    int rx_more;        /* a read burst was cut short with the transport maybe holding bytes */
    /* receive */
    size_t rx_len;
    uint32_t delivered; /* highest reliable downstream seq given to on_event */
    uint32_t acked;     /* highest downstream seq the application acknowledged */
    uint32_t ack_sent;  /* highest ACK written on this connection */
    int ack_due;
    uint8_t pong[SY_MAX_PING];
    size_t pong_len;
    int pong_due;
    /* transmit */
    size_t tx_len;
    size_t resend_len;   /* bytes of frames in resend_buf */
    uint32_t next_seq;   /* next upstream reliable seq */
    uint32_t sent_upto;  /* highest reliable seq copied to tx on this connection */
    uint32_t up_acked;   /* highest upstream seq the gateway acknowledged */
    /* session */
    char session[64];
    uint8_t resume[64];
    size_t resume_len;
    int64_t hb_ms, max_frame;
    char node[64];
    /* timing */
    int64_t last_recv, last_send, deadline, resend_at;
    int64_t ack_wait;    /* since when the oldest unACKed frame has waited (resend_timeout_ms) */
    uint32_t ack_seen;   /* up_acked when ack_wait was last set */
    int attempt;
    uint32_t rng;
    /* targets: redirects from GOAWAY first, then cfg.addr */
    char redirect[SY_MAX_REDIRECTS][SY_MAX_ADDR];
    size_t nredirect, target;
    int goaway;
    int64_t goaway_at;
    int last_code;
};

/* sy_init checks cfg and prepares c; it connects nothing. */
int sy_init(struct sy_client *c, const struct sy_config *cfg);
/* sy_start begins connecting (non-blocking). */
int sy_start(struct sy_client *c, int64_t now_ms);
/* sy_stop closes the connection and stops reconnecting (state SY_IDLE);
 * unacknowledged frames stay in the resend buffer for a later sy_start. */
void sy_stop(struct sy_client *c);
/* sy_disconnect drops the connection now and reconnects (resuming) at once,
 * e.g. after the device changed networks. */
void sy_disconnect(struct sy_client *c, int64_t now_ms);

int sy_fd(const struct sy_client *c);              /* the socket, or -1 */
/* POLLIN / POLLOUT to wait for, the transport's wishes included (a TLS
 * write waiting for the peer's handshake asks for POLLIN, not POLLOUT). */
short sy_want_events(const struct sy_client *c);
int sy_on_readable(struct sy_client *c, int64_t now_ms);
int sy_on_writable(struct sy_client *c, int64_t now_ms);
/* sy_tick runs the timers (heartbeat, timeouts, reconnect) and returns the
 * milliseconds until it wants to run again (poll's timeout), at most 1000. */
int sy_tick(struct sy_client *c, int64_t now_ms);

/* sy_send queues DATA. Reliable: numbered, kept in the resend buffer until
 * ACKed and resent after a reconnect; allowed in any state but SY_CLOSED;
 * returns the seq (> 0), SY_EFULL, SY_ETOOLARGE. Best effort: only when
 * SY_READY; returns 0, SY_EAGAIN (transmit buffer full) or SY_ESTATE. */
int64_t sy_send(struct sy_client *c, const uint8_t *p, size_t n, int reliable);
/* sy_ack acknowledges downstream reliable DATA up to seq (manual_ack). */
void sy_ack(struct sy_client *c, uint32_t seq);

enum sy_state sy_state(const struct sy_client *c);
int sy_last_code(const struct sy_client *c);       /* last ERROR code, 0 if none */
const char *sy_session(const struct sy_client *c);  /* "" before the first WELCOME */
const char *sy_node(const struct sy_client *c);
size_t sy_unacked(const struct sy_client *c);       /* reliable upstream frames not yet ACKed */
/* The resume token and last downstream seq, to persist across restarts, and
 * to restore before sy_start. */
size_t sy_resume_token(const struct sy_client *c, const uint8_t **tok, uint32_t *last);
int sy_set_resume(struct sy_client *c, const uint8_t *tok, size_t n, uint32_t last);

const char *sy_strerror(int result);

#ifdef __cplusplus
}
#endif
#endif
