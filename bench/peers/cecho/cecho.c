/*
 * cecho is the C reference echo server of the benchmarks: the floor of
 * what an epoll echo costs, with nothing between the kernel and the loop.
 *
 * One thread by default, running one level-triggered epoll loop. With
 * -t N, N threads each run their own loop over their own listener, all
 * bound to the same address with SO_REUSEPORT, so that the kernel spreads
 * the connections among them.
 *
 * Per readiness event it makes one read(2) into a 64 KiB buffer (shared by
 * the thread's connections) and one write(2) of what it read. What the
 * kernel does not take is kept, per connection, and the connection then
 * waits for EPOLLOUT instead of EPOLLIN: it reads nothing more until its
 * remainder is written, so backpressure reaches the client and no byte is
 * lost. A connection is closed when the client ends it, or on any error.
 *
 *	cecho -addr 127.0.0.1:8124 [-t 2]
 *
 * It prints "listening 127.0.0.1:PORT" on stdout once every listener is
 * up, like the other peers, and runs until it is killed.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define READ_BUF (64 * 1024)
#define MAX_EVENTS 256

/* A conn is one client connection. pend holds the bytes read but not yet
 * written back (pend[off:len]); it is allocated only while there are some,
 * so an idle connection costs this struct and nothing more. */
struct conn {
	int fd;
	char *pend;
	size_t off, len;
};

/* A loop is one thread's epoll instance and listener. */
struct loop {
	int ep, ln;
};

static void die(const char *what)
{
	perror(what);
	exit(1);
}

static void conn_close(struct conn *c)
{
	close(c->fd); /* also removes it from the epoll set */
	free(c->pend);
	free(c);
}

static int conn_watch(int ep, struct conn *c, unsigned events)
{
	struct epoll_event ev = {.events = events, .data.ptr = c};
	return epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
}

/* accept_all accepts every pending connection on l's listener. */
static void accept_all(struct loop *l)
{
	for (;;) {
		int fd = accept4(l->ln, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			if (errno == EMFILE || errno == ENFILE)
				usleep(10000); /* out of descriptors: back off, retry on the next event */
			return;        /* EAGAIN: all accepted */
		}
		int one = 1;
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
		struct conn *c = calloc(1, sizeof *c);
		if (c == NULL) {
			close(fd);
			continue;
		}
		c->fd = fd;
		struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
		if (epoll_ctl(l->ep, EPOLL_CTL_ADD, fd, &ev) < 0) {
			close(fd);
			free(c);
		}
	}
}

/* on_readable reads once and writes back what it read. It returns -1 if
 * the connection is to be closed. */
static int on_readable(int ep, struct conn *c, char *buf)
{
	ssize_t n = read(c->fd, buf, READ_BUF);
	if (n == 0)
		return -1; /* the client ended the connection */
	if (n < 0)
		return (errno == EAGAIN || errno == EINTR) ? 0 : -1;
	ssize_t w = write(c->fd, buf, (size_t)n);
	if (w < 0) {
		if (errno != EAGAIN && errno != EINTR)
			return -1;
		w = 0;
	}
	if (w == n)
		return 0;
	size_t rest = (size_t)(n - w);
	c->pend = malloc(rest);
	if (c->pend == NULL)
		return -1;
	memcpy(c->pend, buf + w, rest);
	c->off = 0;
	c->len = rest;
	return conn_watch(ep, c, EPOLLOUT); /* stop reading until it drains */
}

/* on_writable writes what is left of c's remainder. It returns -1 if the
 * connection is to be closed. */
static int on_writable(int ep, struct conn *c)
{
	while (c->off < c->len) {
		ssize_t w = write(c->fd, c->pend + c->off, c->len - c->off);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return errno == EAGAIN ? 0 : -1;
		}
		c->off += (size_t)w;
	}
	free(c->pend);
	c->pend = NULL;
	c->off = c->len = 0;
	return conn_watch(ep, c, EPOLLIN);
}

static void *run_loop(void *arg)
{
	struct loop *l = arg;
	char *buf = malloc(READ_BUF);
	struct epoll_event evs[MAX_EVENTS];
	if (buf == NULL)
		die("malloc");
	for (;;) {
		int n = epoll_wait(l->ep, evs, MAX_EVENTS, -1);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			die("epoll_wait");
		}
		for (int i = 0; i < n; i++) {
			struct conn *c = evs[i].data.ptr;
			if (c == NULL) {
				accept_all(l);
				continue;
			}
			/* Errors and hang-ups surface as a failed read or write. */
			int r = c->pend != NULL ? on_writable(l->ep, c) : on_readable(l->ep, c, buf);
			if (r < 0)
				conn_close(c);
		}
	}
	return NULL;
}

/* listen_on opens a nonblocking listener on sa with SO_REUSEPORT. */
static int listen_on(const struct sockaddr_in *sa)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		die("socket");
	int one = 1;
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0 ||
	    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) < 0)
		die("setsockopt");
	if (bind(fd, (const struct sockaddr *)sa, sizeof *sa) < 0)
		die("bind");
	if (listen(fd, 4096) < 0)
		die("listen");
	return fd;
}

static void usage(void)
{
	fprintf(stderr, "usage: cecho [-addr 127.0.0.1:8124] [-t threads]\n");
	exit(2);
}

int main(int argc, char **argv)
{
	const char *addr = "127.0.0.1:8124";
	int threads = 1;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (a[0] == '-' && a[1] == '-')
			a++; /* --addr as -addr, as Go's flag package takes it */
		if (strcmp(a, "-addr") == 0 && i + 1 < argc)
			addr = argv[++i];
		else if (strcmp(a, "-t") == 0 && i + 1 < argc)
			threads = atoi(argv[++i]);
		else
			usage();
	}
	if (threads < 1)
		usage();

	char host[64];
	const char *colon = strrchr(addr, ':');
	if (colon == NULL || (size_t)(colon - addr) >= sizeof host)
		usage();
	memcpy(host, addr, (size_t)(colon - addr));
	host[colon - addr] = '\0';
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((unsigned short)atoi(colon + 1))};
	if (inet_pton(AF_INET, host, &sa.sin_addr) != 1) {
		fprintf(stderr, "cecho: %s: not an IPv4 address\n", host);
		return 2;
	}

	signal(SIGPIPE, SIG_IGN); /* a write to a reset connection fails with EPIPE instead */

	struct loop *loops = calloc((size_t)threads, sizeof *loops);
	if (loops == NULL)
		die("calloc");
	for (int i = 0; i < threads; i++) {
		loops[i].ln = listen_on(&sa);
		if (i == 0) { /* port 0: the others bind the port the first got */
			socklen_t len = sizeof sa;
			if (getsockname(loops[0].ln, (struct sockaddr *)&sa, &len) < 0)
				die("getsockname");
		}
		if ((loops[i].ep = epoll_create1(EPOLL_CLOEXEC)) < 0)
			die("epoll_create1");
		struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
		if (epoll_ctl(loops[i].ep, EPOLL_CTL_ADD, loops[i].ln, &ev) < 0)
			die("epoll_ctl");
	}
	char ip[INET_ADDRSTRLEN];
	inet_ntop(AF_INET, &sa.sin_addr, ip, sizeof ip);
	printf("listening %s:%d\n", ip, ntohs(sa.sin_port));
	fflush(stdout);

	for (int i = 1; i < threads; i++) {
		pthread_t t;
		if (pthread_create(&t, NULL, run_loop, &loops[i]) != 0)
			die("pthread_create");
	}
	run_loop(&loops[0]);
	return 0;
}
