/* The TFTP server: one listening UDP socket and, per transfer, a UDP socket
 * bound to the local address the request came to and connected to the
 * peer, an open file descriptor, an rb_io and a retransmission rb_timer on
 * the caller's loop. No thread and no buffer per transfer: DATA packets are
 * read with pread() from the transfer's file into one staging buffer shared
 * by the whole (single-threaded) server and leave with sendmmsg(), a batch
 * of blocks per system call, so memory does not grow with the window.
 *
 * Policy, decided here:
 * - Only read requests in octet mode. netascii and mail are refused with
 *   ERROR 0: boot files are binary, and serving netascii as octet would
 *   silently give a text client different bytes than it asked for.
 * - Write requests get ERROR 2 (access violation).
 * - A request with more than TFTP_OPTIONS_MAX options (an option flood)
 *   gets ERROR 8; one larger than REQ_BUF_SIZE gets ERROR 0 (both are
 *   datagrams no boot firmware sends; the answer is smaller than the
 *   request, so it amplifies nothing).
 * - Files are opened below the root with rb_open_beneath(): absolute paths,
 *   "..", backslashes and symlinks leaving the root give ERROR 2, a missing
 *   file ERROR 1, anything that is not a regular file ERROR 2.
 * - blksize is capped by the config and by the interface MTU (no IP
 *   fragments); windowsize by the config. The window never shrinks: a
 *   loss (an ACK short of the burst, a repeated ACK, a timeout) resends a
 *   whole window from the first block not acknowledged (RFC 7440; the
 *   arithmetic is in tftp_proto.c), since receivers count the negotiated
 *   window before they ACK and a shorter burst would stall them.
 * - Retransmission starts at the negotiated timeout or tftp_timeout_ms and
 *   doubles each time up to tftp_retries, then the transfer is dropped.
 *   An OACK is repeated at once when its peer repeats the request, and by
 *   the timer only every OACK_RESEND_USEC (see there why).
 * - The ACK of the last block completes a transfer whatever is pending.
 *   A peer that closes its port (ICMP port unreachable) once the last
 *   block went out got it and lost its final ACK on the way (RFC 1350
 *   section 6 lets a receiver leave right after that ACK): completed,
 *   logged as such, not failed.
 * - A peer (address and port) that repeats its request while its transfer
 *   runs is ignored once DATA flows (the transfer's own retransmission
 *   answers it); while the OACK waits for ACK 0 it gets the OACK again.
 * - A peer that answers the OACK with ERROR 8 (UEFI firmware asking only
 *   for tsize does this) ends its transfer quietly: neither completed nor
 *   failed.
 * - Malformed requests are dropped, logged with the peer (rate limited).
 *
 * It must never read a whole file into memory, block the loop, or open
 * anything outside the TFTP root. */
#include "pxe/tftp.h"
#include "common/log.h"
#include "common/loop.h"
#include "common/util.h"
#include "pxe/config.h"
#include "pxe/netif.h"
#include "pxe/registry.h"
#include "pxe/tftp_proto.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#define REQ_BUF_SIZE 2048 /* a request larger than this is not a TFTP request */
#define LISTEN_BURST 64   /* requests handled per wake-up */
#define BATCH_MAX    64   /* DATA packets per sendmmsg() */
#define STAGE_BYTES  (256 * 1024)
#define RTO_MAX_USEC (64ULL * 1000000)
/* The OACK is repeated by the timer only after this long, at a fixed
 * interval: atftp aborts on a second OACK ("unexpected OACK") and repeats
 * a lost ACK 0 itself after 5 s; a client that lost the OACK repeats its
 * request, which gets the OACK again at once. */
#define OACK_RESEND_USEC (6ULL * 1000000)
#define LOG_BURST        20 /* malformed-packet log lines per LOG_PERIOD */
#define LOG_PERIOD_USEC  (10ULL * 1000000)
#define NAME_LOG_MAX     256

struct tftp_xfer {
	struct tftp_server *srv;
	struct tftp_xfer *prev, *next;
	int sock;
	int fd;
	struct rb_io *io;
	struct rb_timer *timer;
	struct sockaddr_in peer;
	char ip[INET_ADDRSTRLEN];
	char name[NAME_LOG_MAX]; /* escaped file name, for logs and events */
	uint8_t mac[6];
	bool has_mac;
	bool oack_pending; /* OACK sent, waiting for ACK 0 */
	struct tftp_params params;
	struct tftp_window win;
	uint64_t size;
	uint64_t start_usec;
	uint64_t rto_base_usec, rto_usec;
	unsigned retries;
};

