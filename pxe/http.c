/* rackbootd's HTTP server, on libmicrohttpd (MHD) with an internal epoll
 * thread pool.
 *
 * Routes (GET and HEAD only, except POST to the API; anything else is 405; a
 * request body is 413 except on an API POST, where up to API_BODY_MAX bytes
 * are collected and passed to api.c, more is 413):
 *   /boot/<mac>.ipxe  the node's iPXE script, rendered from a template chosen
 *                     by its registry state. <mac> is aa:bb:cc:dd:ee:ff, with
 *                     ':' or '-', any case. A name of exactly that shape
 *                     ("xx?xx?xx?xx?xx?xx.ipxe") that is not a MAC is 404; any
 *                     other name is a static file below the boot root (so an
 *                     operator may still place e.g. menu.ipxe there).
 *   /boot/<path>      static files below cfg->http_boot_root
 *   /repo/<path>      static files below cfg->repo_root
 *   /api/...          the JSON API (api.c, api_ops.c); errors there are JSON
 *   /api/v1/events    the operator event stream (text/event-stream, events.c):
 *                     a long-lived response whose connection is suspended
 *                     while there is nothing to send
 *   /metrics          Prometheus text (metrics.c)
 *   /ui/...           the web dashboard (ui.c), built into the binary
 *
 * Each discovery or provision script carries a fresh boot token
 * (rackboot.token= on the kernel line) whose hash api_token_issue() writes
 * to the registry before the script goes out; the agent authenticates to
 * the API with it. A HEAD of a script issues none (no side effects).
 *
 * Static files are opened only with rb_open_beneath() on directory fds
 * opened at start-up (before privileges are dropped), so neither "..",
 * percent-encoded traversal (MHD decodes %2e%2e and %2f before we see the
 * path; rb_path_is_safe() then refuses it: 400), nor a symlink leading out of
 * the root (403) reach a file outside it. A %00 in the raw URI is refused
 * (400) before MHD's decoding would silently cut the path at the NUL, and
 * so is a raw NUL byte in the request line (has_raw_nul()).
 * Directories are 403, never listed. Files go out with sendfile
 * (MHD_create_response_from_fd_at_offset64).
 *
 * Range (GET only, RFC 9110 14.2): one range "bytes=a-b", "bytes=a-" or
 * "bytes=-n" gets 206 with Content-Range; a range starting at or beyond the
 * end (or "-0") gets 416 with "Content-Range: bytes * /size". A Range header
 * with several ranges, or one we cannot parse, is ignored and the whole file
 * is sent with 200, which RFC 9110 allows (a server MAY ignore Range).
 * Static files carry Last-Modified and an ETag (size, mtime with its
 * nanoseconds); a GET or HEAD whose If-None-Match names it, or without
 * If-None-Match an If-Modified-Since no earlier than the mtime, is 304
 * without a body (httpcond.c), checked before Range.
 *
 * Owns: the MHD daemon, the root directory fds, the counters, the API
 * (api.c). Reads the registry; writes it only through api.c (a boot
 * token per script, the agent's reports) and registry_note().
 * Never follows a path by string concatenation, never logs a request above
 * debug level (the access log), never blocks a worker on the registry
 * writer's queue except for an agent's state change (api.c). */
#include "pxe/http.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/log.h"
#include "common/util.h"
#include "pxe/api.h"
#include "pxe/api_ops.h"
#include "pxe/config.h"
#include "pxe/embedded.h"
#include "pxe/events.h"
#include "pxe/httpcond.h"
#include "pxe/ipxe_script.h"
#include "pxe/metrics.h"
#include "pxe/netif.h"
#include "pxe/registry.h"
#include "pxe/ui.h"

#define HTTP_IDLE_DEFAULT_S   60
#define HTTP_HEADER_DEFAULT_S 30
/* Connections above http.max_conns get 503 (when they send a request) up
 * to this many more; beyond those they are closed at once. */
#define HTTP_SHED_RESERVE_MIN 16
/* MHD's own limit, a backstop above ours: at it MHD stops accepting and
 * new clients would wait in the listen backlog. */
#define HTTP_MHD_LIMIT_MARGIN 64
#define HTTP_LISTEN_BACKLOG   511
#define HTTP_LOG_URI_MAX      200
#define HTTP_QUERY_MAX        4096
#define HTTP_LINE_MAX         (64 * 1024) /* MHD's whole request fits its pool */

struct http_server {
	const struct rb_config *cfg;
	struct registry *reg;
	struct MHD_Daemon *mhd;
	struct api *api;
	struct rb_events *events;
	int boot_fd, repo_fd, tmpl_fd; /* tmpl_fd -1: embedded templates */
	atomic_uint_fast64_t requests, errors, bytes_sent;
	atomic_uint conns;          /* open connections (notify callback) */
	unsigned soft_limit;        /* above: every request gets 503 */
	unsigned hard_limit;        /* above: closed before a byte is read */
	pthread_mutex_t stats_lock; /* the DHCP and TFTP counters below */
	bool have_dhcp, have_tftp;
	struct dhcp_stats dhcp;
	struct tftp_stats tftp;

	/* Request-header deadline (reaper_main()): every open connection, under
	 * conns_lock; the reaper wakes once a second until reaper_stop. */
	pthread_mutex_t conns_lock;
	pthread_cond_t reaper_cond;
	struct http_conn *conn_list;
	pthread_t reaper;
	bool reaper_on, reaper_stop;
	uint64_t header_usec;
	atomic_uint_fast64_t header_cut; /* connections closed by the deadline */
};

/* One open connection (MHD's socket context). in_headers: waiting for a
 * request's headers since `since` (the connect, or the previous request's
 * end on a keep-alive connection); cleared when MHD hands over a request.
 * The idle timeout cuts a silent connection; this cuts one that keeps
 * dripping a byte now and then (slowloris) and so is never silent. */
struct http_conn {
	int fd;
	bool in_headers, cut;
	uint64_t since;
	struct http_conn *prev, *next;
};

static void conn_headers(struct http_server *srv, struct MHD_Connection *con, bool waiting);

/* Per request, made in the URI log callback (the first thing MHD calls,
 * with the raw, still-encoded URI) and freed in the completion callback. */
struct http_req {
	struct http_server *srv;
	bool bad_uri; /* raw URI holds %00 or a NUL byte */
	bool seen;    /* the handler was called once already */
	bool queued;  /* a response was queued */
	bool head;
	bool script;  /* a per-node iPXE script, noted on its own */
	bool upload;  /* an API POST whose body is collected */
	bool too_big; /* ... and it passed API_BODY_MAX: the rest is dropped */
	bool query_too_long;
	unsigned status;
	char *query;    /* raw query string (after '?'), NULL if none */
	char *req_body; /* collected API request body, at most API_BODY_MAX */
	size_t req_len, req_cap;
	uint64_t body_len; /* bytes the response body carries */
	char method[12];
	char uri[HTTP_LOG_URI_MAX]; /* escaped, for the access log */
	/* Where the raw URI handed to on_uri() ended (its first NUL); only
	 * compared with the version pointer, never dereferenced. */
	uintptr_t raw_uri_end;
};

/* ---- responses ---------------------------------------------------------- */

