/*
 * device_tls.c — the example device (device.c) over TLS, with OpenSSL as
 * the client's transport (cfg.io_open/io_send/io_recv/io_close).
 *
 *   device_tls [-s SECRET_FILE] [-n REPLIES] [--ca FILE] [--cert FILE --key FILE]
 *              [--servername NAME] HOST:PORT DEVICE_ID
 *
 * The gateway's certificate is verified against --ca (PEM; without it, the
 * system's CAs) and its name against --servername (default HOST: a DNS name
 * is also sent as SNI and checked against the certificate's DNS names, an
 * IP address against its IP addresses). --cert/--key present a client
 * certificate (PEM; the chain in --cert). TLS 1.2 or later.
 *
 * Everything else is device.c: stdin's lines go out as reliable DATA,
 * downstream messages are printed as "< text", reconnects resume. A
 * certificate that does not verify ends the device (exit 1: retrying cannot
 * help); other TLS failures (a reset, a cut connection) reconnect.
 *
 * The handshake is non-blocking: it runs inside SSL_write/SSL_read as the
 * client writes its HELLO and reads, and SSL_ERROR_WANT_READ/WRITE become
 * SY_WANT_READ/SY_WANT_WRITE, so the same poll loop drives it. OpenSSL
 * allocates (one SSL per connection); the Switchyard client still does not.
 *
 * Build: cc -std=c99 -O2 -o device_tls examples/device_tls.c switchyard.c -lssl -lcrypto
 */
#define _POSIX_C_SOURCE 200809L

#include "device_loop.h"

#include <signal.h>

#include <arpa/inet.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

struct tls {
    SSL_CTX *ctx;
    SSL *ssl;
    const char *servername; /* the name to verify, or NULL: the host connected to */
    int broken;             /* a fatal TLS error: no close_notify */
    int verify_failed;
    char err[256];
};

/* ssl_reason names OpenSSL's last error. */
static const char *ssl_reason(void)
{
    unsigned long e = ERR_peek_last_error();
    const char *r = e != 0 ? ERR_reason_error_string(e) : NULL;
    return r != NULL ? r : "error";
}

static int tls_open(void *p, int fd, const char *host)
{
    struct tls *t = p;
    const char *name = t->servername != NULL ? t->servername : host;
    unsigned char ip[16];
    t->broken = t->verify_failed = 0;
    t->err[0] = '\0';
    t->ssl = SSL_new(t->ctx);
    if (t->ssl == NULL || SSL_set_fd(t->ssl, fd) != 1) {
        snprintf(t->err, sizeof t->err, "TLS setup: %s", ssl_reason());
        ERR_clear_error();
        SSL_free(t->ssl);
        t->ssl = NULL;
        return SY_ETRANSPORT;
    }
    SSL_set_connect_state(t->ssl);
    /* the client retries a write with the same bytes and maybe more */
    SSL_set_mode(t->ssl, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    if (inet_pton(AF_INET, name, ip) == 1 || inet_pton(AF_INET6, name, ip) == 1) {
        /* an address: verified against the certificate's IP SANs; no SNI
         * (RFC 6066 allows host names only) */
        if (X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(t->ssl), name) != 1)
            goto fail;
    } else if (SSL_set_tlsext_host_name(t->ssl, name) != 1 || SSL_set1_host(t->ssl, name) != 1) {
        goto fail;
    }
    return SY_OK;
fail:
    snprintf(t->err, sizeof t->err, "TLS: cannot verify the name %s", name);
    SSL_free(t->ssl);
    t->ssl = NULL;
    return SY_ETRANSPORT;
}

/* tls_result maps a failed SSL_read/SSL_write (r <= 0) to the client's
 * codes; eof is what a clean close_notify means to the caller. */
static int tls_result(struct tls *t, int r, int eof)
{
    long v;
    switch (SSL_get_error(t->ssl, r)) {
    case SSL_ERROR_WANT_READ:
        return SY_WANT_READ;
    case SSL_ERROR_WANT_WRITE:
        return SY_WANT_WRITE;
    case SSL_ERROR_ZERO_RETURN: /* the peer's close_notify */
        return eof;
    case SSL_ERROR_SYSCALL:
        t->broken = 1;
        if (errno != 0) {
            snprintf(t->err, sizeof t->err, "TLS: %s", strerror(errno));
            return SY_ESYS;
        }
        snprintf(t->err, sizeof t->err, "TLS: connection closed");
        return SY_ETRANSPORT;
    default:
        t->broken = 1;
        v = SSL_get_verify_result(t->ssl);
        if (v != X509_V_OK) {
            t->verify_failed = 1;
            snprintf(t->err, sizeof t->err, "TLS certificate verify failed: %s",
                     X509_verify_cert_error_string(v));
        } else {
            snprintf(t->err, sizeof t->err, "TLS: %s", ssl_reason());
        }
        ERR_clear_error();
        return SY_ETRANSPORT;
    }
}