struct tftp_server {
	struct rb_loop *loop;
	struct registry *reg;
	int sock;
	int rootfd;
	struct rb_io *io;
	struct in_addr bind_addr;
	uint16_t port;
	struct tftp_limits lim;
	unsigned timeout_ms, max_retries, max_transfers;
	struct tftp_xfer *xfers;
	struct tftp_stats stats;
	/* Staging for DATA payloads, shared by all transfers. */
	uint8_t *stage;
	size_t stage_blocks;
	/* Malformed-input log rate limit. */
	uint64_t log_period_start;
	unsigned log_count, log_suppressed;
};

enum xfer_end_reason { END_DONE, END_FAILED, END_DECLINED };

static bool log_allowed(struct tftp_server *srv)
{
	uint64_t now = rb_now_usec();

	if (now - srv->log_period_start > LOG_PERIOD_USEC) {
		if (srv->log_suppressed)
			log_warn("tftp: %u more malformed packets not logged", srv->log_suppressed);
		srv->log_period_start = now;
		srv->log_count = 0;
		srv->log_suppressed = 0;
	}
	if (srv->log_count < LOG_BURST) {
		srv->log_count++;
		return true;
	}
	srv->log_suppressed++;
	return false;
}

static void format_peer(const struct sockaddr_in *sa, char ip[static INET_ADDRSTRLEN])
{
	if (!inet_ntop(AF_INET, &sa->sin_addr, ip, INET_ADDRSTRLEN))
		snprintf(ip, INET_ADDRSTRLEN, "?");
}

/* ERROR packets for refused requests leave from the listening socket with
 * the request's destination address as source (IP_PKTINFO), so no socket
 * is spent on them. */
static void send_error_from_listener(struct tftp_server *srv, const struct sockaddr_in *peer,
                                     struct in_addr local, uint16_t code, const char *msg)
{
	uint8_t pkt[256];
	union {
		char buf[CMSG_SPACE(sizeof(struct in_pktinfo))];
		struct cmsghdr align;
	} ctl;
	struct iovec iov;
	struct msghdr mh = { 0 };
	int n = tftp_build_error(code, msg, pkt, sizeof(pkt));

	if (n < 0)
		return;
	iov.iov_base = pkt;
	iov.iov_len = (size_t)n;
	mh.msg_name = (void *)peer;
	mh.msg_namelen = sizeof(*peer);
	mh.msg_iov = &iov;
	mh.msg_iovlen = 1;
	if (local.s_addr != INADDR_ANY) {
		struct cmsghdr *cm;
		struct in_pktinfo pi = { .ipi_spec_dst = local };

		memset(&ctl, 0, sizeof(ctl));
		mh.msg_control = ctl.buf;
		mh.msg_controllen = sizeof(ctl.buf);
		cm = CMSG_FIRSTHDR(&mh);
		cm->cmsg_level = IPPROTO_IP;
		cm->cmsg_type = IP_PKTINFO;
		cm->cmsg_len = CMSG_LEN(sizeof(pi));
		memcpy(CMSG_DATA(cm), &pi, sizeof(pi));
	}
	if (sendmsg(srv->sock, &mh, MSG_DONTWAIT) < 0)
		log_debug("tftp: sending ERROR %u: %s", code, strerror(errno));
}

static void xfer_free(struct tftp_xfer *x)
{
	struct tftp_server *srv;

	if (!x)
		return;
	srv = x->srv;
	if (x->prev)
		x->prev->next = x->next;
	else if (srv->xfers == x)
		srv->xfers = x->next;
	if (x->next)
		x->next->prev = x->prev;
	rb_io_free(x->io);
	rb_timer_free(x->timer);
	if (x->sock >= 0)
		close(x->sock);
	if (x->fd >= 0)
		close(x->fd);
	free(x);
}

