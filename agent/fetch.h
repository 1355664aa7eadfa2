/* HTTP(S) fetching for the agent (libcurl): small files into memory with a
 * size cap, and byte ranges of pack files over keep-alive connections with
 * the multi interface, bounded retries and a low-speed abort. */
#pragma once
#include <stddef.h>
#include <stdint.h>

#include "agent/hosts.h"

struct agent_fetch_opts {
	unsigned timeout_s;      /* connect timeout and low-speed window */
	unsigned retries;        /* extra attempts per request after the first */
	unsigned parallel;       /* range transfers at once (1..16) */
	uint64_t max_recv_speed; /* bytes/s per transfer, 0 = unlimited */
	/* Hosts every request and redirect hop may go to (agent/hosts.h);
	 * NULL: only the host and port of the URL asked for. */
	const struct agent_hosts *hosts;
};

#define AGENT_FETCH_LOW_SPEED 1024 /* bytes/s below which timeout_s aborts */

/* True for a URL that starts with http:// or https://. */
int agent_url_is_http(const char *url);

/* Fetches url into a NUL-terminated buffer of at most max bytes (*ret_len
 * excludes the NUL). Retries transient failures. -EFBIG over max, -ENOENT
 * on 404/410, -EACCES for a request or redirect to a host o->hosts does
 * not allow (or a scheme other than http/https), -EPROTO on other HTTP
 * errors, -EIO on network errors, with a message in err naming the URL. *ret_requests
 * (may be NULL) is incremented per HTTP request made. */
int agent_fetch_small(const char *url, size_t max, const struct agent_fetch_opts *o, char **ret,
                      size_t *ret_len, unsigned *ret_requests, char *err, size_t errlen);

/* One range request, owned by the caller. url, offset, length, buf (length
 * bytes) and user are set by the caller; the rest is the fetcher's. */
struct agent_xfer {
	const char *url;
	uint64_t offset;
	size_t length;
	uint8_t *buf;
	void *user;
	/* results */
	size_t got;     /* bytes received so far (a retry resumes from here) */
	unsigned tries; /* requests made */
	int error;      /* 0 or -errno once finished (-EACCES: a host refused) */
	char errmsg[560];
	/* internal */
	void *easy;
	struct agent_hop_guard *guard;
	uint64_t not_before; /* monotonic usec of the next retry */
	int overflow;
	struct agent_xfer *next;
};

struct agent_fetcher;

int agent_fetcher_new(const struct agent_fetch_opts *o, struct agent_fetcher **ret);
/* Frees the fetcher; xfers not yet handed back are passed to release (if
 * not NULL) so that the caller can free them. */
void agent_fetcher_free(struct agent_fetcher *f, void (*release)(struct agent_xfer *x));

/* Starts (queues) a transfer. The xfer must stay alive until returned by
 * agent_fetcher_poll(). */
int agent_fetcher_add(struct agent_fetcher *f, struct agent_xfer *x);

/* Runs transfers for up to timeout_ms (or until agent_fetcher_wakeup()).
 * Sets *ret_done to a finished xfer (x->error tells how), or NULL. */
int agent_fetcher_poll(struct agent_fetcher *f, int timeout_ms, struct agent_xfer **ret_done);

/* Thread-safe: makes a waiting agent_fetcher_poll() return early. */
void agent_fetcher_wakeup(struct agent_fetcher *f);

/* Transfers added and not yet returned by agent_fetcher_poll(). */
unsigned agent_fetcher_pending(const struct agent_fetcher *f);

/* Bytes received so far for the transfers not yet handed back. */
uint64_t agent_fetcher_in_flight(const struct agent_fetcher *f);

/* HTTP requests made and bytes received so far. */
void agent_fetcher_stats(const struct agent_fetcher *f, unsigned *ret_requests,
                         uint64_t *ret_bytes);
