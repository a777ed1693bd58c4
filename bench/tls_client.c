/*
 * tls_client: new TLS connections with a client certificate, one HTTP request on each
 * (issue 14, "TLS at the handshake limit"; driven by bench/tls_handshake.py).
 *
 * Each connection: TCP connect, a full TLS 1.3 handshake presenting a client certificate
 * (no session is ever offered for resumption), the request sent verbatim, the response read
 * until the server closes or its Content-Length is in, close. Clients are threads, each with
 * one blocking connection at a time, for a given number of seconds; the client certificates
 * are taken in turn across all of them, so consecutive connections are different devices.
 * Failures are counted, never fatal. One summary line goes to stdout:
 *
 *   RESULT connections=N ok=N failed=N ... p50_us=N p99_us=N seconds=S rate=R
 *
 * ok: a 2xx response read in full; latencies (connect to close) are those of the ok ones;
 * rate: ok connections per second of wall time.
 *
 * Build: gcc -O2 -Wall -Wextra -o build/bench/tls_client bench/tls_client.c -lssl -lcrypto
 */

#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#define MAX_CLIENTS 1024
#define HEAD_MAX 16384 /* a response head longer than this is counted as a failure */

struct device {
    X509 *cert;
    EVP_PKEY *key;
    STACK_OF(X509) *chain; /* certificates after the first in the file: sent as intermediates */
};

enum outcome { OK, CONNECT_FAILED, HANDSHAKE_FAILED, IO_FAILED, NOT_2XX };

struct client {
    pthread_t thread;
    unsigned long counts[NOT_2XX + 1];
    unsigned long resumed;
    uint32_t *latencies_us; /* of the OK connections */
    size_t latency_count, latency_capacity;
    char first_error[256];
};

/* Set up once in main, read-only while the clients run (except next_device). */
static SSL_CTX *ctx;
static struct device *devices;
static size_t device_count;
static atomic_size_t next_device;
static char *request;
static size_t request_length;
static struct sockaddr_storage address;
static socklen_t address_length;
static const char *host;
static int host_is_ip;
static struct timespec deadline;
static int io_timeout_seconds = 10;

static void usage(const char *program)
{
    fprintf(stderr,
            "usage: %s -p PORT -C CAFILE -r REQUEST_FILE (-k CERT:KEY ... | -K PAIRS_FILE)\n"
            "          [-H HOST] [-d SECONDS] [-c CLIENTS] [-s TLS13_SUITE] [-t IO_TIMEOUT]\n"
            "  -H host to connect to and verify the server certificate for (127.0.0.1)\n"
            "  -p port                     -d seconds to run (10)\n"
            "  -c concurrent clients (2)   -C CA file verifying the server\n"
            "  -k client certificate and key files, CERT:KEY (repeatable)\n"
            "  -K file of client certificate/key pairs, \"CERT KEY\" per line\n"
            "  -s TLS 1.3 cipher suite (TLS_AES_128_GCM_SHA256)\n"
            "  -r file holding the HTTP request, sent verbatim on every connection\n"
            "  -t seconds any one read or write may block (10)\n",
            program);
    exit(2);
}

static double seconds_between(const struct timespec *from, const struct timespec *to)
{
    return (double)(to->tv_sec - from->tv_sec) + (double)(to->tv_nsec - from->tv_nsec) / 1e9;
}

/* Whether `grace` seconds have passed since the deadline. */
static int past_deadline(double grace)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return seconds_between(&deadline, &now) >= grace;
}

static void load_device(const char *cert_path, const char *key_path)
{
    FILE *file = fopen(cert_path, "r");
    if (file == NULL) {
        fprintf(stderr, "%s: %s\n", cert_path, strerror(errno));
        exit(2);
    }
    struct device device = {PEM_read_X509(file, NULL, NULL, NULL), NULL, sk_X509_new_null()};
    X509 *extra;
    while ((extra = PEM_read_X509(file, NULL, NULL, NULL)) != NULL)
        sk_X509_push(device.chain, extra);
    fclose(file);
    ERR_clear_error(); /* the read that ended the loop left "no start line" behind */
    file = fopen(key_path, "r");
    if (file == NULL) {
        fprintf(stderr, "%s: %s\n", key_path, strerror(errno));
        exit(2);
    }
    device.key = PEM_read_PrivateKey(file, NULL, NULL, NULL);
    fclose(file);
    if (device.cert == NULL || device.key == NULL ||
        !X509_check_private_key(device.cert, device.key)) {
        fprintf(stderr, "%s, %s: not a PEM certificate and its private key\n", cert_path, key_path);
        exit(2);
    }
    devices = realloc(devices, (device_count + 1) * sizeof *devices);
    if (devices == NULL) {
        perror("realloc");
        exit(2);
    }
    devices[device_count++] = device;
}