static void xfer_end(struct tftp_xfer *x, enum xfer_end_reason why, const char *what)
{
	struct tftp_server *srv = x->srv;
	uint64_t usec = rb_now_usec() - x->start_usec;
	double mbps = usec ? (double)x->size / (double)usec : 0.0;

	switch (why) {
	case END_DONE:
		srv->stats.completed++;
		log_info("tftp: sent \"%s\" to %s:%u: %llu bytes in %llu ms (%.1f MB/s), "
		         "blksize %u, window %u, %u losses%s%s",
		         x->name, x->ip, ntohs(x->peer.sin_port), (unsigned long long)x->size,
		         (unsigned long long)(usec / 1000), mbps, x->params.blksize, x->win.window,
		         x->win.losses, what ? ", " : "", what ? what : "");
		if (x->has_mac)
			registry_note(srv->reg, x->mac, NULL, x->ip, "tftp.done", "%s %llu bytes",
			              x->name, (unsigned long long)x->size);
		break;
	case END_DECLINED:
		log_info("tftp: %s:%u ended \"%s\" after option negotiation (%s)", x->ip,
		         ntohs(x->peer.sin_port), x->name, what);
		break;
	case END_FAILED:
		srv->stats.failed++;
		log_info("tftp: transfer of \"%s\" to %s:%u failed after %llu ms, block %llu of "
		         "%llu: %s",
		         x->name, x->ip, ntohs(x->peer.sin_port), (unsigned long long)(usec / 1000),
		         (unsigned long long)x->win.acked, (unsigned long long)x->win.nblocks,
		         what);
		if (x->has_mac)
			registry_note(srv->reg, x->mac, NULL, x->ip, "tftp.error", "%s %s", x->name,
			              what);
		break;
	}
	srv->stats.active--;
	xfer_free(x);
}

/* Sends an ERROR on the transfer's socket and ends it as failed. */
static void xfer_abort(struct tftp_xfer *x, uint16_t code, const char *msg)
{
	uint8_t pkt[160];
	int n = tftp_build_error(code, msg, pkt, sizeof(pkt));

	if (n > 0 && send(x->sock, pkt, (size_t)n, MSG_DONTWAIT) < 0)
		log_debug("tftp: sending ERROR to %s: %s", x->ip, strerror(errno));
	xfer_end(x, END_FAILED, msg);
}

static void xfer_arm(struct tftp_xfer *x)
{
	rb_timer_arm(x->timer, rb_now_usec() + x->rto_usec);
}

static int send_oack(struct tftp_xfer *x)
{
	uint8_t pkt[128];
	int n = tftp_build_oack(&x->params, pkt, sizeof(pkt));

	if (n < 0)
		return n;
	if (send(x->sock, pkt, (size_t)n, MSG_DONTWAIT) < 0 && errno != EAGAIN && errno != ENOBUFS)
		return -errno;
	return 0;
}

/* Payload length of block idx (1-based). */
static size_t block_len(const struct tftp_xfer *x, uint64_t idx)
{
	if (idx < x->win.nblocks)
		return x->params.blksize;
	return (size_t)(x->size - (x->win.nblocks - 1) * x->params.blksize);
}

/* Sends up to count consecutive blocks starting at index first. Returns
 * the number sent (0 when the socket is full), or -errno. */
static int send_blocks(struct tftp_xfer *x, uint64_t first, uint64_t count)
{
	struct tftp_server *srv = x->srv;
	struct mmsghdr msgs[BATCH_MAX];
	struct iovec iov[BATCH_MAX][2];
	uint8_t hdr[BATCH_MAX][TFTP_HEADER_SIZE];
	size_t want = 0, off = 0;
	ssize_t got;
	int sent;

	count = RB_MIN(count, (uint64_t)srv->stage_blocks);
	for (uint64_t i = 0; i < count; i++)
		want += block_len(x, first + i);
	got = want ? pread(x->fd, srv->stage, want, (off_t)((first - 1) * x->params.blksize)) : 0;
	if (got < 0)
		return -errno;
	if ((size_t)got < want)
		return -ESTALE; /* the file shrank under us */

	memset(msgs, 0, sizeof(msgs[0]) * count);
	for (uint64_t i = 0; i < count; i++) {
		size_t len = block_len(x, first + i);

		tftp_build_data_header(first + i, hdr[i]);
		iov[i][0].iov_base = hdr[i];
		iov[i][0].iov_len = TFTP_HEADER_SIZE;
		iov[i][1].iov_base = srv->stage + off;
		iov[i][1].iov_len = len;
		msgs[i].msg_hdr.msg_iov = iov[i];
		msgs[i].msg_hdr.msg_iovlen = 2;
		off += len;
	}
	sent = sendmmsg(x->sock, msgs, (unsigned)count, MSG_DONTWAIT);
	if (sent < 0) {
		if (errno == EAGAIN || errno == ENOBUFS)
			return 0;
		return -errno;
	}
	for (int i = 0; i < sent; i++)
		srv->stats.bytes_sent += block_len(x, first + (uint64_t)i);
	return sent;
}

