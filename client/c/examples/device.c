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
 * given. One poll loop drives stdin and the connection (device_loop.h);
 * nothing is allocated. device_tls.c is the same device over TLS.
 *
 * Build: cc -std=c99 -O2 -o device examples/device.c switchyard.c
 */
#define _POSIX_C_SOURCE 200809L

#include "device_loop.h"

#include <signal.h>

int main(int argc, char **argv)
{
    static char secret[512];
    static struct device d;
    int opt;
    signal(SIGPIPE, SIG_IGN);
    d.want = -1;
    while ((opt = getopt(argc, argv, "s:n:")) != -1) {
        if (opt == 's') {
            d.cfg.secret_len = read_secret(optarg, secret, sizeof secret);
            if (d.cfg.secret_len == 0)
                return 2;
            d.cfg.secret = (const uint8_t *)secret;
        } else if (opt == 'n') {
            d.want = atol(optarg);
        } else {
            fprintf(stderr, "usage: %s [-s SECRET_FILE] [-n REPLIES] HOST:PORT DEVICE_ID\n", argv[0]);
            return 2;
        }
    }
    if (argc - optind != 2) {
        fprintf(stderr, "usage: %s [-s SECRET_FILE] [-n REPLIES] HOST:PORT DEVICE_ID\n", argv[0]);
        return 2;
    }
    d.cfg.addr = argv[optind];
    d.cfg.id = argv[optind + 1];
    return device_run(&d);
}
