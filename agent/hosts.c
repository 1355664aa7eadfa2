/* hosts: the agent downloads image data, catalogues and packages only from
 * the repository's host and the hosts the plan (or the command line)
 * names, on every hop of every request.
 *
 * A URL's host is read with libcurl's own URL parser (curl_url()), from
 * the URL libcurl is about to request, so that the host checked is the
 * host connected to: no second parser to disagree about "http://repo@evil/"
 * or "http://evil\@repo/". Names compare in common/hostport.c's normal
 * form; the repository's entry carries its exact port, a repo_hosts entry
 * without a port allows any port of that host.
 *
 * The guard checks a transfer twice: the Location of a 3xx response,
 * resolved against the request's URL, in the header callback (curl then
 * stops before it connects anywhere), and CURLOPT_PREREQFUNCTION, which
 * sees the URL of each request after the connection is made and before a
 * byte of it is sent (the authoritative check, whatever the first one
 * missed). Either way no body byte of a refused hop reaches the caller.
 *
 * Owns nothing but the guard's message; never does I/O itself and never
 * logs above debug. */
#include "agent/hosts.h"

#include <curl/curl.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "common/log.h"
#include "common/util.h"

int agent_url_host(const char *url, struct agent_host *ret)
{
	char *scheme = NULL, *host = NULL, *port = NULL;
	struct agent_host h = { 0 };
	CURLU *u = curl_url();
	long long pv;
	int r = -EINVAL;

	if (!u)
		return -ENOMEM;
	if (curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK ||
	    curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK)
		goto out;
	if (strcasecmp(scheme, "http") != 0 && strcasecmp(scheme, "https") != 0) {
		r = -EPROTONOSUPPORT;
		goto out;
	}
	if (curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK ||
	    curl_url_get(u, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT) != CURLUE_OK ||
	    rb_strtonum(port, 1, 65535, &pv) < 0 ||
	    rb_host_normalize(host, strlen(host), h.name) < 0)
		goto out;
	h.port = (unsigned)pv;
	*ret = h;
	r = 0;
out:
	curl_free(scheme);
	curl_free(host);
	curl_free(port);
	curl_url_cleanup(u);
	return r;
}

bool agent_host_match(const struct agent_host *entry, const struct agent_host *h)
{
	return strcmp(entry->name, h->name) == 0 && (entry->port == 0 || entry->port == h->port);
}

int agent_hosts_init(struct agent_hosts *hs, const char *repo, const char *hint)
{
	int r;

	hs->n = 0;
	hs->hint = hint;
	r = agent_url_host(repo, &hs->h[0]);
	if (r < 0)
		return r;
	hs->n = 1;
	return 0;
}

int agent_hosts_add(struct agent_hosts *hs, const char *spec)
{
	struct agent_host h;

	if (rb_hostport_parse(spec, h.name, &h.port) < 0)
		return -EINVAL;
	if (hs->n == AGENT_HOSTS_MAX)
		return -E2BIG;
	hs->h[hs->n++] = h;
	return 0;
}

int agent_hosts_build(struct agent_hosts *hs, const char *repo, const char *const *allow, size_t n,
                      const char *hint, char *err, size_t errlen)
{
	int r = agent_hosts_init(hs, repo, hint);

	if (r < 0) {
		snprintf(err, errlen, "%.300s: %s", repo,
		         r == -EPROTONOSUPPORT ? "only http:// and https:// repositories"
		                               : "not a URL with a host");
		return r;
	}
	for (size_t i = 0; i < n; i++) {
		r = agent_hosts_add(hs, allow[i]);
		if (r == -E2BIG) {
			snprintf(err, errlen, "more than %d allowed hosts", AGENT_HOSTS_MAX - 1);
			return r;
		}
		if (r < 0) {
			snprintf(err, errlen,
			         "allowed host \"%.300s\": expected \"host\" or \"host:port\" "
			         "(an IPv6 address in brackets with a port), like "
			         "\"cache1.rack3.example\" or \"10.0.0.5:8080\"",
			         allow[i]);
			return r;
		}
	}
	return 0;
}

static void host_format(const struct agent_host *h, char *buf, size_t len)
{
	bool v6 = strchr(h->name, ':') != NULL;

	snprintf(buf, len, "%s%s%s:%u", v6 ? "[" : "", h->name, v6 ? "]" : "", h->port);
}

int agent_hosts_check(const struct agent_hosts *hs, const char *first, const char *url,
                      bool redirect, char *err, size_t errlen)
{
	const char *what = redirect ? "redirect to" : "request to";
	struct agent_host h, f;
	char hp[RB_HOST_MAX + 16];
	int r;

	r = agent_url_host(url, &h);
	if (r == -EPROTONOSUPPORT) {
		snprintf(err, errlen, "%s %.200s refused: only http:// and https:// are allowed",
		         what, url);
		return -EACCES;
	}
	if (r < 0) {
		snprintf(err, errlen,
		         "%s %.200s refused: not a URL with a host this agent can check", what,
		         url);
		return -EACCES;
	}
	/* What was asked for over TLS is not fetched in the clear, whatever
	 * the host: a downgrade would hand the body to anyone on the path
	 * (the signature still guards images, not the catalogue's privacy). */
	if (strncasecmp(first, "https://", 8) == 0 && strncasecmp(url, "https://", 8) != 0) {
		snprintf(err, errlen,
		         "%s %.200s refused: %.200s was asked for over https, and a redirect "
		         "may not drop TLS (serve the target over https)",
		         what, url, first);
		return -EACCES;
	}
	if (hs) {
		for (size_t i = 0; i < hs->n; i++)
			if (agent_host_match(&hs->h[i], &h))
				return 0;
	} else if (agent_url_host(first, &f) == 0 && agent_host_match(&f, &h)) {
		return 0;
	}
	host_format(&h, hp, sizeof(hp));
	snprintf(err, errlen, "%s %.200s refused: host %s is not the repository's%s%s", what, url,
	         hp, hs && hs->hint ? " nor in " : " (redirects must stay on it)",
	         hs && hs->hint ? hs->hint : "");
	return -EACCES;
}