static bool xfer_send_failed(struct tftp_xfer *x, int r)
{
	if (r == -ESTALE)
		xfer_abort(x, TFTP_EUNDEF, "file changed during transfer");
	else
		xfer_end(x, END_FAILED, strerror(-r));
	return false;
}

/* Sends everything the window allows, then (re)arms the timer. Returns
 * false when the transfer was ended. */
static bool xfer_pump(struct tftp_xfer *x)
{
	uint64_t n;
	int r;

	while ((n = tftp_window_sendable(&x->win)) > 0) {
		r = send_blocks(x, x->win.next, n);
		if (r < 0)
			return xfer_send_failed(x, r);
		if (r == 0) /* socket buffer full: the timer resends */
			break;
		tftp_window_sent(&x->win, (uint64_t)r);
	}
	xfer_arm(x);
	return true;
}

static void xfer_progress(struct tftp_xfer *x)
{
	x->retries = 0;
	x->rto_usec = x->rto_base_usec;
}

static void xfer_on_timer(struct rb_timer *t, void *userdata)
{
	struct tftp_xfer *x = userdata;
	char why[64];

	if (++x->retries > x->srv->max_retries) {
		snprintf(why, sizeof(why), "no answer after %u retransmissions",
		         x->srv->max_retries);
		xfer_abort(x, TFTP_EUNDEF, why);
		return;
	}
	if (x->oack_pending) {
		int r = send_oack(x);

		if (r < 0) {
			xfer_end(x, END_FAILED, strerror(-r));
			return;
		}
		xfer_arm(x);
		return;
	}
	x->rto_usec = RB_MIN(x->rto_usec * 2, RTO_MAX_USEC);
	tftp_window_timeout(&x->win);
	xfer_pump(x);
}

static void xfer_on_reply(struct tftp_xfer *x, const struct tftp_reply *rep)
{
	uint64_t old_acked = x->win.acked;
	char msg[sizeof(rep->error_msg) * 4];

	if (rep->opcode == TFTP_ERROR) {
		char what[sizeof(msg) + 32];

		rb_escape(msg, sizeof(msg), rep->error_msg, strlen(rep->error_msg));
		snprintf(what, sizeof(what), "peer sent ERROR %u \"%s\"", rep->error_code, msg);
		if (x->oack_pending && rep->error_code == TFTP_EOPTNEG)
			xfer_end(x, END_DECLINED, what);
		else
			xfer_end(x, END_FAILED, what);
		return;
	}
	if (x->oack_pending) {
		if (rep->block != 0)
			return;
		x->oack_pending = false;
		xfer_progress(x);
		xfer_pump(x);
		return;
	}
	switch (tftp_window_ack(&x->win, rep->block)) {
	case TFTP_ACK_STALE:
		return;
	case TFTP_ACK_DONE:
		xfer_end(x, END_DONE, NULL);
		return;
	case TFTP_ACK_SEND:
	case TFTP_ACK_RESEND:
		if (x->win.acked > old_acked)
			xfer_progress(x);
		xfer_pump(x);
		return;
	}
}

static void xfer_on_io(struct rb_io *io, int fd, uint32_t events, void *userdata)
{
	struct tftp_xfer *x = userdata;
	uint8_t buf[REQ_BUF_SIZE];
	struct tftp_reply rep;
	ssize_t n;

	/* One datagram per wake-up: the loop is level-triggered, and clients
	 * send one ACK per window, so a drain loop would only add a failing
	 * recv() to every round trip. */
	n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
	if (n < 0) {
		if (errno == EAGAIN || errno == EINTR)
			return;
		/* ECONNREFUSED: the peer's port is gone (ICMP unreachable).
		 * After the last block went out, that is a receiver that
		 * has it all and whose final ACK was lost. */
		if (errno == ECONNREFUSED && !x->oack_pending &&
		    x->win.sent_max == x->win.nblocks) {
			xfer_end(x, END_DONE, "final ACK lost, the peer closed its port");
			return;
		}
		xfer_end(x, END_FAILED, strerror(errno));
		return;
	}
	if (tftp_reply_parse(buf, (size_t)n, &rep) < 0) {
		log_debug("tftp: ignoring %zd-byte packet from %s during transfer", n, x->ip);
		return;
	}
	xfer_on_reply(x, &rep);
}

