/* rackbootd's DHCP server: proxyDHCP (answers PXE/HTTP-boot/iPXE clients
 * only, beside the site's DHCP server) or full DHCP (address pool, leases,
 * reservations), on the shared event loop. */
#pragma once
#include <stdint.h>

struct dhcp_server;
struct rb_loop;
struct rb_config;
struct registry;

/* Opens the sockets (cfg->dhcp_port, and cfg->proxy_port if non-zero in
 * proxy mode) bound to the interface (SO_BINDTODEVICE cfg->interface when
 * set), loads leases in full mode. Called before privileges are dropped;
 * later lease writes happen as the unprivileged user in cfg->state_dir.
 * cfg and reg (may be NULL) must outlive the server. */
int dhcp_server_new(struct rb_loop *loop, const struct rb_config *cfg, struct registry *reg,
                    struct dhcp_server **ret);
/* Writes pending leases, closes the sockets. NULL is a no-op. */
void dhcp_server_free(struct dhcp_server *srv);

struct dhcp_stats {
	uint64_t received, answered, ignored, malformed;
};
void dhcp_server_stats(const struct dhcp_server *srv, struct dhcp_stats *ret);