static const char *status_text(unsigned status)
{
	switch (status) {
	case 400:
		return "Bad Request";
	case 401:
		return "Unauthorized";
	case 403:
		return "Forbidden";
	case 404:
		return "Not Found";
	case 405:
		return "Method Not Allowed";
	case 409:
		return "Conflict";
	case 413:
		return "Payload Too Large";
	case 414:
		return "URI Too Long";
	case 416:
		return "Range Not Satisfiable";
	case 503:
		return "Service Unavailable";
	default:
		return "Internal Server Error";
	}
}

static enum MHD_Result queue(struct MHD_Connection *con, struct http_req *rq, unsigned status,
                             struct MHD_Response *resp, uint64_t body_len)
{
	enum MHD_Result r;

	if (!resp)
		return MHD_NO; /* out of memory: MHD drops the connection */
	r = MHD_queue_response(con, status, resp);
	MHD_destroy_response(resp);
	if (r == MHD_YES) {
		rq->queued = true;
		rq->status = status;
		rq->body_len = rq->head ? 0 : body_len;
	}
	return r;
}

static struct MHD_Response *buffer_response(char *body, size_t len, bool must_free,
                                            const char *type)
{
	struct MHD_Response *resp = MHD_create_response_from_buffer(
	        len, body, must_free ? MHD_RESPMEM_MUST_FREE : MHD_RESPMEM_MUST_COPY);

	if (!resp) {
		if (must_free)
			free(body);
		return NULL;
	}
	MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, type);
	return resp;
}

static enum MHD_Result send_error(struct MHD_Connection *con, struct http_req *rq, const char *url,
                                  unsigned status, const char *msg)
{
	struct MHD_Response *resp;
	char text[160];
	size_t len;

	if (url && api_path_matches(url)) {
		json_t *doc = json_pack("{s:s, s:i}", "error", msg ? msg : status_text(status),
		                        "status", (json_int_t)status);
		char *body = doc ? json_dumps(doc, JSON_COMPACT) : NULL;

		json_decref(doc);
		if (!body)
			return MHD_NO;
		len = strlen(body);
		resp = buffer_response(body, len, true, "application/json");
	} else {
		snprintf(text, sizeof(text), "%u %s%s%s\n", status, status_text(status),
		         msg ? ": " : "", msg ? msg : "");
		len = strlen(text);
		resp = buffer_response(text, len, false, "text/plain");
	}
	if (resp && status == 405)
		MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, "GET, HEAD");
	if (resp && status == 503) {
		MHD_add_response_header(resp, MHD_HTTP_HEADER_RETRY_AFTER, "5");
		MHD_add_response_header(resp, MHD_HTTP_HEADER_CONNECTION, "close");
	}
	return queue(con, rq, status, resp, len);
}

/* ---- helpers ------------------------------------------------------------ */

/* Host header: "host[:port]" with host a DNS name or IPv4 address. IPv6
 * literals are refused (the server listens on IPv4 only). */
static bool host_header_ok(const char *h)
{
	size_t n = strlen(h), hostlen;
	const char *colon;

	if (n == 0 || n > 255)
		return false;
	colon = strchr(h, ':');
	hostlen = colon ? (size_t)(colon - h) : n;
	if (hostlen == 0 || hostlen > 253)
		return false;
	for (size_t i = 0; i < hostlen; i++) {
		char c = h[i];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '-' || c == '.'))
			return false;
	}
	if (h[0] == '-' || h[0] == '.')
		return false;
	if (colon) {
		long long port;

		if (rb_strtonum(colon + 1, 1, 65535, &port) < 0 || colon[1] == '+' ||
		    colon[1] == '-')
			return false;
	}
	return true;
}

static int local_addr(struct MHD_Connection *con, struct in_addr *ret)
{
	const union MHD_ConnectionInfo *ci =
	        MHD_get_connection_info(con, MHD_CONNECTION_INFO_CONNECTION_FD);
	struct sockaddr_in sin;
	socklen_t len = sizeof(sin);

	if (!ci)
		return -ENOTCONN;
	if (getsockname(ci->connect_fd, (struct sockaddr *)&sin, &len) < 0)
		return -errno;
	if (sin.sin_family != AF_INET)
		return -EAFNOSUPPORT;
	*ret = sin.sin_addr;
	return 0;
}

static void peer_addr(struct MHD_Connection *con, char buf[static INET6_ADDRSTRLEN])
{
	const union MHD_ConnectionInfo *ci =
	        MHD_get_connection_info(con, MHD_CONNECTION_INFO_CLIENT_ADDRESS);

	snprintf(buf, INET6_ADDRSTRLEN, "?");
	if (!ci || !ci->client_addr)
		return;
	if (ci->client_addr->sa_family == AF_INET)
		inet_ntop(AF_INET, &((const struct sockaddr_in *)ci->client_addr)->sin_addr, buf,
		          INET6_ADDRSTRLEN);
	else if (ci->client_addr->sa_family == AF_INET6)
		inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)ci->client_addr)->sin6_addr, buf,
		          INET6_ADDRSTRLEN);
}

static const char *content_type(const char *path)
{
	static const struct {
		const char *ext, *type;
	} types[] = {
		{ ".ipxe", "text/plain" },
		{ ".txt", "text/plain" },
		{ ".cfg", "text/plain" },
		{ ".json", "application/json" },
		{ ".html", "text/html" },
		{ ".sig", "application/octet-stream" },
		{ ".gz", "application/gzip" },
		{ ".xz", "application/x-xz" },
		{ ".zst", "application/zstd" },
		{ ".tar", "application/x-tar" },
		{ ".iso", "application/x-iso9660-image" },
	};
	const char *dot = strrchr(path, '.');

	if (dot && !strchr(dot, '/'))
		for (size_t i = 0; i < RB_ARRAY_SIZE(types); i++)
			if (strcasecmp(dot, types[i].ext) == 0)
				return types[i].type;
	return "application/octet-stream";
}

/* Parses an unsigned decimal from *p, advancing it; -EINVAL if none or on
 * overflow of int64. */
static int parse_u64(const char **p, uint64_t *ret)
{
	const char *s = *p;
	uint64_t v = 0;

	if (*s < '0' || *s > '9')
		return -EINVAL;
	for (; *s >= '0' && *s <= '9'; s++) {
		if (v > (UINT64_C(0x7fffffffffffffff) - (uint64_t)(*s - '0')) / 10)
			return -EINVAL;
		v = v * 10 + (uint64_t)(*s - '0');
	}
	*p = s;
	*ret = v;
	return 0;
}

/* Range of one "bytes=" spec against a file of size bytes.
 * Returns 1 with [*ret_off, *ret_off + *ret_len) for a satisfiable range,
 * 0 to ignore the header (absent, malformed, several ranges), -ERANGE for
 * an unsatisfiable one. */
