/* rackbootd's DHCP server: sockets, the receive loop, and the glue between
 * the packet parser (dhcp_packet.c), the boot decision (dhcp_boot.c) and
 * the address pool (leases.c).
 *
 * Owns: the UDP sockets (cfg->dhcp_port; in proxy mode also cfg->proxy_port,
 * where EDK2 and iPXE send their unicast ProxyDHCP REQUEST), one receive and
 * one transmit buffer reused for every packet, the lease pool and a timer
 * that writes the lease file shortly after a change.
 *
 * Where replies go (RFC 2131 4.1, and one deliberate extension):
 *  - a request that came to the proxy port goes back to its source address
 *    and port;
 *  - a relayed request (giaddr set) goes to giaddr:67;
 *  - a request whose source port is not 68 goes back to its source address
 *    and port: that is a relay-like tool or a test on loopback, never a
 *    client in INIT state (RFC 2131 clients always send from port 68);
 *  - a NAK, and any answer to a client without an address, is broadcast to
 *    255.255.255.255:68 out of the interface it came in on (IP_PKTINFO);
 *  - otherwise it is unicast to ciaddr:68.
 *
 * The hot path does no disk I/O and no allocation: the lease file is written
 * at most every FLUSH_DELAY after an ACK/RELEASE (and at shutdown), so an
 * ACK given less than that before a crash may be forgotten; the client then
 * renews and gets the same address back if it is still free.
 * Must never: block, log above debug per packet, or trust a byte of input
 * that the parser has not bounded. */
#include "pxe/dhcp.h"

#include "common/log.h"
#include "common/loop.h"
#include "common/util.h"
#include "pxe/config.h"
#include "pxe/dhcp_boot.h"
#include "pxe/dhcp_packet.h"
#include "pxe/leases.h"
#include "pxe/registry.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define RX_MAX          4096 /* larger datagrams are truncated and dropped */
#define RX_BATCH        64   /* packets per wake-up before yielding to the loop */
#define FLUSH_DELAY_US  200000
#define FLUSH_RETRY_US  5000000
#define WARN_INTERVAL_S 10
#define LEASES_FILE     "dhcp.leases"
#define CLIENT_PORT     68
#define SERVER_PORT     67

struct dhcp_server {
	struct rb_loop *loop;
	const struct rb_config *cfg;
	struct registry *reg;
	int fd, proxy_fd, state_fd;
	struct rb_io *io, *proxy_io;
	struct lease_pool *pool;
	struct rb_timer *flush_timer;
	bool flush_armed, flush_failing;
	int64_t last_exhausted_warn;
	struct dhcp_stats stats;
	uint8_t rx[RX_MAX];
	uint8_t tx[DHCP_PACKET_MAX];
};

/* Everything about one received datagram that the reply needs. */
struct rx_ctx {
	struct sockaddr_in src;
	unsigned ifindex;
	bool proxy_port;
	int fd;
};

static const char *peer(const struct sockaddr_in *s, char buf[static 32])
{
	char a[INET_ADDRSTRLEN];

	inet_ntop(AF_INET, &s->sin_addr, a, sizeof(a));
	snprintf(buf, 32, "%s:%u", a, ntohs(s->sin_port));
	return buf;
}

static int64_t wall_now(void)
{
	return (int64_t)time(NULL);
}