/* ---- the curl guard -------------------------------------------------------------------- */

static void refuse(struct agent_hop_guard *g, const char *msg)
{
	if (g->refused)
		return;
	g->refused = -EACCES;
	snprintf(g->msg, sizeof(g->msg), "%s", msg);
	log_debug("hosts: %s", msg);
}

static int on_prereq(void *ud, char *ip, char *local, int port, int lport)
{
	struct agent_hop_guard *g = ud;
	char *url = NULL;
	char msg[sizeof(g->msg)];

	(void)ip;
	(void)local;
	(void)port;
	(void)lport;
	if (g->refused)
		return CURL_PREREQFUNC_ABORT;
	if (curl_easy_getinfo(g->easy, CURLINFO_EFFECTIVE_URL, &url) != CURLE_OK || !url) {
		refuse(g, "cannot tell which URL is requested");
		return CURL_PREREQFUNC_ABORT;
	}
	if (agent_hosts_check(g->hosts, g->first, url, g->requests > 0, msg, sizeof(msg)) < 0) {
		refuse(g, msg);
		return CURL_PREREQFUNC_ABORT;
	}
	g->requests++;
	return CURL_PREREQFUNC_OK;
}

static size_t on_header(char *p, size_t size, size_t n, void *ud)
{
	struct agent_hop_guard *g = ud;
	size_t k = size * n;

	return agent_hop_guard_header(g, g->easy, p, k) ? k : 0;
}

void agent_hop_guard_reset(struct agent_hop_guard *g, const struct agent_hosts *hs,
                           const char *first)
{
	memset(g, 0, sizeof(*g));
	g->hosts = hs;
	g->first = first;
}

void agent_hop_guard_install(struct agent_hop_guard *g, void *easy, bool header_cb)
{
	g->easy = easy;
	curl_easy_setopt(easy, CURLOPT_PREREQFUNCTION, on_prereq);
	curl_easy_setopt(easy, CURLOPT_PREREQDATA, g);
	if (header_cb) {
		curl_easy_setopt(easy, CURLOPT_HEADERFUNCTION, on_header);
		curl_easy_setopt(easy, CURLOPT_HEADERDATA, g);
	}
}

/* The status of a status line "HTTP/1.1 302 Found", or -1. */
static long status_of(const char *p, size_t len)
{
	const char *sp = memchr(p, ' ', len);
	long v = 0;

	if (!sp || (size_t)(sp - p) + 4 > len)
		return -1;
	for (int i = 1; i <= 3; i++) {
		if (sp[i] < '0' || sp[i] > '9')
			return -1;
		v = v * 10 + (sp[i] - '0');
	}
	return v;
}

bool agent_hop_guard_header(struct agent_hop_guard *g, void *easy, const char *line, size_t len)
{
	char loc[2048], msg[sizeof(g->msg)], *base = NULL, *next = NULL;
	size_t a = 9, b = len;
	CURLU *u;
	bool ok = false;

	if (g->refused)
		return false;
	if (len >= 5 && strncasecmp(line, "HTTP/", 5) == 0) {
		g->status = status_of(line, len);
		return true;
	}
	if (g->status < 300 || g->status > 399 || len < 9 || strncasecmp(line, "Location:", 9) != 0)
		return true;
	while (a < b && (line[a] == ' ' || line[a] == '\t'))
		a++;
	while (b > a && (line[b - 1] == '\r' || line[b - 1] == '\n' || line[b - 1] == ' ' ||
	                 line[b - 1] == '\t'))
		b--;
	if (b - a >= sizeof(loc)) {
		refuse(g, "redirect refused: Location longer than 2047 bytes");
		return false;
	}
	memcpy(loc, line + a, b - a);
	loc[b - a] = '\0';
	/* Resolved the way curl follows it (lib/transfer.c Curl_follow()). */
	u = curl_url();
	if (!u || curl_easy_getinfo(easy, CURLINFO_EFFECTIVE_URL, &base) != CURLE_OK || !base ||
	    curl_url_set(u, CURLUPART_URL, base, 0) != CURLUE_OK ||
	    curl_url_set(u, CURLUPART_URL, loc, CURLU_URLENCODE | CURLU_ALLOW_SPACE) != CURLUE_OK ||
	    curl_url_get(u, CURLUPART_URL, &next, 0) != CURLUE_OK) {
		snprintf(msg, sizeof(msg),
		         "redirect to %.200s refused: only http:// and https:// URLs are allowed",
		         loc);
		refuse(g, msg);
		goto out;
	}
	if (agent_hosts_check(g->hosts, g->first, next, true, msg, sizeof(msg)) < 0) {
		refuse(g, msg);
		goto out;
	}
	ok = true;
out:
	curl_free(next);
	curl_url_cleanup(u);
	return ok;
}
