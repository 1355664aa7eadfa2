/* rackbootd's HTTP server (libmicrohttpd): per-node iPXE scripts under
 * /boot/<mac>.ipxe, static files below the boot and repository roots, and
 * the JSON API under /api/v1/. */
#pragma once
#include <stdint.h>

struct http_server;
struct rb_config;
struct registry;

/* Opens cfg->http_boot_root and cfg->repo_root as directory fds and starts
 * MHD on cfg->http_port (bound to cfg->server_addr when non-zero) with an
 * internal thread pool (cfg->http_threads, epoll) and a connection limit
 * cfg->http_max_conns. Called before privileges are dropped (the port may
 * be < 1024). cfg and reg must outlive the server. */
int http_server_new(const struct rb_config *cfg, struct registry *reg, struct http_server **ret);
/* Stops accepting, waits for the worker threads and closes. NULL is a no-op. */
void http_server_free(struct http_server *srv);

struct http_stats {
	uint64_t requests, errors, bytes_sent;
	uint64_t header_timeouts; /* connections cut by http.header_timeout_s */
};
void http_server_stats(const struct http_server *srv, struct http_stats *ret);

struct dhcp_stats;
struct tftp_stats;
/* The DHCP and TFTP counters /metrics shows: server.c copies them here
 * from the loop thread (NULL = that server does not run). Thread-safe. */
void http_server_set_stats(struct http_server *srv, const struct dhcp_stats *dhcp,
                           const struct tftp_stats *tftp);