static int parse_range(const char *h, uint64_t size, uint64_t *ret_off, uint64_t *ret_len)
{
	const char *p = h;
	uint64_t a, b;

	if (!h || strncasecmp(p, "bytes=", 6) != 0)
		return 0;
	p += 6;
	while (*p == ' ')
		p++;
	if (*p == '-') {
		p++;
		if (parse_u64(&p, &b) < 0)
			return 0;
		while (*p == ' ')
			p++;
		if (*p != '\0')
			return 0; /* several ranges or junk: whole file */
		if (b == 0 || size == 0)
			return -ERANGE;
		b = RB_MIN(b, size);
		*ret_off = size - b;
		*ret_len = b;
		return 1;
	}
	if (parse_u64(&p, &a) < 0 || *p++ != '-')
		return 0;
	if (*p >= '0' && *p <= '9') {
		if (parse_u64(&p, &b) < 0 || b < a)
			return 0;
	} else {
		b = UINT64_MAX;
	}
	while (*p == ' ')
		p++;
	if (*p != '\0')
		return 0;
	if (a >= size)
		return -ERANGE;
	b = RB_MIN(b, size - 1);
	*ret_off = a;
	*ret_len = b - a + 1;
	return 1;
}

/* ---- static files ------------------------------------------------------- */

/* A file's entity tag: size, mtime and its nanoseconds, so that a file
 * rewritten within the same second still gets a new one. */
#define FILE_ETAG_MAX 64
static void file_etag(const struct stat *st, char etag[FILE_ETAG_MAX])
{
	snprintf(etag, FILE_ETAG_MAX, "\"%llx-%llx-%lx\"", (unsigned long long)st->st_size,
	         (unsigned long long)st->st_mtim.tv_sec, (long)st->st_mtim.tv_nsec);
}

/* The validators, on 200, 206 and 304 alike: Last-Modified and ETag. */
static void add_validators(struct MHD_Response *resp, const struct stat *st, const char *etag)
{
	char date[64];
	struct tm tm;

	if (gmtime_r(&st->st_mtim.tv_sec, &tm) &&
	    strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S GMT", &tm) > 0)
		MHD_add_response_header(resp, MHD_HTTP_HEADER_LAST_MODIFIED, date);
	MHD_add_response_header(resp, MHD_HTTP_HEADER_ETAG, etag);
}

/* GET or HEAD with If-None-Match naming the file's ETag, or (without
 * If-None-Match) If-Modified-Since no earlier than its mtime: 304 with
 * the validators and no body, evaluated before Range (RFC 9110 13.2.2). */
static bool file_not_modified(struct MHD_Connection *con, const struct stat *st, const char *etag)
{
	return http_not_modified(
	        MHD_lookup_connection_value(con, MHD_HEADER_KIND, MHD_HTTP_HEADER_IF_NONE_MATCH),
	        MHD_lookup_connection_value(con, MHD_HEADER_KIND,
	                                    MHD_HTTP_HEADER_IF_MODIFIED_SINCE),
	        etag, st->st_mtim.tv_sec, time(NULL));
}

static enum MHD_Result serve_file(struct MHD_Connection *con, struct http_req *rq, const char *url,
                                  int rootfd, const char *rel)
{
	uint64_t off = 0, len, size;
	struct MHD_Response *resp;
	struct stat st;
	unsigned status = 200;
	char cr[96], etag[FILE_ETAG_MAX];
	int fd, r;

	if (rootfd < 0)
		return send_error(con, rq, url, 404, NULL);
	if (!*rel || rel[strlen(rel) - 1] == '/')
		return send_error(con, rq, url, 404, NULL); /* no listings */
	if (!rb_path_is_safe(rel))
		return send_error(con, rq, url, 400, "bad path");
	fd = rb_open_beneath(rootfd, rel, O_RDONLY | O_NOCTTY | O_NONBLOCK);
	if (fd < 0) {
		switch (fd) {
		case -ENOENT:
		case -ENOTDIR:
		case -ENAMETOOLONG:
			return send_error(con, rq, url, 404, NULL);
		case -EACCES:
		case -EPERM:
		case -EXDEV:
		case -ELOOP:
			return send_error(con, rq, url, 403, NULL);
		case -EMFILE:
		case -ENFILE:
		case -ENOMEM:
			return send_error(con, rq, url, 503, NULL);
		default:
			log_debug("http: open %s: %s", rq->uri, strerror(-fd));
			return send_error(con, rq, url, 500, NULL);
		}
	}
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		close(fd);
		return send_error(con, rq, url, 403, NULL);
	}
	file_etag(&st, etag);
	if (file_not_modified(con, &st, etag)) {
		close(fd);
		resp = MHD_create_response_from_buffer(0, NULL, MHD_RESPMEM_PERSISTENT);
		if (!resp)
			return MHD_NO;
		add_validators(resp, &st, etag);
		return queue(con, rq, 304, resp, 0);
	}
	size = (uint64_t)st.st_size;
	len = size;
	if (!rq->head) {
		const char *h = MHD_lookup_connection_value(con, MHD_HEADER_KIND, "Range");

		r = parse_range(h, size, &off, &len);
		if (r == -ERANGE) {
			close(fd);
			snprintf(cr, sizeof(cr), "bytes */%llu", (unsigned long long)size);
			resp = buffer_response((char *)"416 Range Not Satisfiable\n", 26, false,
			                       "text/plain");
			if (resp)
				MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_RANGE, cr);
			return queue(con, rq, 416, resp, 26);
		}
		if (r == 1) {
			status = 206;
			snprintf(cr, sizeof(cr), "bytes %llu-%llu/%llu", (unsigned long long)off,
			         (unsigned long long)(off + len - 1), (unsigned long long)size);
		}
	}
	if (len == 0) {
		close(fd);
		resp = MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
	} else {
		/* MHD owns fd from here, also when it fails. */
		resp = MHD_create_response_from_fd_at_offset64(len, fd, off);
		if (!resp)
			close(fd);
	}
	if (!resp)
		return MHD_NO;
	MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, content_type(rel));
	MHD_add_response_header(resp, MHD_HTTP_HEADER_ACCEPT_RANGES, "bytes");
	add_validators(resp, &st, etag);
	if (status == 206)
		MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_RANGE, cr);
	return queue(con, rq, status, resp, len);
}

/* ---- per-node iPXE scripts ---------------------------------------------- */

/* "xx?xx?xx?xx?xx?xx.ipxe" with ? being ':' or '-': claimed by the script
 * route whether or not the xx are hex digits. */
static bool looks_like_script(const char *rel)
{
	if (strlen(rel) != 17 + 5 || strcmp(rel + 17, ".ipxe") != 0)
		return false;
	for (int i = 2; i < 17; i += 3)
		if (rel[i] != ':' && rel[i] != '-')
			return false;
	return true;
}

/* Template for a node state. Unknown states and "failed" boot discovery:
 * it never writes a disk, and the agent can report. The provisioning
 * sub-states (wiping, imaging, installing) keep booting the agent (the
 * same list gives the plan its mode, api_state_provisions()); "imaged"
 * (the agent wrote the disk) boots it like "ready"; so does "retired". */
static const char *template_for_state(const char *state)
{
	/* "retired": out of service, never the agent again (api_ops.c). */
	static const char *local[] = { "ready", "imaged", "localboot", "updating", "retired" };

	if (api_state_provisions(state))
		return "provision.ipxe";
	for (size_t i = 0; i < RB_ARRAY_SIZE(local); i++)
		if (strcmp(state, local[i]) == 0)
			return "localboot.ipxe";
	return "discovery.ipxe";
}

/* Loads a template: from templates_dir (re-read each time, so edits apply
 * without a restart) or built in. *ret_buf is set when it was allocated. */
