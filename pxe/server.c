/* Glue of rackbootd: owns the event loop, the registry and the three
 * servers, and their order of start-up and shutdown. No protocol logic
 * lives here. Start-up failures name what to fix; nothing starts half-way:
 * if one server cannot start, the others are torn down before returning. */
#include "pxe/server.h"
#include "common/log.h"
#include "common/loop.h"
#include "common/util.h"
#include "pxe/dhcp.h"
#include "pxe/http.h"
#include "pxe/netif.h"
#include "pxe/privdrop.h"
#include "pxe/registry.h"
#include "pxe/tftp.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <unistd.h>

static void on_signal(struct rb_io *io, int fd, uint32_t events, void *userdata)
{
	struct signalfd_siginfo si;

	if (read(fd, &si, sizeof(si)) != sizeof(si))
		return;
	log_info("signal %u: shutting down", si.ssi_signo);
	rb_loop_quit(userdata);
}

/* /metrics reads the DHCP and TFTP counters from HTTP threads; they live
 * on the loop thread, so the loop copies them over once a second. */
struct stats_copy {
	struct rb_timer *timer;
	struct dhcp_server *dhcp;
	struct tftp_server *tftp;
	struct http_server *http;
};

static void copy_stats(struct rb_timer *t, void *userdata)
{
	struct stats_copy *sc = userdata;
	struct dhcp_stats d;
	struct tftp_stats f;

	if (sc->dhcp)
		dhcp_server_stats(sc->dhcp, &d);
	if (sc->tftp)
		tftp_server_stats(sc->tftp, &f);
	http_server_set_stats(sc->http, sc->dhcp ? &d : NULL, sc->tftp ? &f : NULL);
	rb_timer_arm(t, rb_now_usec() + 1000000);
}

static int resolve_addresses(struct rb_config *cfg)
{
	struct netif_info ni;
	char a[INET_ADDRSTRLEN];
	int r;

	if (!*cfg->interface) {
		if (!cfg->server_addr.s_addr && cfg->dhcp_mode != RB_DHCP_OFF) {
			log_error("DHCP needs to know which network to serve: set interface "
			          "(e.g. --interface br0) or server_address in the config");
			return -EINVAL;
		}
		return 0;
	}
	r = netif_get(cfg->interface, &ni);
	if (r < 0) {
		log_error("interface %s: %s (check `ip -br addr`)", cfg->interface,
		          r == -ENODEV ? "no such interface" : "has no IPv4 address");
		return r;
	}
	if (!cfg->server_addr.s_addr)
		cfg->server_addr = ni.addr;
	log_info("serving on %s (%s, mtu %u)", cfg->interface,
	         inet_ntop(AF_INET, &cfg->server_addr, a, sizeof(a)), ni.mtu);
	return 0;
}

static void check_boot_files(const struct rb_config *cfg)
{
	const char *files[] = { cfg->boot_bios, cfg->boot_uefi_x64 };
	int dfd;

	if (!cfg->tftp_enable)
		return;
	dfd = open(cfg->tftp_root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0)
		return; /* tftp_server_new() reports it */
	for (size_t i = 0; i < RB_ARRAY_SIZE(files); i++)
		if (*files[i] && faccessat(dfd, files[i], R_OK, 0) < 0)
			log_warn("boot file %s/%s is missing: firmware asking for it will fail "
			         "(copy it from /usr/lib/ipxe/)",
			         cfg->tftp_root, files[i]);
	close(dfd);
}

int rb_server_run(struct rb_config *cfg)
{
	struct rb_loop *loop = NULL;
	struct registry *reg = NULL;
	struct dhcp_server *dhcp = NULL;
	struct tftp_server *tftp = NULL;
	struct http_server *http = NULL;
	struct rb_io *sigio = NULL;
	struct stats_copy sc = { 0 };
	char dbpath[4200];
	sigset_t mask;
	int sfd = -1, r;

	r = resolve_addresses(cfg);
	if (r < 0)
		return r;
	if (mkdir(cfg->state_dir, 0750) < 0 && errno != EEXIST) {
		r = -errno;
		log_error("state_dir %s: %s", cfg->state_dir, strerror(errno));
		return r;
	}
	if (*cfg->db_path)
		snprintf(dbpath, sizeof(dbpath), "%s", cfg->db_path);
	else
		snprintf(dbpath, sizeof(dbpath), "%s/registry.db", cfg->state_dir);

	/* Blocked before any thread exists (registry writer, HTTP pool), so
	 * every thread inherits the mask and only the signalfd sees them. */
	sigemptyset(&mask);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &mask, NULL);
	signal(SIGPIPE, SIG_IGN);

	r = registry_open(dbpath, &reg);
	if (r < 0)
		goto out;
	r = rb_loop_new(&loop);
	if (r < 0)
		goto out;

	sfd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
	if (sfd < 0 || rb_io_new(loop, sfd, EPOLLIN, on_signal, loop, &sigio) < 0) {
		r = -errno;
		goto out;
	}

	if (cfg->dhcp_mode != RB_DHCP_OFF) {
		r = dhcp_server_new(loop, cfg, reg, &dhcp);
		if (r < 0) {
			log_error("DHCP: cannot start: %s", strerror(-r));
			goto out;
		}
	}
	if (cfg->tftp_enable) {
		check_boot_files(cfg);
		r = tftp_server_new(loop, cfg, reg, &tftp);
		if (r < 0) {
			log_error("TFTP: cannot start: %s", strerror(-r));
			goto out;
		}
	}
	r = http_server_new(cfg, reg, &http);
	if (r < 0) {
		log_error("HTTP: cannot start on port %u: %s", cfg->http_port, strerror(-r));
		goto out;
	}
	r = rb_drop_privileges(cfg->user, cfg->state_dir);
	if (r < 0)
		goto out;
	sc.dhcp = dhcp;
	sc.tftp = tftp;
	sc.http = http;
	r = rb_timer_new(loop, copy_stats, &sc, &sc.timer);
	if (r < 0)
		goto out;
	copy_stats(sc.timer, &sc);
	log_info("rackbootd ready: dhcp %s, tftp %s, http port %u",
	         cfg->dhcp_mode == RB_DHCP_FULL    ? "full"
	         : cfg->dhcp_mode == RB_DHCP_PROXY ? "proxy"
	                                           : "off",
	         cfg->tftp_enable ? "on" : "off", cfg->http_port);
	r = rb_loop_run(loop);
out:
	rb_timer_free(sc.timer);
	http_server_free(http);
	tftp_server_free(tftp);
	dhcp_server_free(dhcp);
	rb_io_free(sigio);
	if (sfd >= 0)
		close(sfd);
	rb_loop_free(loop);
	registry_free(reg);
	return r;
}
