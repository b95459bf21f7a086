/*
 * port_fx.h - loopback ports for the nodes of the real-server unit tests
 * (test_server.c, test_server_chunk.c).
 *
 * A port is chosen below the kernel's ephemeral range, not by binding port
 * 0: the nodes connect to each other from ephemeral ports as soon as they
 * start, and a connection to a port of that range where nobody listens yet
 * can be given that very port as its source (a TCP self-connect), which
 * keeps the node meant for the port from binding it ("address already in
 * use", seen once in a clean-clone CI run).
 */
#ifndef KV_TEST_PORT_FX_H
#define KV_TEST_PORT_FX_H
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static inline uint16_t kv_test_free_port(void)
{
	unsigned lo = 32768, hi = 60999;
	FILE *f = fopen("/proc/sys/net/ipv4/ip_local_port_range", "r");
	if (f) {
		if (fscanf(f, "%u %u", &lo, &hi) != 2)
			lo = 32768;
		fclose(f);
	}
	static unsigned next;
	if (next == 0)
		next = (unsigned)getpid() * 7919u + (unsigned)time(NULL);
	for (int tries = 0; lo > 20000 && tries < 1000; tries++) {
		unsigned port = 20000 + next++ % (lo - 20000);
		int fd = socket(AF_INET, SOCK_STREAM, 0);
		if (fd < 0)
			break;
		struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
		a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		int ok = bind(fd, (struct sockaddr *)&a, sizeof a) == 0;
		close(fd);
		if (ok)
			return (uint16_t)port;
	}
	/* No room below the ephemeral range: let the kernel choose. */
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = { .sin_family = AF_INET };
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	socklen_t len = sizeof a;
	if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) != 0 ||
	    getsockname(fd, (struct sockaddr *)&a, &len) != 0)
		a.sin_port = 0;
	if (fd >= 0)
		close(fd);
	return ntohs(a.sin_port);
}

#endif