static int map_open_error(int r, uint16_t *ret_code)
{
	switch (r) {
	case -ENOENT:
	case -ENOTDIR:
	case -ENAMETOOLONG:
		*ret_code = TFTP_ENOTFOUND;
		break;
	case -EACCES:
	case -EPERM:
	case -ELOOP:
	case -EXDEV:
	case -EISDIR:
		*ret_code = TFTP_EACCESS;
		break;
	default:
		*ret_code = TFTP_EUNDEF;
	}
	return r;
}

static struct tftp_xfer *find_xfer(struct tftp_server *srv, const struct sockaddr_in *peer)
{
	for (struct tftp_xfer *x = srv->xfers; x; x = x->next)
		if (x->peer.sin_port == peer->sin_port &&
		    x->peer.sin_addr.s_addr == peer->sin_addr.s_addr)
			return x;
	return NULL;
}

/* Opens the requested file; on failure says which ERROR to send. */
static int open_file(struct tftp_server *srv, const char *name, uint64_t *ret_size,
                     uint16_t *ret_code)
{
	struct stat st;
	int fd = rb_open_beneath(srv->rootfd, name, O_RDONLY | O_NONBLOCK | O_NOCTTY);

	if (fd < 0)
		return map_open_error(fd, ret_code);
	if (fstat(fd, &st) < 0) {
		int r = -errno;

		close(fd);
		return map_open_error(r, ret_code);
	}
	if (!S_ISREG(st.st_mode)) {
		close(fd);
		*ret_code = TFTP_EACCESS;
		return -EACCES;
	}
	*ret_size = (uint64_t)st.st_size;
	return fd;
}

static int xfer_new(struct tftp_server *srv, const struct sockaddr_in *peer, struct in_addr local,
                    int fd, uint64_t size, const struct tftp_request *req, struct tftp_xfer **ret)
{
	struct sockaddr_in la = { .sin_family = AF_INET, .sin_addr = local };
	struct tftp_xfer *x = calloc(1, sizeof(*x));
	int r;

	if (!x)
		return -ENOMEM;
	x->srv = srv;
	x->fd = fd;
	x->peer = *peer;
	x->size = size;
	x->start_usec = rb_now_usec();
	format_peer(peer, x->ip);
	rb_escape(x->name, sizeof(x->name), req->filename, req->filename_len);
	x->sock = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (x->sock < 0) {
		r = -errno;
		goto err_sock;
	}
	if (bind(x->sock, (struct sockaddr *)&la, sizeof(la)) < 0 ||
	    connect(x->sock, (const struct sockaddr *)peer, sizeof(*peer)) < 0) {
		r = -errno;
		goto err_bind;
	}
	r = rb_timer_new(srv->loop, xfer_on_timer, x, &x->timer);
	if (r < 0)
		goto err_bind;
	r = rb_io_new(srv->loop, x->sock, EPOLLIN, xfer_on_io, x, &x->io);
	if (r < 0)
		goto err_io;

	x->oack_pending = tftp_negotiate(req, &srv->lim, size, &x->params);
	tftp_window_init(&x->win, tftp_block_count(size, x->params.blksize), x->params.windowsize);
	x->rto_base_usec = x->params.timeout ? (uint64_t)x->params.timeout * 1000000
	                                     : (uint64_t)srv->timeout_ms * 1000;
	x->rto_usec = x->rto_base_usec;
	/* Once per transfer, and only when someone records it. */
	if (srv->reg && netif_neigh_mac(peer->sin_addr, x->mac) == 0)
		x->has_mac = true;

	x->next = srv->xfers;
	if (srv->xfers)
		srv->xfers->prev = x;
	srv->xfers = x;
	srv->stats.active++;
	*ret = x;
	return 0;

err_io:
	rb_timer_free(x->timer);
err_bind:
	close(x->sock);
err_sock:
	free(x);
	return r;
}