static int load_template(struct http_server *srv, const char *name, const char **ret_data,
                         size_t *ret_len, char **ret_buf)
{
	const struct rb_embedded_file *f;
	char *buf;
	size_t len = 0;
	int fd;

	if (srv->tmpl_fd < 0) {
		f = rb_embedded_find(name);
		if (!f)
			return -ENOENT;
		*ret_data = f->data;
		*ret_len = f->len;
		*ret_buf = NULL;
		return 0;
	}
	fd = rb_open_beneath(srv->tmpl_fd, name, O_RDONLY | O_NOCTTY | O_NONBLOCK);
	if (fd < 0)
		return fd;
	buf = malloc(IPXE_SCRIPT_MAX + 1);
	if (!buf) {
		close(fd);
		return -ENOMEM;
	}
	while (len <= IPXE_SCRIPT_MAX) {
		ssize_t n = read(fd, buf + len, IPXE_SCRIPT_MAX + 1 - len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			int e = -errno;

			close(fd);
			free(buf);
			return e;
		}
		if (n == 0)
			break;
		len += (size_t)n;
	}
	close(fd);
	if (len > IPXE_SCRIPT_MAX) {
		free(buf);
		return -EFBIG;
	}
	*ret_data = buf;
	*ret_len = len;
	*ret_buf = buf;
	return 0;
}

static const char *basename_of(const char *path)
{
	const char *s = strrchr(path, '/');

	return s ? s + 1 : path;
}

/* "http://host:port" nodes reach us at: the configured address, else what
 * the client asked for (a validated Host header), else the socket's own
 * address. server gets the bare IPv4 address. */
static void base_url(struct http_server *srv, struct MHD_Connection *con, char *base, size_t n,
                     char server[static INET_ADDRSTRLEN])
{
	const struct rb_config *cfg = srv->cfg;
	struct in_addr addr = cfg->server_addr;
	const char *host;

	if (addr.s_addr == 0 && local_addr(con, &addr) < 0)
		addr.s_addr = htonl(INADDR_LOOPBACK);
	inet_ntop(AF_INET, &addr, server, INET_ADDRSTRLEN);
	host = MHD_lookup_connection_value(con, MHD_HEADER_KIND, MHD_HTTP_HEADER_HOST);
	if (cfg->server_addr.s_addr == 0 && host && host_header_ok(host))
		snprintf(base, n, "http://%s", host);
	else
		snprintf(base, n, "http://%s:%u", server, cfg->http_port);
}

static enum MHD_Result serve_script(struct MHD_Connection *con, struct http_req *rq,
                                    const char *url, const char *rel)
{
	struct http_server *srv = rq->srv;
	const struct rb_config *cfg = srv->cfg;
	char macstr[18], stem[18], peer[INET6_ADDRSTRLEN], server[INET_ADDRSTRLEN], base[300];
	char err[200], esc[400], *tbuf = NULL, *out = NULL, token[API_TOKEN_LEN + 1] = "";
	struct registry_node node;
	const char *name, *tdata = NULL;
	size_t tlen = 0, olen = 0;
	uint8_t mac[6];
	int r;

	rq->script = true;
	memcpy(stem, rel, 17);
	stem[17] = '\0';
	if (rb_mac_parse(stem, mac) < 0)
		return send_error(con, rq, url, 404, NULL);
	rb_mac_format(mac, macstr);

	r = registry_node_get(srv->reg, mac, &node);
	if (r < 0) {
		if (r != -ENOENT)
			log_debug("http: registry read for %s: %s", macstr, strerror(-r));
		memset(&node, 0, sizeof(node));
		snprintf(node.state, sizeof(node.state), "new");
	}
	name = template_for_state(node.state);

	base_url(srv, con, base, sizeof(base), server);

	r = load_template(srv, name, &tdata, &tlen, &tbuf);
	if (r < 0) {
		log_warn("http: template %s: %s", name, strerror(-r));
		return send_error(con, rq, url, 500, "template missing");
	}
	{
		const struct ipxe_var vars[] = {
			{ "base", base },
			{ "server", server },
			{ "mac", macstr },
			{ "kernel", cfg->discovery_kernel },
			{ "initrd", cfg->discovery_initrd },
			{ "initrd_name", basename_of(cfg->discovery_initrd) },
			{ "cmdline", cfg->discovery_cmdline },
			{ "hostname", node.hostname },
			{ "profile", node.profile },
			{ "state", node.state },
			{ "token", token },
		};

		/* A script that boots the agent carries a fresh token; it is
		 * stored before the script leaves, so the agent can use it at
		 * once. HEAD shows the shape only (the same length). */
		if (strcmp(name, "localboot.ipxe") != 0) {
			if (rq->head) {
				memset(token, '0', API_TOKEN_LEN);
			} else if ((r = api_token_issue(srv->reg, mac, token)) < 0) {
				free(tbuf);
				log_warn("http: cannot store the boot token of %s: %s", macstr,
				         strerror(-r));
				return send_error(con, rq, url, 503, "cannot store the boot token");
			}
		}

		r = ipxe_render(tdata, tlen, vars, RB_ARRAY_SIZE(vars), IPXE_SCRIPT_MAX, &out,
		                &olen, err, sizeof(err));
	}
	explicit_bzero(token, sizeof(token));
	free(tbuf);
	if (r < 0) {
		log_warn("http: cannot render %s for %s: %s", name, macstr,
		         rb_escape(esc, sizeof(esc), err, strlen(err)));
		return send_error(con, rq, url, 500, "cannot render script");
	}
	/* HEAD has no side effects: only a GET is a node fetching its script. */
	if (!rq->head) {
		peer_addr(con, peer);
		registry_note(srv->reg, mac, NULL, peer, "http.script", "%s", name);
	}
	{
		struct MHD_Response *resp = buffer_response(out, olen, true, "text/plain");

		if (resp)
			MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
		return queue(con, rq, 200, resp, olen);
	}
}

/* ---- API ------------------------------------------------------------------ */

static enum MHD_Result serve_api(struct MHD_Connection *con, struct http_req *rq, const char *url,
                                 const char *method)
{
	char base[300], server[INET_ADDRSTRLEN];
	struct api_request req = {
		.method = method,
		.path = url,
		.body = rq->req_body,
		.body_len = rq->req_len,
		.authorization = MHD_lookup_connection_value(con, MHD_HEADER_KIND,
		                                             MHD_HTTP_HEADER_AUTHORIZATION),
		.base = base,
		.if_none_match = MHD_lookup_connection_value(con, MHD_HEADER_KIND,
		                                             MHD_HTTP_HEADER_IF_NONE_MATCH),
		.query = rq->query,
	};
	struct api_reply rep;
	struct MHD_Response *resp;

	base_url(rq->srv, con, base, sizeof(base), server);
	if (api_handle(rq->srv->api, &req, &rep) < 0)
		return MHD_NO;
	if (rep.status == 304) { /* /desired unchanged: no body, no type */
		resp = MHD_create_response_from_buffer(0, NULL, MHD_RESPMEM_PERSISTENT);
		free(rep.body);
	} else {
		resp = buffer_response(rep.body, rep.len, true, "application/json");
	}
	if (resp && rep.status == 405 && rep.allow)
		MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, rep.allow);
	if (resp && rep.status == 401)
		MHD_add_response_header(resp, MHD_HTTP_HEADER_WWW_AUTHENTICATE,
		                        "Bearer realm=\"rackboot\"");
	if (resp && rep.etag[0]) /* /desired: a 304 has no body */
		MHD_add_response_header(resp, MHD_HTTP_HEADER_ETAG, rep.etag);
	if (resp)
		MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
	return queue(con, rq, rep.status, resp, rep.len);
}