static void send_reply(struct dhcp_server *srv, const struct rx_ctx *rx,
                       const struct dhcp_request *req, size_t len, bool nak)
{
	struct sockaddr_in dst = { .sin_family = AF_INET, .sin_port = htons(CLIENT_PORT) };
	union {
		char buf[CMSG_SPACE(sizeof(struct in_pktinfo))];
		struct cmsghdr align;
	} cm;
	struct iovec iov = { .iov_base = srv->tx, .iov_len = len };
	struct msghdr mh = {
		.msg_name = &dst, .msg_namelen = sizeof(dst), .msg_iov = &iov, .msg_iovlen = 1
	};
	bool bcast = false;
	char p[32];

	if (rx->proxy_port) {
		dst = rx->src;
	} else if (req->giaddr.s_addr) {
		dst.sin_addr = req->giaddr;
		dst.sin_port = htons(SERVER_PORT);
		if (nak)
			srv->tx[10] |= 0x80; /* relay must broadcast a NAK */
	} else if (ntohs(rx->src.sin_port) != CLIENT_PORT && rx->src.sin_addr.s_addr) {
		dst = rx->src;
	} else if (!nak && req->ciaddr.s_addr) {
		dst.sin_addr = req->ciaddr;
	} else {
		dst.sin_addr.s_addr = htonl(INADDR_BROADCAST);
		bcast = true;
	}
	if (bcast && rx->ifindex) {
		struct cmsghdr *c;
		struct in_pktinfo *pi;

		memset(&cm, 0, sizeof(cm));
		mh.msg_control = cm.buf;
		mh.msg_controllen = sizeof(cm.buf);
		c = CMSG_FIRSTHDR(&mh);
		c->cmsg_level = IPPROTO_IP;
		c->cmsg_type = IP_PKTINFO;
		c->cmsg_len = CMSG_LEN(sizeof(struct in_pktinfo));
		pi = (struct in_pktinfo *)CMSG_DATA(c);
		pi->ipi_ifindex = (int)rx->ifindex;
		pi->ipi_spec_dst = srv->cfg->server_addr;
	}
	if (sendmsg(rx->fd, &mh, MSG_DONTWAIT) < 0) {
		log_debug("dhcp: send to %s: %s", peer(&dst, p), strerror(errno));
		return;
	}
	srv->stats.answered++;
}

/* Adds the boot answer (siaddr, file, 60, 43, 97, 67) to a reply. */
static void add_boot(struct dhcp_server *srv, struct dhcp_reply *r, const struct dhcp_request *req,
                     const struct dhcp_boot *b)
{
	/* 43: sub-option 6 (discovery control) = 8: "no menu, no discovery,
	 * boot the file named in this offer"; 10 (menu prompt) with timeout 0.
	 * This is what dnsmasq sends in proxy mode without pxe-service menus. */
	static const uint8_t pxe_opts[] = { 6, 1, 8, 10, 4, 0, 'P', 'X', 'E', 255 };
	bool long_file;

	dhcp_reply_set_siaddr(r, srv->cfg->server_addr);
	if (b->vendor_class)
		dhcp_reply_opt_str(r, DHCP_OPT_VENDOR_CLASS, b->vendor_class);
	if (b->pxe_vendor_opts)
		dhcp_reply_opt(r, DHCP_OPT_VENDOR_ENCAP, pxe_opts, sizeof(pxe_opts));
	if (req->has_uuid && b->kind != DHCP_CLIENT_OTHER)
		dhcp_reply_opt(r, DHCP_OPT_UUID, req->uuid, sizeof(req->uuid));
	if (!b->has_file)
		return;
	long_file = dhcp_reply_set_file(r, b->file) == -ENAMETOOLONG;
	if (long_file || dhcp_request_wants(req, DHCP_OPT_BOOTFILE))
		dhcp_reply_opt_str(r, DHCP_OPT_BOOTFILE, b->file);
}

static void note(struct dhcp_server *srv, const struct dhcp_request *req, const struct dhcp_boot *b,
                 const struct in_addr *ip, const char *event)
{
	char a[INET_ADDRSTRLEN];

	if (ip)
		inet_ntop(AF_INET, ip, a, sizeof(a));
	if (rb_log_level() >= LOG_DEBUG) {
		char mac[18];

		log_debug("dhcp: %s %s ip %s arch %s file %s", event,
		          rb_mac_format(req->chaddr, mac), ip ? a : "-",
		          b->arch_name[0] ? b->arch_name : "-", b->has_file ? b->file : "-");
	}
	if (!srv->reg)
		return;
	registry_note(srv->reg, req->chaddr, b->arch_name[0] ? b->arch_name : NULL, ip ? a : NULL,
	              event, "%s", b->has_file ? b->file : "");
}