static void refuse(struct tftp_server *srv, const struct sockaddr_in *peer, struct in_addr local,
                   const char *ip, const char *name, uint16_t code, const char *msg)
{
	srv->stats.refused++;
	log_info("tftp: refused \"%s\" to %s:%u: %s", name, ip, ntohs(peer->sin_port),
	         msg ? msg : tftp_error_string(code));
	send_error_from_listener(srv, peer, local, code, msg);
}

/* Answers (or drops) a packet on the request port that is not a usable
 * request: parse result r < 0. */
static void handle_bad_request(struct tftp_server *srv, int r, const uint8_t *buf, size_t len,
                               const struct sockaddr_in *peer, struct in_addr local, const char *ip)
{
	if (r == -EPROTO) {
		uint16_t op = len >= 2 ? (uint16_t)(buf[0] << 8 | buf[1]) : 0;

		/* Never answer an ERROR with an ERROR (no ping-pong). */
		if (op != TFTP_ERROR) {
			if (log_allowed(srv))
				log_info("tftp: opcode %u from %s:%u on the request port", op, ip,
				         ntohs(peer->sin_port));
			send_error_from_listener(srv, peer, local, TFTP_EBADOP, NULL);
		}
		return;
	}
	if (r == -ENAMETOOLONG) {
		srv->stats.requests++;
		refuse(srv, peer, local, ip, "(name too long)", TFTP_ENOTFOUND,
		       "File name too long");
		return;
	}
	if (r == -E2BIG) {
		srv->stats.requests++;
		refuse(srv, peer, local, ip, "(option flood)", TFTP_EOPTNEG, "Too many options");
		return;
	}
	if (log_allowed(srv))
		log_info("tftp: dropped malformed %zu-byte request from %s:%u", len, ip,
		         ntohs(peer->sin_port));
}

static void handle_request(struct tftp_server *srv, const uint8_t *buf, size_t len,
                           const struct sockaddr_in *peer, struct in_addr local)
{
	struct tftp_request req;
	struct tftp_xfer *x = NULL;
	char ip[INET_ADDRSTRLEN], name[NAME_LOG_MAX];
	uint64_t size = 0;
	uint16_t code = TFTP_EUNDEF;
	int r, fd;

	format_peer(peer, ip);
	r = tftp_request_parse(buf, len, &req);
	if (r < 0) {
		handle_bad_request(srv, r, buf, len, peer, local, ip);
		return;
	}
	srv->stats.requests++;
	rb_escape(name, sizeof(name), req.filename, req.filename_len);
	if (req.opcode == TFTP_WRQ) {
		refuse(srv, peer, local, ip, name, TFTP_EACCESS,
		       "Access violation: read-only server");
		return;
	}
	if (req.mode != TFTP_MODE_OCTET) {
		refuse(srv, peer, local, ip, name, TFTP_EUNDEF, "Only octet mode is supported");
		return;
	}
	x = find_xfer(srv, peer);
	if (x) {
		/* The peer did not get our OACK: repeat it now. Once DATA
		 * flows, the transfer's own retransmission answers. */
		if (x->oack_pending && send_oack(x) == 0)
			log_debug("tftp: repeated request from %s:%u: OACK sent again", ip,
			          ntohs(peer->sin_port));
		else
			log_debug("tftp: repeated request from %s:%u ignored", ip,
			          ntohs(peer->sin_port));
		return;
	}
	if (srv->stats.active >= srv->max_transfers) {
		refuse(srv, peer, local, ip, name, TFTP_EUNDEF, "Server busy, try again later");
		return;
	}
	fd = open_file(srv, req.filename, &size, &code);
	if (fd < 0) {
		refuse(srv, peer, local, ip, name, code, NULL);
		return;
	}
	r = xfer_new(srv, peer, local, fd, size, &req, &x);
	if (r < 0) {
		close(fd);
		srv->stats.failed++;
		log_warn("tftp: cannot start transfer of \"%s\" to %s: %s", name, ip, strerror(-r));
		send_error_from_listener(srv, peer, local, TFTP_EUNDEF, "Server out of resources");
		return;
	}
	log_info("tftp: sending \"%s\" (%llu bytes) to %s:%u, blksize %u, window %u, "
	         "timeout %u ms%s",
	         x->name, (unsigned long long)size, x->ip, ntohs(peer->sin_port), x->params.blksize,
	         x->params.windowsize,
	         x->params.timeout ? x->params.timeout * 1000 : srv->timeout_ms,
	         req.n_ignored ? ", options ignored" : "");
	if (x->has_mac)
		registry_note(srv->reg, x->mac, NULL, x->ip, "tftp.start", "%s %llu bytes", x->name,
		              (unsigned long long)size);
	if (x->oack_pending) {
		r = send_oack(x);
		if (r < 0) {
			xfer_end(x, END_FAILED, strerror(-r));
			return;
		}
		x->rto_usec = RB_MAX(x->rto_base_usec, OACK_RESEND_USEC);
		xfer_arm(x);
		return;
	}
	xfer_pump(x);
}