/* ---- event stream and metrics --------------------------------------------- */

/* One event stream response: the connection (to suspend and resume it)
 * and its subscription. Freed with the response (sse_free). */
struct sse_conn {
	struct http_server *srv;
	struct MHD_Connection *con;
	struct events_sub *sub;
};

static void sse_suspend(void *ud)
{
	struct sse_conn *c = ud;

	MHD_suspend_connection(c->con);
}

static void sse_resume(void *ud)
{
	struct sse_conn *c = ud;

	MHD_resume_connection(c->con);
}

static const struct events_sub_ops sse_ops = { .suspend = sse_suspend, .resume = sse_resume };

static ssize_t sse_read(void *cls, uint64_t pos, char *buf, size_t max)
{
	struct sse_conn *c = cls;
	ssize_t n = events_sub_read(c->sub, buf, max);

	if (n < 0)
		return MHD_CONTENT_READER_END_OF_STREAM;
	atomic_fetch_add_explicit(&c->srv->bytes_sent, (uint64_t)n, memory_order_relaxed);
	return n;
}

static void sse_free(void *cls)
{
	struct sse_conn *c = cls;

	events_unsubscribe(c->sub);
	free(c);
}

/* The operator token of a request: the Authorization header, or for
 * clients that cannot set headers (a browser's EventSource) the
 * access_token query parameter (RFC 6750 2.3; never logged). 0, or a
 * queued 401. */
static enum MHD_Result authorize(struct MHD_Connection *con, struct http_req *rq, bool allow_query,
                                 bool *ok)
{
	const char *auth =
	        MHD_lookup_connection_value(con, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
	const char *q = allow_query ? MHD_lookup_connection_value(con, MHD_GET_ARGUMENT_KIND,
	                                                          "access_token")
	                            : NULL;
	char name[RB_OPTOKEN_NAME_MAX + 1], header[RB_OPTOKEN_LEN + 64];
	struct MHD_Response *resp;
	const char *msg;
	json_t *doc;
	char *body;
	size_t len;

	*ok = false;
	if (!auth && q && strlen(q) <= RB_OPTOKEN_LEN + 32) {
		snprintf(header, sizeof(header), "Bearer %s", q);
		auth = header;
	}
	if (api_ops_authorize(api_ops_of(rq->srv->api), auth, name, &msg) == 0) {
		*ok = true;
		return MHD_YES;
	}
	doc = json_pack("{s:s, s:i}", "error", msg, "status", 401);
	body = doc ? json_dumps(doc, JSON_COMPACT) : NULL;
	json_decref(doc);
	if (!body)
		return MHD_NO;
	len = strlen(body);
	resp = buffer_response(body, len, true, "application/json");
	if (resp)
		MHD_add_response_header(resp, MHD_HTTP_HEADER_WWW_AUTHENTICATE,
		                        "Bearer realm=\"rackboot\"");
	return queue(con, rq, 401, resp, len);
}

/* GET /api/v1/events: server-sent events (events.c). Last-Event-ID (the
 * header, or last_event_id in the query) resumes after that event. */
static enum MHD_Result serve_events(struct MHD_Connection *con, struct http_req *rq,
                                    const char *url)
{
	const char *lei = MHD_lookup_connection_value(con, MHD_HEADER_KIND, "Last-Event-ID");
	struct MHD_Response *resp;
	struct sse_conn *c;
	long long last_id = -1;
	bool ok;
	int r;

	if (authorize(con, rq, true, &ok) != MHD_YES || !ok)
		return rq->queued ? MHD_YES : MHD_NO;
	if (!lei)
		lei = MHD_lookup_connection_value(con, MHD_GET_ARGUMENT_KIND, "last_event_id");
	if (lei && rb_strtonum(lei, 0, INT64_MAX, &last_id) < 0)
		return send_error(con, rq, url, 400,
		                  "Last-Event-ID must be the id of an event (a number)");
	c = calloc(1, sizeof(*c));
	if (!c)
		return MHD_NO;
	c->srv = rq->srv;
	c->con = con;
	r = events_subscribe(rq->srv->events, last_id, &sse_ops, c, &c->sub);
	if (r < 0) {
		free(c);
		if (r == -ENOMEM)
			return MHD_NO;
		return send_error(con, rq, url, 503,
		                  r == -EBUSY ? "too many event stream clients; retry later"
		                              : "shutting down");
	}
	if (rq->head) { /* the headers only: no subscription */
		events_unsubscribe(c->sub);
		free(c);
		resp = MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
		if (resp)
			MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE,
			                        "text/event-stream");
		return queue(con, rq, 200, resp, 0);
	}
	resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 4096, sse_read, c, sse_free);
	if (!resp) {
		events_unsubscribe(c->sub);
		free(c);
		return MHD_NO;
	}
	MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "text/event-stream");
	MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
	/* nginx and similar proxies would otherwise hold the stream back. */
	MHD_add_response_header(resp, "X-Accel-Buffering", "no");
	return queue(con, rq, 200, resp, 0);
}

void http_server_set_stats(struct http_server *srv, const struct dhcp_stats *dhcp,
                           const struct tftp_stats *tftp)
{
	pthread_mutex_lock(&srv->stats_lock);
	srv->have_dhcp = dhcp != NULL;
	srv->have_tftp = tftp != NULL;
	if (dhcp)
		srv->dhcp = *dhcp;
	if (tftp)
		srv->tftp = *tftp;
	pthread_mutex_unlock(&srv->stats_lock);
}

/* GET /metrics: Prometheus text. Needs an operator token only with
 * api.metrics_auth = true. */
static enum MHD_Result serve_metrics(struct MHD_Connection *con, struct http_req *rq,
                                     const char *url)
{
	struct http_server *srv = rq->srv;
	struct rb_metrics m = { 0 };
	json_t *states = NULL;
	char *text = NULL;
	size_t len = 0;
	bool ok;
	int r;

	if (srv->cfg->metrics_auth && (authorize(con, rq, false, &ok) != MHD_YES || !ok))
		return rq->queued ? MHD_YES : MHD_NO;
	r = registry_state_counts(srv->reg, &states, &m.nodes_held);
	if (r < 0)
		return send_error(con, rq, url, r == -ENOMEM ? 503 : 500, "registry error");
	pthread_mutex_lock(&srv->stats_lock);
	m.have_dhcp = srv->have_dhcp;
	m.have_tftp = srv->have_tftp;
	m.dhcp = srv->dhcp;
	m.tftp = srv->tftp;
	pthread_mutex_unlock(&srv->stats_lock);
	http_server_stats(srv, &m.http);
	events_get_stats(srv->events, &m.events);
	m.nodes_by_state = states;
	m.registry_dropped = registry_dropped(srv->reg);
	r = metrics_format(&m, &text, &len);
	json_decref(states);
	if (r < 0)
		return MHD_NO;
	return queue(con, rq, 200,
	             buffer_response(text, len, true, "text/plain; version=0.0.4; charset=utf-8"),
	             len);
}