static void handle_proxy(struct dhcp_server *srv, const struct rx_ctx *rx,
                         const struct dhcp_request *req)
{
	struct dhcp_boot b;
	struct dhcp_reply r;
	uint8_t type;
	size_t len;

	/* DISCOVER on the DHCP port; REQUEST (or INFORM) on the proxy port.
	 * PXE firmware never selects a proxy offer on port 67, but a naive
	 * client (busybox udhcpc with -V PXEClient) does: it then asks us, by
	 * server id, for 0.0.0.0. Answering that with the same proxy ACK lets
	 * it finish instead of retrying forever; REQUESTs for the site
	 * server's offers (other server id, or none) are never ours. */
	if (req->msg_type == DHCP_DISCOVER && !rx->proxy_port)
		type = DHCP_OFFER;
	else if ((req->msg_type == DHCP_REQUEST || req->msg_type == DHCP_INFORM) && rx->proxy_port)
		type = DHCP_ACK;
	else if (req->msg_type == DHCP_REQUEST && req->has_server_id &&
	         req->server_id.s_addr == srv->cfg->server_addr.s_addr)
		type = DHCP_ACK;
	else
		goto ignore;
	dhcp_boot_decide(req, srv->cfg, &b);
	if (b.kind == DHCP_CLIENT_OTHER || !b.has_file)
		goto ignore;

	dhcp_reply_start(&r, srv->tx, sizeof(srv->tx), req, type);
	if (type == DHCP_ACK)
		dhcp_reply_set_ciaddr(&r, req->ciaddr);
	dhcp_reply_opt_addr(&r, DHCP_OPT_SERVER_ID, srv->cfg->server_addr);
	add_boot(srv, &r, req, &b);
	if (dhcp_reply_finish(&r, &len) < 0)
		goto ignore;
	if (type == DHCP_OFFER && !req->ciaddr.s_addr)
		srv->tx[10] |= 0x80; /* no address yet: ask relays to broadcast */
	send_reply(srv, rx, req, len, false);
	note(srv, req, &b, NULL, type == DHCP_OFFER ? "proxy.offer" : "proxy.ack");
	return;
ignore:
	srv->stats.ignored++;
}

/* Network options of a full-mode OFFER/ACK/INFORM reply. */
static void add_net_options(struct dhcp_server *srv, struct dhcp_reply *r,
                            const struct dhcp_request *req, bool lease)
{
	const struct rb_config *c = srv->cfg;
	const char *host = lease_pool_hostname(srv->pool, req->chaddr);
	struct in_addr bc;

	dhcp_reply_opt_addr(r, DHCP_OPT_SERVER_ID, c->server_addr);
	if (lease) {
		dhcp_reply_opt_u32(r, DHCP_OPT_LEASE_TIME, c->lease_time);
		dhcp_reply_opt_u32(r, DHCP_OPT_T1, c->lease_time / 2);
		dhcp_reply_opt_u32(r, DHCP_OPT_T2, (uint32_t)((uint64_t)c->lease_time * 7 / 8));
	}
	dhcp_reply_opt_addr(r, DHCP_OPT_SUBNET_MASK, c->netmask);
	if (c->router.s_addr)
		dhcp_reply_opt_addr(r, DHCP_OPT_ROUTER, c->router);
	if (c->n_dns)
		dhcp_reply_opt(r, DHCP_OPT_DNS, c->dns, c->n_dns * sizeof(c->dns[0]));
	if (c->domain && *c->domain)
		dhcp_reply_opt_str(r, DHCP_OPT_DOMAIN, c->domain);
	if (host)
		dhcp_reply_opt_str(r, DHCP_OPT_HOSTNAME, host);
	bc.s_addr = (c->pool_start.s_addr & c->netmask.s_addr) | ~c->netmask.s_addr;
	if (dhcp_request_wants(req, DHCP_OPT_BROADCAST))
		dhcp_reply_opt_addr(r, DHCP_OPT_BROADCAST, bc);
}

static void schedule_flush(struct dhcp_server *srv)
{
	if (srv->flush_armed || !lease_pool_dirty(srv->pool))
		return;
	rb_timer_arm(srv->flush_timer, rb_now_usec() + FLUSH_DELAY_US);
	srv->flush_armed = true;
}

static void send_nak(struct dhcp_server *srv, const struct rx_ctx *rx,
                     const struct dhcp_request *req, const char *why)
{
	struct dhcp_reply r;
	size_t len;

	dhcp_reply_start(&r, srv->tx, sizeof(srv->tx), req, DHCP_NAK);
	dhcp_reply_opt_addr(&r, DHCP_OPT_SERVER_ID, srv->cfg->server_addr);
	dhcp_reply_opt_str(&r, DHCP_OPT_MESSAGE, why);
	if (dhcp_reply_finish(&r, &len) < 0)
		return;
	send_reply(srv, rx, req, len, true);
}

/* An OFFER or ACK of address a, with the network and boot options. */
static void send_lease(struct dhcp_server *srv, const struct rx_ctx *rx,
                       const struct dhcp_request *req, const struct dhcp_boot *b, uint8_t type,
                       struct in_addr a)
{
	struct dhcp_reply r;
	size_t len;