/* A datagram larger than REQ_BUF_SIZE on the request port: a request
 * (name or options flood) gets ERROR 0, anything else is dropped. */
static void handle_oversized(struct tftp_server *srv, const uint8_t *buf,
                             const struct sockaddr_in *peer, struct in_addr local)
{
	uint16_t op = (uint16_t)(buf[0] << 8 | buf[1]);
	char ip[INET_ADDRSTRLEN];

	format_peer(peer, ip);
	if (log_allowed(srv))
		log_info("tftp: oversized packet (opcode %u, over %d bytes) from %s:%u", op,
		         REQ_BUF_SIZE, ip, ntohs(peer->sin_port));
	if (op != TFTP_RRQ && op != TFTP_WRQ)
		return;
	srv->stats.requests++;
	srv->stats.refused++;
	send_error_from_listener(srv, peer, local, TFTP_EUNDEF, "Request too large");
}

static void listen_on_io(struct rb_io *io, int fd, uint32_t events, void *userdata)
{
	struct tftp_server *srv = userdata;
	uint8_t buf[REQ_BUF_SIZE];

	for (int i = 0; i < LISTEN_BURST; i++) {
		struct sockaddr_in peer;
		union {
			char buf[CMSG_SPACE(sizeof(struct in_pktinfo))];
			struct cmsghdr align;
		} ctl;
		struct iovec iov = { .iov_base = buf, .iov_len = sizeof(buf) };
		struct msghdr mh = {
			.msg_name = &peer,
			.msg_namelen = sizeof(peer),
			.msg_iov = &iov,
			.msg_iovlen = 1,
			.msg_control = ctl.buf,
			.msg_controllen = sizeof(ctl.buf),
		};
		struct in_addr local = srv->bind_addr;
		ssize_t n = recvmsg(fd, &mh, MSG_DONTWAIT);

		if (n < 0) {
			if (errno != EAGAIN && errno != EINTR)
				log_debug("tftp: recvmsg: %s", strerror(errno));
			return;
		}
		if (mh.msg_namelen < sizeof(peer) || peer.sin_family != AF_INET ||
		    peer.sin_port == 0)
			continue;
		for (struct cmsghdr *cm = CMSG_FIRSTHDR(&mh); cm; cm = CMSG_NXTHDR(&mh, cm))
			if (cm->cmsg_level == IPPROTO_IP && cm->cmsg_type == IP_PKTINFO) {
				struct in_pktinfo pi;

				memcpy(&pi, CMSG_DATA(cm), sizeof(pi));
				if (local.s_addr == INADDR_ANY)
					local = pi.ipi_spec_dst;
			}
		if (mh.msg_flags & MSG_TRUNC) {
			handle_oversized(srv, buf, &peer, local);
			continue;
		}
		handle_request(srv, buf, (size_t)n, &peer, local);
	}
}

/* Each transfer holds a socket and a file: make room for max_transfers. */
static void raise_fd_limit(unsigned max_transfers)
{
	struct rlimit rl;
	rlim_t want = (rlim_t)max_transfers * 2 + 256;

	if (getrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur >= want)
		return;
	rl.rlim_cur = rl.rlim_max == RLIM_INFINITY ? want : RB_MIN(want, rl.rlim_max);
	if (setrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur < want)
		log_warn("tftp: open file limit %llu is below the %llu that %u transfers need",
		         (unsigned long long)rl.rlim_cur, (unsigned long long)want, max_transfers);
}