/* ---- web dashboard -------------------------------------------------------- */

/* /ui and below: the dashboard's files built into the binary (ui.c), with
 * the headers ui.c chose (CSP, caching, ETag). */
static enum MHD_Result serve_ui(struct MHD_Connection *con, struct http_req *rq, const char *url)
{
	struct MHD_Response *resp;
	struct ui_reply rep;

	ui_handle(url,
	          MHD_lookup_connection_value(con, MHD_HEADER_KIND, MHD_HTTP_HEADER_IF_NONE_MATCH),
	          &rep);
	resp = MHD_create_response_from_buffer(rep.len, (void *)rep.body, MHD_RESPMEM_PERSISTENT);
	if (!resp)
		return MHD_NO;
	for (size_t i = 0; i < rep.n_headers; i++)
		MHD_add_response_header(resp, rep.headers[i].name, rep.headers[i].value);
	return queue(con, rq, rep.status, resp, rep.len);
}

/* ---- MHD callbacks ------------------------------------------------------ */

static bool has_body(struct MHD_Connection *con)
{
	const char *cl =
	        MHD_lookup_connection_value(con, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
	const char *te = MHD_lookup_connection_value(con, MHD_HEADER_KIND,
	                                             MHD_HTTP_HEADER_TRANSFER_ENCODING);

	return te || (cl && strcmp(cl, "0") != 0);
}

/* Starts collecting an API POST body: 413 at once when Content-Length
 * announces more than API_BODY_MAX. */
static enum MHD_Result upload_start(struct MHD_Connection *con, struct http_req *rq,
                                    const char *url)
{
	const char *cl =
	        MHD_lookup_connection_value(con, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
	long long n = 0;

	if (cl && rb_strtonum(cl, 0, API_BODY_MAX, &n) < 0)
		return send_error(con, rq, url, 413, "request body larger than 1 MiB");
	rq->upload = true;
	return MHD_YES;
}

/* Appends a piece of an API POST body. Past API_BODY_MAX the rest is
 * dropped and the last call answers 413: MHD cannot queue a response while
 * a body is arriving (only before it, or once it is complete). */
static enum MHD_Result upload_append(struct http_req *rq, const char *data, size_t *size)
{
	size_t n = *size;

	*size = 0;
	if (rq->too_big || n > API_BODY_MAX - rq->req_len) {
		rq->too_big = true;
		free(rq->req_body);
		rq->req_body = NULL;
		rq->req_len = rq->req_cap = 0;
		return MHD_YES;
	}
	if (rq->req_len + n > rq->req_cap) {
		size_t cap = RB_MAX(rq->req_cap * 2, (size_t)4096);
		char *b;

		cap = RB_MIN(RB_MAX(cap, rq->req_len + n), (size_t)API_BODY_MAX);
		b = realloc(rq->req_body, cap);
		if (!b)
			return MHD_NO;
		rq->req_body = b;
		rq->req_cap = cap;
	}
	memcpy(rq->req_body + rq->req_len, data, n);
	rq->req_len += n;
	return MHD_YES;
}

/* A NUL byte inside the request target: MHD (0.9.75) hands on_uri() the
 * URI as a C string, cut at that NUL, so "GET /boot/a\0/../x HTTP/1.1"
 * would be served as /boot/a. MHD splits the request line in place, and
 * the version string starts right after the URI's end (the space it
 * overwrote): when it starts further on, the URI held a NUL. A version
 * elsewhere (an empty one is a static string) says nothing: no check. */
static bool has_raw_nul(const struct http_req *rq, const char *version)
{
	uintptr_t v = (uintptr_t)version;

	if (!version || !*version || v <= rq->raw_uri_end + 1)
		return false;
	return v - rq->raw_uri_end <= HTTP_LINE_MAX;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *con, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **con_cls)
{
	struct http_req *rq = *con_cls;
	bool read_only;

	if (!rq)
		return MHD_NO;
	if (!rq->seen)
		conn_headers(rq->srv, con, false);
	if (!rq->seen && has_raw_nul(rq, version))
		rq->bad_uri = true;
	if (!rq->seen && !rq->queued &&
	    atomic_load_explicit(&rq->srv->conns, memory_order_relaxed) > rq->srv->soft_limit) {
		rq->seen = true;
		snprintf(rq->method, sizeof(rq->method), "%s", method);
		return send_error(con, rq, url, 503, "too many connections, try again later");
	}
	if (rq->queued) {
		/* Body bytes after our (error) answer: discard them. */
		*upload_data_size = 0;
		return MHD_YES;
	}
	/* MHD first calls with only the headers parsed. Answering then makes
	 * it close the connection (it cannot know the body is done), so
	 * requests without a body are answered on the second call, which keeps
	 * the connection alive; an API POST collects its body over the next
	 * calls and is answered on the last one (no data left); any other
	 * request with a body is refused at once. */
	if (!rq->seen) {
		rq->seen = true;
		if (!has_body(con))
			return MHD_YES;
		if (!rq->bad_uri && api_path_matches(url) &&
		    (strcmp(method, MHD_HTTP_METHOD_POST) == 0 ||
		     strcmp(method, MHD_HTTP_METHOD_PATCH) == 0))
			return upload_start(con, rq, url);
	}
	if (*upload_data_size) {
		if (rq->upload)
			return upload_append(rq, upload_data, upload_data_size);
		*upload_data_size = 0; /* cannot happen: refused on the first call */
		return MHD_NO;
	}
	snprintf(rq->method, sizeof(rq->method), "%s", method);
	rq->head = strcmp(method, MHD_HTTP_METHOD_HEAD) == 0;
	read_only = rq->head || strcmp(method, MHD_HTTP_METHOD_GET) == 0;

	if (rq->bad_uri)
		return send_error(con, rq, url, 400, "bad URI");
	if (rq->too_big)
		return send_error(con, rq, url, 413, "request body larger than 1 MiB");
	if (rq->query_too_long)
		return send_error(con, rq, url, 414, "query string too long");
	if (strcmp(url, "/api/v1/events") == 0) {
		if (!read_only)
			return send_error(con, rq, url, 405, "the event stream takes GET");
		if (has_body(con))
			return send_error(con, rq, url, 413, "request bodies are not accepted");
		return serve_events(con, rq, url);
	}
	if (api_path_matches(url)) {
		if (read_only && has_body(con))
			return send_error(con, rq, url, 413, "request bodies are not accepted");
		return serve_api(con, rq, url, method);
	}
	if (!read_only)
		return send_error(con, rq, url, 405, NULL);
	if (has_body(con))
		return send_error(con, rq, url, 413, "request bodies are not accepted");
	if (ui_path_matches(url))
		return serve_ui(con, rq, url);
	if (strcmp(url, "/metrics") == 0)
		return serve_metrics(con, rq, url);
	if (strncmp(url, "/boot/", 6) == 0) {
		if (looks_like_script(url + 6))
			return serve_script(con, rq, url, url + 6);
		return serve_file(con, rq, url, rq->srv->boot_fd, url + 6);
	}
	if (strncmp(url, "/repo/", 6) == 0)
		return serve_file(con, rq, url, rq->srv->repo_fd, url + 6);
	return send_error(con, rq, url, 404, NULL);
}

static bool has_encoded_nul(const char *uri)
{
	for (const char *p = uri; (p = strchr(p, '%')) != NULL; p++)
		if (p[1] == '0' && p[2] == '0')
			return true;
	return false;
}

static void *on_uri(void *cls, const char *uri, struct MHD_Connection *con)
{
	struct http_req *rq = calloc(1, sizeof(*rq));
	const char *q;

	if (!rq)
		return NULL;
	rq->srv = cls;
	rq->bad_uri = has_encoded_nul(uri);
	rq->raw_uri_end = (uintptr_t)uri + strlen(uri);
	q = strchr(uri, '?');
	if (q && strlen(q + 1) > HTTP_QUERY_MAX) {
		rq->query_too_long = true;
	} else if (q) {
		rq->query = strdup(q + 1);
		if (!rq->query) {
			free(rq);
			return NULL;
		}
	}
	/* The access log never shows a token given in the query. */
	rb_escape(rq->uri, sizeof(rq->uri), uri,
	          q && strstr(q, "access_token=") ? (size_t)(q - uri) : strlen(uri));
	return rq;
}

/* Kernel and initrd downloads are boot steps: they go into the node's event
 * log. Only /boot/ files, not the repository, so the ARP-table lookup that
 * ties the peer to a MAC costs nothing on the bulk-data path. */
static void note_boot_file(struct http_server *srv, struct MHD_Connection *con,
                           const struct http_req *rq, enum MHD_RequestTerminationCode toe)
{
	char peer[INET6_ADDRSTRLEN];
	struct in_addr ip;
	uint8_t mac[6];

	if (!rq->queued || strcmp(rq->method, "GET") || strncmp(rq->uri, "/boot/", 6) ||
	    rq->script || (rq->status != 200 && rq->status != 206))
		return;
	peer_addr(con, peer);
	if (inet_pton(AF_INET, peer, &ip) != 1 || netif_neigh_mac(ip, mac) < 0)
		return;
	registry_note(srv->reg, mac, NULL, peer,
	              toe == MHD_REQUEST_TERMINATED_COMPLETED_OK ? "http.file" : "http.abort",
	              "%s %llu bytes", rq->uri + 6, (unsigned long long)rq->body_len);
}

/* Counts connections. One above the hard limit is shut down here, before
 * MHD reads a byte: the client sees the connection close at once instead
 * of waiting in the listen backlog (which is what MHD's own limit does:
 * it stops accepting). MHD then closes it on its next read. */
static void on_connection(void *cls, struct MHD_Connection *con, void **socket_context,
                          enum MHD_ConnectionNotificationCode code)
{
	struct http_server *srv = cls;
	const union MHD_ConnectionInfo *ci;
	struct http_conn *hc = *socket_context;

	if (code == MHD_CONNECTION_NOTIFY_CLOSED) {
		atomic_fetch_sub_explicit(&srv->conns, 1, memory_order_relaxed);
		/* MHD closes the fd after this: once unlinked here, the reaper
		 * never touches it (nor a later connection reusing the number). */
		if (hc) {
			pthread_mutex_lock(&srv->conns_lock);
			if (hc->prev)
				hc->prev->next = hc->next;
			else
				srv->conn_list = hc->next;
			if (hc->next)
				hc->next->prev = hc->prev;
			pthread_mutex_unlock(&srv->conns_lock);
			free(hc);
			*socket_context = NULL;
		}
		return;
	}
	ci = MHD_get_connection_info(con, MHD_CONNECTION_INFO_CONNECTION_FD);
	if (atomic_fetch_add_explicit(&srv->conns, 1, memory_order_relaxed) + 1 > srv->hard_limit) {
		if (ci)
			shutdown(ci->connect_fd, SHUT_RDWR);
		return;
	}
	hc = ci ? calloc(1, sizeof(*hc)) : NULL;
	if (!hc)
		return; /* no deadline for this one; the idle timeout still holds */
	hc->fd = ci->connect_fd;
	hc->in_headers = true;
	hc->since = rb_now_usec();
	pthread_mutex_lock(&srv->conns_lock);
	hc->next = srv->conn_list;
	if (hc->next)
		hc->next->prev = hc;
	srv->conn_list = hc;
	pthread_mutex_unlock(&srv->conns_lock);
	*socket_context = hc;
}

/* Marks the connection's wait for request headers over (a request came)
 * or begun again (its request ended: the next one's headers are due). */
static void conn_headers(struct http_server *srv, struct MHD_Connection *con, bool waiting)
{
	const union MHD_ConnectionInfo *ci =
	        MHD_get_connection_info(con, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
	struct http_conn *hc = ci ? ci->socket_context : NULL;

	if (!hc)
		return;
	pthread_mutex_lock(&srv->conns_lock);
	hc->in_headers = waiting;
	hc->since = rb_now_usec();
	pthread_mutex_unlock(&srv->conns_lock);
}

/* Once a second: a connection still without a whole request header
 * http.header_timeout_s after it connected (or after its last answer) is
 * shut down; MHD then sees it end and closes it. */
static void *reaper_main(void *arg)
{
	struct http_server *srv = arg;

	pthread_mutex_lock(&srv->conns_lock);
	while (!srv->reaper_stop) {
		struct timespec ts;
		uint64_t now = rb_now_usec();

		for (struct http_conn *hc = srv->conn_list; hc; hc = hc->next) {
			if (!hc->in_headers || hc->cut || now - hc->since < srv->header_usec)
				continue;
			hc->cut = true;
			shutdown(hc->fd, SHUT_RDWR);
			atomic_fetch_add_explicit(&srv->header_cut, 1, memory_order_relaxed);
			log_info(
			        "http: a connection sent no complete request header within %llu s: "
			        "closed (http.header_timeout_s)",
			        (unsigned long long)(srv->header_usec / 1000000));
		}
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_sec += 1;
		pthread_cond_timedwait(&srv->reaper_cond, &srv->conns_lock, &ts);
	}
	pthread_mutex_unlock(&srv->conns_lock);
	return NULL;
}

static void on_completed(void *cls, struct MHD_Connection *con, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
	struct http_server *srv = cls;
	struct http_req *rq = *con_cls;

	if (!rq)
		return;
	*con_cls = NULL;
	conn_headers(srv, con, true);
	atomic_fetch_add_explicit(&srv->requests, 1, memory_order_relaxed);
	if (!rq->queued || rq->status >= 400)
		atomic_fetch_add_explicit(&srv->errors, 1, memory_order_relaxed);
	if (toe == MHD_REQUEST_TERMINATED_COMPLETED_OK)
		atomic_fetch_add_explicit(&srv->bytes_sent, rq->body_len, memory_order_relaxed);
	note_boot_file(srv, con, rq, toe);
	free(rq->req_body);
	free(rq->query);
	if (rb_log_level() >= LOG_DEBUG) {
		char peer[INET6_ADDRSTRLEN];

		peer_addr(con, peer);
		log_debug("http: %s %s %s %u %llu%s", peer, rq->method, rq->uri, rq->status,
		          (unsigned long long)(toe == MHD_REQUEST_TERMINATED_COMPLETED_OK
		                                       ? rq->body_len
		                                       : 0),
		          toe == MHD_REQUEST_TERMINATED_COMPLETED_OK ? "" : " (aborted)");
	}
	free(rq);
}

static void on_mhd_log(void *cls, const char *fmt, va_list ap)
{
	char buf[256];

	vsnprintf(buf, sizeof(buf), fmt, ap);
	buf[strcspn(buf, "\n")] = '\0';
	log_debug("http: mhd: %s", buf);
}

/* ---- lifecycle ---------------------------------------------------------- */

static int open_dir(const char *path, int *ret)
{
	int fd;

	if (!path || !*path) {
		*ret = -1;
		return 0;
	}
	fd = open(path, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	*ret = fd;
	return 0;
}

int http_server_new(const struct rb_config *cfg, struct registry *reg, struct http_server **ret)
{
	struct http_server *srv;
	struct sockaddr_in sin = {
		.sin_family = AF_INET,
		.sin_port = htons(cfg->http_port),
		.sin_addr = cfg->server_addr,
	};
	/* Suspend/resume: event stream connections leave the poll set while
	 * they have nothing to send. */
	unsigned flags =
	        MHD_USE_EPOLL_INTERNAL_THREAD | MHD_USE_ERROR_LOG | MHD_ALLOW_SUSPEND_RESUME;
	unsigned idle_s = cfg->http_idle_timeout_s ? cfg->http_idle_timeout_s : HTTP_IDLE_DEFAULT_S;
	int r;

	srv = calloc(1, sizeof(*srv));
	if (!srv)
		return -ENOMEM;
	srv->cfg = cfg;
	srv->reg = reg;
	srv->boot_fd = srv->repo_fd = srv->tmpl_fd = -1;
	srv->soft_limit = RB_MAX(cfg->http_max_conns, 1u);
	srv->hard_limit =
	        srv->soft_limit + RB_MAX(srv->soft_limit / 8, (unsigned)HTTP_SHED_RESERVE_MIN);
	pthread_mutex_init(&srv->stats_lock, NULL);
	pthread_mutex_init(&srv->conns_lock, NULL);
	pthread_cond_init(&srv->reaper_cond, NULL);
	srv->header_usec = (uint64_t)(cfg->http_header_timeout_s ? cfg->http_header_timeout_s
	                                                         : HTTP_HEADER_DEFAULT_S) *
	                   1000000;
	r = open_dir(cfg->http_boot_root, &srv->boot_fd);
	if (r < 0) {
		log_error("http: boot_root %s: %s", cfg->http_boot_root, strerror(-r));
		goto err_free;
	}
	/* A PXE-only setup may have no repository yet: /repo/ then answers
	 * 404, but the boot root and an explicit templates_dir must exist. */
	r = open_dir(cfg->repo_root, &srv->repo_fd);
	if (r < 0)
		log_warn("http: repo_root %s: %s; /repo/ answers 404 until a restart",
		         cfg->repo_root, strerror(-r));
	r = open_dir(cfg->templates_dir, &srv->tmpl_fd);
	if (r < 0) {
		log_error("http: templates_dir %s: %s", cfg->templates_dir, strerror(-r));
		goto err_free;
	}
	r = api_new(cfg, reg, srv->repo_fd, API_PROGRESS_MAX, &srv->api);
	if (r < 0)
		goto err_free;
	r = events_new(reg, cfg->api_heartbeat_s, &srv->events);
	if (r < 0)
		goto err_free;
	api_set_events(srv->api, srv->events);
	if (api_ops_token_count(api_ops_of(srv->api)) == 0)
		log_warn("operator API: no tokens in %s: every operator request is refused "
		         "(401) until one is made with: rackbootd token create NAME",
		         cfg->api_tokens_file);
	else
		log_info("operator API: %zu tokens in %s",
		         api_ops_token_count(api_ops_of(srv->api)), cfg->api_tokens_file);

	errno = 0;
	/* The logger goes first so that MHD's own option parsing uses it. */
	srv->mhd = MHD_start_daemon(
	        flags, cfg->http_port, NULL, NULL, on_request, srv, MHD_OPTION_EXTERNAL_LOGGER,
	        on_mhd_log, srv, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sin,
	        MHD_OPTION_THREAD_POOL_SIZE, (unsigned)RB_MAX(cfg->http_threads, 1u),
	        MHD_OPTION_CONNECTION_LIMIT, srv->hard_limit + HTTP_MHD_LIMIT_MARGIN,
	        MHD_OPTION_CONNECTION_TIMEOUT, idle_s, MHD_OPTION_NOTIFY_CONNECTION, on_connection,
	        srv, MHD_OPTION_LISTEN_BACKLOG_SIZE, (unsigned)HTTP_LISTEN_BACKLOG,
	        MHD_OPTION_URI_LOG_CALLBACK, on_uri, srv, MHD_OPTION_NOTIFY_COMPLETED, on_completed,
	        srv, MHD_OPTION_END);
	if (!srv->mhd) {
		r = errno ? -errno : -EADDRINUSE;
		goto err_free;
	}
	r = -pthread_create(&srv->reaper, NULL, reaper_main, srv);
	if (r < 0)
		goto err_free;
	srv->reaper_on = true;
	log_debug("http: listening on port %u, %u threads, 503 above %u connections, closed "
	          "above %u, idle ones closed after %u s, request headers due within %llu s",
	          cfg->http_port, cfg->http_threads, srv->soft_limit, srv->hard_limit, idle_s,
	          (unsigned long long)(srv->header_usec / 1000000));
	*ret = srv;
	return 0;

err_free:
	http_server_free(srv);
	return r;
}

void http_server_free(struct http_server *srv)
{
	if (!srv)
		return;
	/* Suspended event streams must be resumed before MHD stops (it
	 * refuses to stop with suspended connections); they then end. */
	events_close_all(srv->events);
	if (srv->reaper_on) {
		pthread_mutex_lock(&srv->conns_lock);
		srv->reaper_stop = true;
		pthread_cond_signal(&srv->reaper_cond);
		pthread_mutex_unlock(&srv->conns_lock);
		pthread_join(srv->reaper, NULL);
	}
	if (srv->mhd)
		MHD_stop_daemon(srv->mhd);
	events_free(srv->events);
	api_free(srv->api);
	if (srv->boot_fd >= 0)
		close(srv->boot_fd);
	if (srv->repo_fd >= 0)
		close(srv->repo_fd);
	if (srv->tmpl_fd >= 0)
		close(srv->tmpl_fd);
	pthread_mutex_destroy(&srv->stats_lock);
	pthread_mutex_destroy(&srv->conns_lock);
	pthread_cond_destroy(&srv->reaper_cond);
	free(srv);
}

void http_server_stats(const struct http_server *srv, struct http_stats *ret)
{
	struct http_server *s = (struct http_server *)srv;

	ret->requests = atomic_load_explicit(&s->requests, memory_order_relaxed);
	ret->errors = atomic_load_explicit(&s->errors, memory_order_relaxed);
	ret->bytes_sent = atomic_load_explicit(&s->bytes_sent, memory_order_relaxed);
	ret->header_timeouts = atomic_load_explicit(&s->header_cut, memory_order_relaxed);
}