	dhcp_reply_start(&r, srv->tx, sizeof(srv->tx), req, type);
	if (type == DHCP_ACK)
		dhcp_reply_set_ciaddr(&r, req->ciaddr);
	dhcp_reply_set_yiaddr(&r, a);
	add_net_options(srv, &r, req, true);
	add_boot(srv, &r, req, b);
	if (dhcp_reply_finish(&r, &len) < 0) {
		srv->stats.ignored++;
		return;
	}
	send_reply(srv, rx, req, len, false);
	note(srv, req, b, &a, type == DHCP_ACK ? "dhcp.ack" : "dhcp.offer");
}

static void full_discover(struct dhcp_server *srv, const struct rx_ctx *rx,
                          const struct dhcp_request *req, const struct dhcp_boot *b)
{
	struct in_addr a;
	int64_t now = wall_now();
	int k;

	k = lease_pool_offer(srv->pool, req->chaddr,
	                     req->has_requested_ip ? &req->requested_ip : NULL, now, &a);
	if (k < 0) {
		if (k == -ENOSPC && now - srv->last_exhausted_warn >= WARN_INTERVAL_S) {
			log_warn("DHCP pool exhausted: no address to offer (grow pool_start.."
			         "pool_end or shorten lease_time)");
			srv->last_exhausted_warn = now;
		}
		srv->stats.ignored++;
		return;
	}
	send_lease(srv, rx, req, b, DHCP_OFFER, a);
}

static void full_request(struct dhcp_server *srv, const struct rx_ctx *rx,
                         const struct dhcp_request *req, const struct dhcp_boot *b)
{
	struct in_addr a;
	int k;

	if (req->has_server_id && req->server_id.s_addr != srv->cfg->server_addr.s_addr) {
		/* SELECTING another server's offer: ours simply times out. */
		srv->stats.ignored++;
		return;
	}
	if (req->has_requested_ip)
		a = req->requested_ip; /* SELECTING or INIT-REBOOT */
	else if (req->ciaddr.s_addr)
		a = req->ciaddr; /* RENEWING or REBINDING */
	else {
		srv->stats.ignored++;
		return;
	}
	k = lease_pool_ack(srv->pool, req->chaddr, a, wall_now(), srv->cfg->lease_time);
	if (k < 0) {
		send_nak(srv, rx, req,
		         k == -EADDRNOTAVAIL ? "address not ours"
		         : k == -EPERM       ? "address reserved"
		                             : "address in use");
		note(srv, req, b, &a, "dhcp.nak");
		return;
	}
	schedule_flush(srv);
	send_lease(srv, rx, req, b, DHCP_ACK, a);
}

static void handle_full(struct dhcp_server *srv, const struct rx_ctx *rx,
                        const struct dhcp_request *req)
{
	struct dhcp_boot b;
	struct dhcp_reply r;
	size_t len;

	if (rx->proxy_port) {
		srv->stats.ignored++;
		return;
	}
	dhcp_boot_decide(req, srv->cfg, &b);
	switch (req->msg_type) {
	case DHCP_DISCOVER:
		full_discover(srv, rx, req, &b);
		return;
	case DHCP_REQUEST:
		full_request(srv, rx, req, &b);
		return;
	case DHCP_RELEASE:
		if (req->has_server_id && req->server_id.s_addr != srv->cfg->server_addr.s_addr)
			break;
		if (lease_pool_release(srv->pool, req->chaddr, req->ciaddr) == 0) {
			schedule_flush(srv);
			note(srv, req, &b, &req->ciaddr, "dhcp.release");
		}
		break;
	case DHCP_DECLINE:
		if (!req->has_requested_ip ||
		    (req->has_server_id && req->server_id.s_addr != srv->cfg->server_addr.s_addr))
			break;
		if (lease_pool_decline(srv->pool, req->chaddr, req->requested_ip, wall_now()) ==
		    0) {
			char a[INET_ADDRSTRLEN];

			inet_ntop(AF_INET, &req->requested_ip, a, sizeof(a));
			log_warn("DHCP: client declined %s: something else uses it", a);
			schedule_flush(srv);
			note(srv, req, &b, &req->requested_ip, "dhcp.decline");
		}
		break;
	case DHCP_INFORM:
		/* RFC 2131 3.4: configuration only, no lease, no yiaddr */
		dhcp_reply_start(&r, srv->tx, sizeof(srv->tx), req, DHCP_ACK);
		dhcp_reply_set_ciaddr(&r, req->ciaddr);
		add_net_options(srv, &r, req, false);
		add_boot(srv, &r, req, &b);
		if (dhcp_reply_finish(&r, &len) == 0) {
			send_reply(srv, rx, req, len, false);
			return;
		}
		break;
	default:
		break;
	}
	srv->stats.ignored++;
}

