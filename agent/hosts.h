/* Which hosts the agent downloads from: the repository's and a short list
 * of others (the plan's repo_hosts, --allow-host), checked on every
 * request and every redirect hop. See agent/hosts.c. */
#pragma once
#include <stdbool.h>
#include <stddef.h>

#include "common/hostport.h"

#define AGENT_HOSTS_MAX 32 /* entries in one allowlist, the repository's included */

struct agent_host {
	char name[RB_HOST_MAX]; /* rb_host_normalize() form */
	unsigned port;          /* 0 = any port */
};

struct agent_hosts {
	struct agent_host h[AGENT_HOSTS_MAX];
	size_t n;
	const char *hint; /* where more hosts are allowed, for the message */
};

#define AGENT_HOSTS_HINT_PLAN "the plan's repo_hosts (rackbootd.conf http.repo_hosts)"
#define AGENT_HOSTS_HINT_CMD  "the hosts given with --allow-host"
#define AGENT_HOSTS_HINT_CONF "agent.conf's repo_hosts (rackbootd.conf http.repo_hosts)"

/* The host and port of an http:// or https:// URL as libcurl reads it
 * (userinfo dropped, the scheme's default port when none is given), the
 * name normalised. -EPROTONOSUPPORT for another scheme (file://, ...),
 * -EINVAL when it does not parse. */
int agent_url_host(const char *url, struct agent_host *ret);

/* Does host h (a URL's, with its port) match the entry? */
bool agent_host_match(const struct agent_host *entry, const struct agent_host *h);

/* Starts a list with the repository's host and port (exactly that port).
 * -EINVAL/-EPROTONOSUPPORT when repo is not an http(s) URL. */
int agent_hosts_init(struct agent_hosts *hs, const char *repo, const char *hint);

/* Adds a "host[:port]" entry (rb_hostport_parse()). -EINVAL malformed,
 * -E2BIG when the list is full. */
int agent_hosts_add(struct agent_hosts *hs, const char *spec);

/* agent_hosts_init() and agent_hosts_add() of each of allow[0..n), with
 * a message naming the bad one in err. */
int agent_hosts_build(struct agent_hosts *hs, const char *repo, const char *const *allow, size_t n,
                      const char *hint, char *err, size_t errlen);

/* May the agent request url (redirect: reached by a redirect)? hs NULL
 * allows only the host and port of first (the URL asked for). 0, or
 * -EACCES with a message naming the URL, the host and what to configure
 * ("redirect to ... refused: host ... is not the repository's nor in ..."). */
int agent_hosts_check(const struct agent_hosts *hs, const char *first, const char *url,
                      bool redirect, char *err, size_t errlen);

/* Guards one curl transfer: every request it makes (redirects included)
 * must go to an allowed host. */
struct agent_hop_guard {
	const struct agent_hosts *hosts; /* NULL: only first's host */
	const char *first;               /* the URL asked for */
	void *easy;                      /* the curl handle guarded */
	unsigned requests;               /* requests checked (the first is not a redirect) */
	long status;                     /* of the response being read */
	int refused;                     /* -EACCES once a hop was refused */
	char msg[512];
};

/* Sets up the guard on a curl easy handle (CURLOPT_PREREQFUNCTION: the
 * URL about to be requested is checked before a byte is sent) and resets
 * it. The caller's header callback must pass each line to
 * agent_hop_guard_header(); agent_hop_guard_install() sets one that does
 * only that when the caller has none. */
void agent_hop_guard_reset(struct agent_hop_guard *g, const struct agent_hosts *hs,
                           const char *first);
void agent_hop_guard_install(struct agent_hop_guard *g, void *easy, bool header_cb);

/* One header line as curl's header callback gets it. A Location of a 3xx
 * response is resolved against the request's URL and checked before curl
 * follows it (no connection to a refused host). false: stop the transfer
 * (g->refused and g->msg say why). */
bool agent_hop_guard_header(struct agent_hop_guard *g, void *easy, const char *line, size_t len);