static void load_pairs_file(const char *path)
{
    FILE *file = fopen(path, "r");
    if (file == NULL) {
        fprintf(stderr, "%s: %s\n", path, strerror(errno));
        exit(2);
    }
    char line[8192], cert[4096], key[4096];
    while (fgets(line, sizeof line, file) != NULL) {
        if (sscanf(line, "%4095s %4095s", cert, key) == 2)
            load_device(cert, key);
    }
    fclose(file);
}

static void load_request(const char *path)
{
    FILE *file = fopen(path, "rb");
    if (file == NULL) {
        fprintf(stderr, "%s: %s\n", path, strerror(errno));
        exit(2);
    }
    size_t capacity = 4096;
    request = malloc(capacity);
    size_t got;
    while (request != NULL &&
           (got = fread(request + request_length, 1, capacity - request_length, file)) > 0) {
        request_length += got;
        if (request_length == capacity)
            request = realloc(request, capacity *= 2);
    }
    fclose(file);
    if (request == NULL || request_length == 0) {
        fprintf(stderr, "%s: empty or unreadable request\n", path);
        exit(2);
    }
}

static void resolve(const char *port)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    struct addrinfo *found;
    int error = getaddrinfo(host, port, &hints, &found);
    if (error != 0) {
        fprintf(stderr, "%s:%s: %s\n", host, port, gai_strerror(error));
        exit(2);
    }
    memcpy(&address, found->ai_addr, found->ai_addrlen);
    address_length = found->ai_addrlen;
    freeaddrinfo(found);
}

static void setup_context(const char *ca_file, const char *suite)
{
    ctx = SSL_CTX_new(TLS_client_method());
    if (ctx == NULL || !SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION) ||
        !SSL_CTX_set_ciphersuites(ctx, suite) ||
        !SSL_CTX_load_verify_locations(ctx, ca_file, NULL)) {
        fprintf(stderr, "TLS set-up (%s, %s): ", ca_file, suite);
        ERR_print_errors_fp(stderr);
        exit(2);
    }
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    /* No session is kept, so none can be resumed: every handshake is a full one. */
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    /* A server may close the TCP connection without a close_notify once the response is out. */
    SSL_CTX_set_options(ctx, SSL_OP_IGNORE_UNEXPECTED_EOF);
    X509_VERIFY_PARAM *param = SSL_CTX_get0_param(ctx);
    int set = host_is_ip ? X509_VERIFY_PARAM_set1_ip_asc(param, host)
                         : X509_VERIFY_PARAM_set1_host(param, host, 0);
    if (!set) {
        fprintf(stderr, "cannot verify the server as %s\n", host);
        exit(2);
    }
}

static enum outcome failed(struct client *client, enum outcome outcome, const char *what)
{
    if (client->first_error[0] == '\0') {
        char reason[200];
        unsigned long code = ERR_peek_last_error();
        if (code != 0)
            ERR_error_string_n(code, reason, sizeof reason);
        else
            snprintf(reason, sizeof reason, "%s", errno ? strerror(errno) : "closed by the server");
        snprintf(client->first_error, sizeof client->first_error, "%s: %s", what, reason);
    }
    return outcome;
}

/* The value of header `name` in a NUL-terminated response head, or NULL. */
static const char *header(const char *head, const char *name)
{
    size_t length = strlen(name);
    for (const char *line = strstr(head, "\r\n"); line != NULL; line = strstr(line + 2, "\r\n")) {
        if (strncasecmp(line + 2, name, length) == 0 && line[2 + length] == ':')
            return line + 3 + length;
    }
    return NULL;
}