static void handle_packet(struct dhcp_server *srv, const struct rx_ctx *rx, size_t len,
                          bool truncated)
{
	struct dhcp_request req;
	char p[32];

	srv->stats.received++;
	if (truncated || dhcp_packet_parse(srv->rx, len, &req) < 0) {
		srv->stats.malformed++;
		log_debug("dhcp: malformed packet (%zu bytes%s) from %s dropped", len,
		          truncated ? ", truncated" : "", peer(&rx->src, p));
		return;
	}
	/* Only Ethernet-sized hardware addresses: leases and MAC-based URLs
	 * need 6 bytes; plain BOOTP (no option 53) is not served. */
	if (req.op != DHCP_BOOTREQUEST || req.hlen != 6 || req.msg_type == 0) {
		srv->stats.ignored++;
		return;
	}
	if (srv->cfg->dhcp_mode == RB_DHCP_FULL)
		handle_full(srv, rx, &req);
	else
		handle_proxy(srv, rx, &req);
}

static void on_readable(struct dhcp_server *srv, int fd, bool proxy_port)
{
	for (int n = 0; n < RX_BATCH; n++) {
		union {
			char buf[CMSG_SPACE(sizeof(struct in_pktinfo))];
			struct cmsghdr align;
		} cm;
		struct rx_ctx rx = { .proxy_port = proxy_port, .fd = fd };
		struct iovec iov = { .iov_base = srv->rx, .iov_len = sizeof(srv->rx) };
		struct msghdr mh = { .msg_name = &rx.src,
			             .msg_namelen = sizeof(rx.src),
			             .msg_iov = &iov,
			             .msg_iovlen = 1,
			             .msg_control = cm.buf,
			             .msg_controllen = sizeof(cm.buf) };
		ssize_t k = recvmsg(fd, &mh, MSG_DONTWAIT);

		if (k < 0) {
			if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
				log_debug("dhcp: recvmsg: %s", strerror(errno));
			return;
		}
		for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c))
			if (c->cmsg_level == IPPROTO_IP && c->cmsg_type == IP_PKTINFO) {
				struct in_pktinfo pi;

				memcpy(&pi, CMSG_DATA(c), sizeof(pi));
				rx.ifindex = (unsigned)pi.ipi_ifindex;
			}
		handle_packet(srv, &rx, (size_t)k, (mh.msg_flags & MSG_TRUNC) != 0);
	}
}

static void on_dhcp(struct rb_io *io, int fd, uint32_t events, void *userdata)
{
	on_readable(userdata, fd, false);
}

static void on_proxy(struct rb_io *io, int fd, uint32_t events, void *userdata)
{
	on_readable(userdata, fd, true);
}

static void on_flush(struct rb_timer *t, void *userdata)
{
	struct dhcp_server *srv = userdata;
	int r;

	srv->flush_armed = false;
	r = lease_pool_save(srv->pool, srv->state_fd, LEASES_FILE);
	if (r < 0) {
		if (!srv->flush_failing)
			log_warn("DHCP: cannot write %s/%s: %s (retrying; leases are kept in "
			         "memory)",
			         srv->cfg->state_dir, LEASES_FILE, strerror(-r));
		srv->flush_failing = true;
		rb_timer_arm(srv->flush_timer, rb_now_usec() + FLUSH_RETRY_US);
		srv->flush_armed = true;
		return;
	}
	if (srv->flush_failing)
		log_info("DHCP: %s/%s written again", srv->cfg->state_dir, LEASES_FILE);
	srv->flush_failing = false;
}