static unsigned mtu_blksize_cap(const struct rb_config *cfg)
{
	struct netif_info ni;

	if (!cfg->interface || !cfg->interface[0])
		return TFTP_BLKSIZE_MAX;
	if (netif_get(cfg->interface, &ni) < 0 || ni.mtu < 20 + 8 + TFTP_HEADER_SIZE + 8) {
		log_warn("tftp: no MTU for interface %s, blksize capped by the config only",
		         cfg->interface);
		return TFTP_BLKSIZE_MAX;
	}
	return ni.mtu - 20 - 8 - TFTP_HEADER_SIZE;
}

int tftp_server_new(struct rb_loop *loop, const struct rb_config *cfg, struct registry *reg,
                    struct tftp_server **ret)
{
	struct sockaddr_in sa = { .sin_family = AF_INET };
	struct tftp_server *srv;
	int one = 1, r;
	unsigned cap;

	if (!cfg->tftp_root || !cfg->tftp_root[0])
		return -EINVAL;
	srv = calloc(1, sizeof(*srv));
	if (!srv)
		return -ENOMEM;
	srv->loop = loop;
	srv->reg = reg;
	srv->sock = -1;
	srv->bind_addr = cfg->server_addr;
	srv->port = cfg->tftp_port;
	srv->timeout_ms = cfg->tftp_timeout_ms ? cfg->tftp_timeout_ms : 1000;
	srv->max_retries = cfg->tftp_retries;
	srv->max_transfers = cfg->tftp_max_transfers;
	cap = RB_MIN(cfg->tftp_max_blksize ? cfg->tftp_max_blksize : TFTP_BLKSIZE_DEFAULT,
	             mtu_blksize_cap(cfg));
	srv->lim.max_blksize =
	        RB_MAX(RB_MIN(cap, (unsigned)TFTP_BLKSIZE_MAX), (unsigned)TFTP_BLKSIZE_MIN);
	srv->lim.max_window = cfg->tftp_max_window ? cfg->tftp_max_window : 1;
	srv->stage_blocks =
	        RB_MAX(RB_MIN(STAGE_BYTES / srv->lim.max_blksize, (size_t)BATCH_MAX), (size_t)1);
	/* Blocks of a batch are never larger than the cap, or the default 512. */
	srv->stage = malloc(srv->stage_blocks *
	                    RB_MAX(srv->lim.max_blksize, (unsigned)TFTP_BLKSIZE_DEFAULT));
	if (!srv->stage) {
		r = -ENOMEM;
		goto err_stage;
	}

	srv->rootfd = open(cfg->tftp_root, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (srv->rootfd < 0) {
		r = -errno;
		log_error("tftp: cannot open root %s: %s", cfg->tftp_root, strerror(errno));
		goto err_root;
	}
	srv->sock = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (srv->sock < 0) {
		r = -errno;
		goto err_sock;
	}
	sa.sin_addr = cfg->server_addr;
	sa.sin_port = htons(cfg->tftp_port);
	if (setsockopt(srv->sock, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
	    setsockopt(srv->sock, IPPROTO_IP, IP_PKTINFO, &one, sizeof(one)) < 0 ||
	    bind(srv->sock, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		r = -errno;
		log_error("tftp: cannot bind %s:%u: %s", inet_ntoa(cfg->server_addr),
		          cfg->tftp_port, strerror(errno));
		goto err_bind;
	}
	r = rb_io_new(loop, srv->sock, EPOLLIN, listen_on_io, srv, &srv->io);
	if (r < 0)
		goto err_bind;
	raise_fd_limit(srv->max_transfers);
	log_info("tftp: serving %s on %s:%u (blksize <= %u, window <= %u, %u transfers)",
	         cfg->tftp_root, inet_ntoa(cfg->server_addr), cfg->tftp_port, srv->lim.max_blksize,
	         srv->lim.max_window, srv->max_transfers);
	*ret = srv;
	return 0;

err_bind:
	close(srv->sock);
err_sock:
	close(srv->rootfd);
err_root:
	free(srv->stage);
err_stage:
	free(srv);
	return r;
}

void tftp_server_free(struct tftp_server *srv)
{
	if (!srv)
		return;
	while (srv->xfers) {
		srv->stats.active--;
		xfer_free(srv->xfers);
	}
	rb_io_free(srv->io);
	if (srv->sock >= 0)
		close(srv->sock);
	if (srv->rootfd >= 0)
		close(srv->rootfd);
	free(srv->stage);
	free(srv);
}

void tftp_server_stats(const struct tftp_server *srv, struct tftp_stats *ret)
{
	*ret = srv->stats;
}