/* Read one response; its status code in *status. */
static enum outcome read_response(struct client *client, SSL *ssl, int *status)
{
    char head[HEAD_MAX + 1], buffer[16384];
    size_t head_used = 0, head_length = 0; /* head_length: 0 until the blank line is in */
    long long body_expected = -1, body_read = 0;
    for (;;) {
        /* The I/O timeout bounds each read; this bounds a server that trickles forever. */
        if (past_deadline(io_timeout_seconds))
            return failed(client, IO_FAILED, "response not over in time");
        int got = SSL_read(ssl, buffer, sizeof buffer);
        if (got <= 0) {
            /* With SSL_OP_IGNORE_UNEXPECTED_EOF a bare TCP close also ends here cleanly. */
            if (SSL_get_error(ssl, got) == SSL_ERROR_ZERO_RETURN)
                break;
            /* A client certificate the server refuses also ends here: in TLS 1.3 the client
             * is done with the handshake before the server has checked its certificate. */
            return failed(client, IO_FAILED, "reading the response");
        }
        if (head_length == 0) {
            size_t take = (size_t)got < HEAD_MAX - head_used ? (size_t)got : HEAD_MAX - head_used;
            memcpy(head + head_used, buffer, take);
            head_used += take;
            head[head_used] = '\0';
            char *end = strstr(head, "\r\n\r\n");
            if (end == NULL) {
                if (head_used == HEAD_MAX)
                    return failed(client, IO_FAILED, "response head too long");
                continue;
            }
            end[2] = '\0'; /* the head's last line keeps its CRLF, which header() looks for */
            head_length = (size_t)(end - head) + 4;
            body_read = (long long)(head_used - head_length) + (got - (long long)take);
            const char *length = header(head, "Content-Length");
            if (length != NULL)
                body_expected = strtoll(length, NULL, 10);
        } else {
            body_read += got;
        }
        if (body_expected >= 0 && body_read >= body_expected)
            break;
    }
    if (head_length == 0 || sscanf(head, "HTTP/%*d.%*d %d", status) != 1)
        return failed(client, IO_FAILED, "no HTTP response head");
    if (body_expected >= 0 && body_read < body_expected)
        return failed(client, IO_FAILED, "response body cut short");
    return *status >= 200 && *status < 300 ? OK : NOT_2XX;
}

static enum outcome exchange(struct client *client, SSL *ssl)
{
    if (SSL_connect(ssl) != 1)
        return failed(client, HANDSHAKE_FAILED, "handshake");
    if (SSL_session_reused(ssl))
        client->resumed++;
    /* Blocking, without partial writes: SSL_write sends the whole request or fails. */
    if (SSL_write(ssl, request, (int)request_length) <= 0)
        return failed(client, IO_FAILED, "sending the request");
    int status = 0;
    enum outcome outcome = read_response(client, ssl, &status);
    if (outcome == NOT_2XX && client->first_error[0] == '\0')
        snprintf(client->first_error, sizeof client->first_error, "HTTP status %d", status);
    SSL_shutdown(ssl); /* sends our close_notify; the server's is not waited for */
    return outcome;
}

static enum outcome one_connection(struct client *client)
{
    ERR_clear_error();
    errno = 0;
    int fd = socket(address.ss_family, SOCK_STREAM, 0);
    if (fd < 0)
        return failed(client, CONNECT_FAILED, "socket");
    /* A stalled server must not hold a client past its deadline for long. */
    struct timeval timeout = {.tv_sec = io_timeout_seconds};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof timeout);
    /* The request follows the client's last handshake flight at once: without this, Nagle
     * would hold it until that flight is acknowledged. */
    int on = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof on);
    if (connect(fd, (struct sockaddr *)&address, address_length) != 0) {
        enum outcome outcome = failed(client, CONNECT_FAILED, "connect");
        close(fd);
        return outcome;
    }
    enum outcome outcome = HANDSHAKE_FAILED;
    SSL *ssl = SSL_new(ctx);
    const struct device *device = &devices[atomic_fetch_add(&next_device, 1) % device_count];
    if (ssl == NULL || !SSL_use_certificate(ssl, device->cert) ||
        !SSL_use_PrivateKey(ssl, device->key) ||
        (sk_X509_num(device->chain) > 0 && !SSL_set1_chain(ssl, device->chain)) ||
        (!host_is_ip && !SSL_set_tlsext_host_name(ssl, host)) || !SSL_set_fd(ssl, fd))
        failed(client, HANDSHAKE_FAILED, "preparing the connection");
    else
        outcome = exchange(client, ssl);
    SSL_free(ssl);
    close(fd);
    return outcome;
}

static void record_latency(struct client *client, const struct timespec *start)
{
    struct timespec end;
    clock_gettime(CLOCK_MONOTONIC, &end);
    if (client->latency_count == client->latency_capacity) {
        size_t capacity = client->latency_capacity ? client->latency_capacity * 2 : 4096;
        uint32_t *grown = realloc(client->latencies_us, capacity * sizeof *grown);
        if (grown == NULL)
            return; /* the connection still counts; only its latency is lost */
        client->latencies_us = grown;
        client->latency_capacity = capacity;
    }
    client->latencies_us[client->latency_count++] = (uint32_t)(seconds_between(start, &end) * 1e6);
}

static void *run_client(void *argument)
{
    struct client *client = argument;
    while (!past_deadline(0)) {
        struct timespec start;
        clock_gettime(CLOCK_MONOTONIC, &start);
        enum outcome outcome = one_connection(client);
        client->counts[outcome]++;
        if (outcome == OK)
            record_latency(client, &start);
    }
    return NULL;
}