static int tls_send(void *p, const uint8_t *buf, size_t n)
{
    struct tls *t = p;
    int r;
    ERR_clear_error();
    errno = 0;
    r = SSL_write(t->ssl, buf, (int)n);
    return r > 0 ? r : tls_result(t, r, SY_ETRANSPORT);
}

static int tls_recv(void *p, uint8_t *buf, size_t n)
{
    struct tls *t = p;
    int r;
    ERR_clear_error();
    errno = 0;
    r = SSL_read(t->ssl, buf, (int)n);
    return r > 0 ? r : tls_result(t, r, 0);
}

static void tls_close(void *p)
{
    struct tls *t = p;
    if (t->ssl == NULL)
        return;
    if (!t->broken && SSL_is_init_finished(t->ssl))
        (void)SSL_shutdown(t->ssl); /* close_notify, best effort: the socket closes next */
    ERR_clear_error();
    SSL_free(t->ssl);
    t->ssl = NULL;
}

static const char *tls_error(void *p, int *fatal)
{
    struct tls *t = p;
    *fatal = t->verify_failed;
    return t->err[0] != '\0' ? t->err : "TLS error";
}

/* tls_init makes the context: TLS 1.2+, the peer verified against ca (or
 * the system's CAs), the client certificate when given. */
static int tls_init(struct tls *t, const char *ca, const char *cert, const char *key)
{
    t->ctx = SSL_CTX_new(TLS_client_method());
    if (t->ctx == NULL || SSL_CTX_set_min_proto_version(t->ctx, TLS1_2_VERSION) != 1)
        return -1;
    SSL_CTX_set_verify(t->ctx, SSL_VERIFY_PEER, NULL);
    if ((ca != NULL ? SSL_CTX_load_verify_locations(t->ctx, ca, NULL) : SSL_CTX_set_default_verify_paths(t->ctx)) != 1) {
        fprintf(stderr, "device_tls: cannot load the CA certificates %s\n", ca != NULL ? ca : "(system)");
        return -1;
    }
    if ((cert == NULL) != (key == NULL)) {
        fprintf(stderr, "device_tls: --cert and --key go together\n");
        return -1;
    }
    if (cert != NULL && (SSL_CTX_use_certificate_chain_file(t->ctx, cert) != 1 ||
                         SSL_CTX_use_PrivateKey_file(t->ctx, key, SSL_FILETYPE_PEM) != 1 ||
                         SSL_CTX_check_private_key(t->ctx) != 1)) {
        fprintf(stderr, "device_tls: cannot use the client certificate %s / key %s\n", cert, key);
        return -1;
    }
    return 0;
}

static int usage(const char *prog)
{
    fprintf(stderr,
            "usage: %s [-s SECRET_FILE] [-n REPLIES] [--ca FILE] [--cert FILE --key FILE] "
            "[--servername NAME] HOST:PORT DEVICE_ID\n",
            prog);
    return 2;
}

int main(int argc, char **argv)
{
    static char secret[512];
    static struct device d;
    static struct tls t;
    const char *ca = NULL, *cert = NULL, *key = NULL, *pos[2];
    int i, npos = 0, rc;
    signal(SIGPIPE, SIG_IGN);
    d.want = -1;
    for (i = 1; i < argc; i++) {
        const char *a = argv[i];
        int has_value = i + 1 < argc;
        if (strcmp(a, "-s") == 0 && has_value) {
            d.cfg.secret_len = read_secret(argv[++i], secret, sizeof secret);
            if (d.cfg.secret_len == 0)
                return 2;
            d.cfg.secret = (const uint8_t *)secret;
        } else if (strcmp(a, "-n") == 0 && has_value) {
            d.want = atol(argv[++i]);
        } else if (strcmp(a, "--ca") == 0 && has_value) {
            ca = argv[++i];
        } else if (strcmp(a, "--cert") == 0 && has_value) {
            cert = argv[++i];
        } else if (strcmp(a, "--key") == 0 && has_value) {
            key = argv[++i];
        } else if (strcmp(a, "--servername") == 0 && has_value) {
            t.servername = argv[++i];
        } else if (a[0] != '-' && npos < 2) {
            pos[npos++] = a;
        } else {
            return usage(argv[0]);
        }
    }
    if (npos != 2)
        return usage(argv[0]);
    if (tls_init(&t, ca, cert, key) != 0) {
        ERR_print_errors_fp(stderr);
        SSL_CTX_free(t.ctx);
        return 2;
    }
    d.cfg.addr = pos[0];
    d.cfg.id = pos[1];
    d.cfg.io_open = tls_open;
    d.cfg.io_send = tls_send;
    d.cfg.io_recv = tls_recv;
    d.cfg.io_close = tls_close;
    d.cfg.io_ctx = &t;
    d.transport_error = tls_error;
    rc = device_run(&d);
    SSL_CTX_free(t.ctx);
    return rc;
}