static int open_socket(const struct rb_config *cfg, uint16_t port, int *ret)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(port) };
	int one = 1, rcvbuf = 4 << 20;
	int fd, r;

	fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
	    setsockopt(fd, SOL_SOCKET, SO_BROADCAST, &one, sizeof(one)) < 0 ||
	    setsockopt(fd, IPPROTO_IP, IP_PKTINFO, &one, sizeof(one)) < 0) {
		r = -errno;
		goto err;
	}
	/* Bursts of thousands of clients booting at once: a deep queue. */
	if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &rcvbuf, sizeof(rcvbuf)) < 0)
		(void)setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
	if (cfg->interface && *cfg->interface &&
	    setsockopt(fd, SOL_SOCKET, SO_BINDTODEVICE, cfg->interface,
	               (socklen_t)strlen(cfg->interface)) < 0) {
		r = -errno;
		log_error("DHCP: cannot bind to interface %s: %s", cfg->interface, strerror(errno));
		goto err;
	}
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		r = -errno;
		log_error("DHCP: cannot bind UDP port %u: %s%s", port, strerror(errno),
		          errno == EADDRINUSE ? " (another DHCP server running? in proxy mode "
		                                "with dnsmasq on the same host, bind dnsmasq to "
		                                "its own interface)"
		                              : "");
		goto err;
	}
	*ret = fd;
	return 0;
err:
	close(fd);
	return r;
}

static int load_leases(struct dhcp_server *srv)
{
	unsigned skipped = 0;
	int n;

	srv->state_fd = open(srv->cfg->state_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (srv->state_fd < 0) {
		n = -errno;
		log_error("DHCP: state_dir %s: %s", srv->cfg->state_dir, strerror(errno));
		return n;
	}
	n = lease_pool_load(srv->pool, srv->state_fd, LEASES_FILE, &skipped);
	if (n == -ENOENT)
		return 0;
	if (n < 0) {
		log_error("DHCP: cannot read %s/%s: %s", srv->cfg->state_dir, LEASES_FILE,
		          strerror(-n));
		return n;
	}
	log_info("DHCP: %d leases loaded from %s/%s%s", n, srv->cfg->state_dir, LEASES_FILE,
	         skipped ? " (some skipped: no longer in the pool)" : "");
	return 0;
}

int dhcp_server_new(struct rb_loop *loop, const struct rb_config *cfg, struct registry *reg,
                    struct dhcp_server **ret)
{
	struct dhcp_server *srv;
	int r;

	if (cfg->dhcp_mode == RB_DHCP_OFF)
		return -EINVAL;
	srv = calloc(1, sizeof(*srv));
	if (!srv)
		return -ENOMEM;
	srv->loop = loop;
	srv->cfg = cfg;
	srv->reg = reg;
	srv->fd = srv->proxy_fd = srv->state_fd = -1;

	if (cfg->dhcp_mode == RB_DHCP_FULL) {
		r = lease_pool_new(cfg, &srv->pool);
		if (r < 0) {
			log_error("DHCP: bad address pool: %s", strerror(-r));
			goto err;
		}
		r = load_leases(srv);
		if (r < 0)
			goto err;
		r = rb_timer_new(loop, on_flush, srv, &srv->flush_timer);
		if (r < 0)
			goto err;
	}
	r = open_socket(cfg, cfg->dhcp_port, &srv->fd);
	if (r < 0)
		goto err;
	r = rb_io_new(loop, srv->fd, EPOLLIN, on_dhcp, srv, &srv->io);
	if (r < 0)
		goto err;
	if (cfg->dhcp_mode == RB_DHCP_PROXY && cfg->proxy_port) {
		r = open_socket(cfg, cfg->proxy_port, &srv->proxy_fd);
		if (r < 0)
			goto err;
		r = rb_io_new(loop, srv->proxy_fd, EPOLLIN, on_proxy, srv, &srv->proxy_io);
		if (r < 0)
			goto err;
	}
	*ret = srv;
	return 0;
err:
	dhcp_server_free(srv);
	return r;
}

void dhcp_server_free(struct dhcp_server *srv)
{
	if (!srv)
		return;
	if (srv->pool && srv->state_fd >= 0 && lease_pool_dirty(srv->pool)) {
		int r = lease_pool_save(srv->pool, srv->state_fd, LEASES_FILE);

		if (r < 0)
			log_warn("DHCP: cannot write %s/%s at exit: %s", srv->cfg->state_dir,
			         LEASES_FILE, strerror(-r));
	}
	rb_io_free(srv->io);
	rb_io_free(srv->proxy_io);
	rb_timer_free(srv->flush_timer);
	if (srv->fd >= 0)
		close(srv->fd);
	if (srv->proxy_fd >= 0)
		close(srv->proxy_fd);
	if (srv->state_fd >= 0)
		close(srv->state_fd);
	lease_pool_free(srv->pool);
	free(srv);
}

void dhcp_server_stats(const struct dhcp_server *srv, struct dhcp_stats *ret)
{
	*ret = srv->stats;
}