static int compare_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

/* Nearest-rank percentile of sorted values. */
static uint32_t percentile(const uint32_t *sorted, size_t count, double fraction)
{
    if (count == 0)
        return 0;
    size_t rank = (size_t)(fraction * (double)count + 0.999999);
    return sorted[(rank ? rank : 1) - 1];
}

int main(int argc, char **argv)
{
    const char *port = NULL, *ca_file = NULL, *request_file = NULL;
    const char *suite = "TLS_AES_128_GCM_SHA256";
    int seconds = 10, client_count = 2, option;
    host = "127.0.0.1";
    while ((option = getopt(argc, argv, "H:p:d:c:C:k:K:s:r:t:")) != -1) {
        char *separator;
        switch (option) {
        case 'H': host = optarg; break;
        case 'p': port = optarg; break;
        case 'd': seconds = atoi(optarg); break;
        case 'c': client_count = atoi(optarg); break;
        case 'C': ca_file = optarg; break;
        case 'k':
            separator = strchr(optarg, ':');
            if (separator == NULL)
                usage(argv[0]);
            *separator = '\0';
            load_device(optarg, separator + 1);
            break;
        case 'K': load_pairs_file(optarg); break;
        case 's': suite = optarg; break;
        case 'r': request_file = optarg; break;
        case 't': io_timeout_seconds = atoi(optarg); break;
        default: usage(argv[0]);
        }
    }
    if (port == NULL || ca_file == NULL || request_file == NULL || device_count == 0 ||
        seconds <= 0 || client_count <= 0 || client_count > MAX_CLIENTS || io_timeout_seconds <= 0)
        usage(argv[0]);
    /* A server closing while we write must give an error, not kill the process. */
    signal(SIGPIPE, SIG_IGN);
    unsigned char ip[sizeof(struct in6_addr)];
    host_is_ip = inet_pton(AF_INET, host, ip) == 1 || inet_pton(AF_INET6, host, ip) == 1;
    load_request(request_file);
    resolve(port);
    setup_context(ca_file, suite);

    struct client *clients = calloc((size_t)client_count, sizeof *clients);
    if (clients == NULL) {
        perror("calloc");
        return 2;
    }
    struct timespec start, end;
    clock_gettime(CLOCK_MONOTONIC, &start);
    deadline = start;
    deadline.tv_sec += seconds;
    int started = 0;
    for (; started < client_count; started++) {
        if (pthread_create(&clients[started].thread, NULL, run_client, &clients[started]) != 0) {
            perror("pthread_create");
            break;
        }
    }
    for (int i = 0; i < started; i++)
        pthread_join(clients[i].thread, NULL);
    clock_gettime(CLOCK_MONOTONIC, &end);

    unsigned long counts[NOT_2XX + 1] = {0}, resumed = 0;
    size_t latency_count = 0;
    for (int i = 0; i < started; i++) {
        for (int kind = 0; kind <= NOT_2XX; kind++)
            counts[kind] += clients[i].counts[kind];
        resumed += clients[i].resumed;
        latency_count += clients[i].latency_count;
    }
    uint32_t *latencies = malloc((latency_count ? latency_count : 1) * sizeof *latencies);
    if (latencies == NULL) {
        perror("malloc");
        return 2;
    }
    size_t filled = 0;
    for (int i = 0; i < started; i++) {
        if (clients[i].latency_count > 0)
            memcpy(latencies + filled, clients[i].latencies_us,
                   clients[i].latency_count * sizeof *latencies);
        filled += clients[i].latency_count;
        if (clients[i].first_error[0] != '\0')
            fprintf(stderr, "client %d, first failure: %s\n", i, clients[i].first_error);
    }
    qsort(latencies, latency_count, sizeof *latencies, compare_u32);

    unsigned long connections = 0;
    for (int kind = 0; kind <= NOT_2XX; kind++)
        connections += counts[kind];
    double elapsed = seconds_between(&start, &end);
    printf("RESULT connections=%lu ok=%lu failed=%lu connect_failed=%lu handshake_failed=%lu "
           "io_failed=%lu status_2xx=%lu non_2xx=%lu resumed=%lu clients=%d devices=%zu "
           "p50_us=%u p99_us=%u seconds=%.3f rate=%.1f\n",
           connections, counts[OK], connections - counts[OK], counts[CONNECT_FAILED],
           counts[HANDSHAKE_FAILED], counts[IO_FAILED], counts[OK], counts[NOT_2XX], resumed,
           started, device_count, percentile(latencies, latency_count, 0.50),
           percentile(latencies, latency_count, 0.99), elapsed, (double)counts[OK] / elapsed);
    return started == client_count ? 0 : 1;
}
