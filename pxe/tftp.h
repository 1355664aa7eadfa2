/* rackbootd's TFTP server: read requests only, RFC 1350 with option
 * negotiation (blksize, tsize, timeout, windowsize), every transfer on the
 * caller's event loop. */
#pragma once
#include <stdint.h>

struct tftp_server;
struct rb_loop;
struct rb_config;
struct registry;

/* Binds cfg->tftp_port on cfg->server_addr (INADDR_ANY if 0) and opens
 * cfg->tftp_root as a dirfd; must be called before privileges are dropped.
 * reg may be NULL (then no registry events). The caller decides whether
 * cfg->tftp_enable asks for a server at all. */
int tftp_server_new(struct rb_loop *loop, const struct rb_config *cfg, struct registry *reg,
                    struct tftp_server **ret);
/* Ends every transfer (without telling the peers) and closes. NULL is a no-op. */
void tftp_server_free(struct tftp_server *srv);

struct tftp_stats {
	uint64_t requests;   /* well-formed RRQ/WRQ received */
	uint64_t completed;  /* last block acknowledged */
	uint64_t failed;     /* timed out, peer error, I/O error */
	uint64_t refused;    /* answered with an ERROR (not found, access, busy, WRQ) */
	uint64_t bytes_sent; /* DATA payload bytes sent, retransmissions included */
	uint64_t active;     /* transfers in progress now */
};
void tftp_server_stats(const struct tftp_server *srv, struct tftp_stats *ret);
