/* fetch: the agent's HTTP client, on libcurl.
 *
 * Two ways in: agent_fetch_small() reads a small file (manifest, signature)
 * into memory, refusing more than a cap; the fetcher runs byte-range
 * requests of pack files on one curl multi handle, whose connection cache
 * keeps connections alive between requests.
 *
 * Every request: http and https only, also after a redirect (a repository
 * that redirects to file:// or anything else is refused); to the hosts of
 * opts.hosts only, on every hop (agent/hosts.c: a redirect elsewhere ends
 * the request before a body byte is taken, and is never retried); a
 * connect timeout
 * and a low-speed abort (below AGENT_FETCH_LOW_SPEED bytes/s for timeout_s);
 * HTTP errors fail the request. Transient failures (network errors, 5xx,
 * 408, 429) are retried a bounded number of times with exponential backoff;
 * a range retry resumes at the first byte not yet received. A range response
 * must be exactly the bytes asked for: a server sending more (e.g. ignoring
 * Range with a 200) is an error, not truncated silently. The fetcher never
 * loops forever: every request ends in success or an error after at most
 * 1 + retries attempts, each bounded by the low-speed window.
 *
 * Owns: curl handles. Never writes to disk, never logs above debug. */
#include "agent/fetch.h"

#include <curl/curl.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "common/log.h"
#include "common/util.h"

#define RANGE_BUFFER (256L * 1024) /* curl's receive buffer for ranges */

struct agent_fetcher {
	struct agent_fetch_opts opts;
	CURLM *multi;
	struct agent_xfer *active; /* with a curl handle in the multi */
	struct agent_xfer *retry;  /* waiting for their backoff to pass */
	struct agent_xfer *done;   /* finished, not yet handed back */
	unsigned pending;          /* added, not yet handed back */
	unsigned requests;
	uint64_t bytes;
};

int agent_url_is_http(const char *url)
{
	return strncasecmp(url, "http://", 7) == 0 || strncasecmp(url, "https://", 8) == 0;
}

static void setup_easy(CURL *e, const struct agent_fetch_opts *o)
{
	curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(e, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 1L);
	curl_easy_setopt(e, CURLOPT_MAXREDIRS, 5L);
	curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT, (long)o->timeout_s);
	curl_easy_setopt(e, CURLOPT_LOW_SPEED_LIMIT, (long)AGENT_FETCH_LOW_SPEED);
	curl_easy_setopt(e, CURLOPT_LOW_SPEED_TIME, (long)o->timeout_s);
	curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(e, CURLOPT_FAILONERROR, 1L);
	curl_easy_setopt(e, CURLOPT_USERAGENT, "rackboot-agent/1");
	curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
	if (o->max_recv_speed)
		curl_easy_setopt(e, CURLOPT_MAX_RECV_SPEED_LARGE, (curl_off_t)o->max_recv_speed);
}

/* Classifies a finished request: 0 ok, else -errno; *retry if transient. */
static int classify(CURL *e, CURLcode rc, bool *retry, char *msg, size_t msglen)
{
	long status = 0;

	curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &status);
	*retry = false;
	switch (rc) {
	case CURLE_OK:
		return 0;
	case CURLE_HTTP_RETURNED_ERROR:
		snprintf(msg, msglen, "HTTP %ld", status);
		*retry = status >= 500 || status == 408 || status == 429;
		return status == 404 || status == 410 ? -ENOENT : -EPROTO;
	case CURLE_UNSUPPORTED_PROTOCOL:
	case CURLE_TOO_MANY_REDIRECTS:
		snprintf(msg, msglen, "%s (only http/https are allowed)", curl_easy_strerror(rc));
		return -EPROTO;
	case CURLE_COULDNT_RESOLVE_HOST:
	case CURLE_COULDNT_CONNECT:
	case CURLE_OPERATION_TIMEDOUT:
	case CURLE_PARTIAL_FILE:
	case CURLE_RECV_ERROR:
	case CURLE_SEND_ERROR:
	case CURLE_GOT_NOTHING:
	case CURLE_SSL_CONNECT_ERROR:
		*retry = true;
		/* fall through */
	default:
		snprintf(msg, msglen, "%s", curl_easy_strerror(rc));
		return -EIO;
	}
}

static uint64_t backoff_usec(unsigned tries)
{
	unsigned shift = tries > 5 ? 5 : tries;
	uint64_t us = 125000ULL << shift; /* 0.25 s, 0.5 s, ... capped at 4 s */

	return us > 4000000ULL ? 4000000ULL : us;
}

static void sleep_usec(uint64_t us)
{
	struct timespec ts = { .tv_sec = (time_t)(us / 1000000),
		               .tv_nsec = (long)(us % 1000000) * 1000 };

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

/* ---- small files ---------------------------------------------------------- */

struct membuf {
	char *data;
	size_t len, cap, max;
	bool toobig;
};

static size_t membuf_write(char *p, size_t size, size_t n, void *ud)
{
	struct membuf *b = ud;
	size_t k = size * n;

	if (k > b->max - b->len) {
		b->toobig = true;
		return 0;
	}
	if (b->len + k + 1 > b->cap) {
		size_t cap = RB_MAX(b->cap * 2, b->len + k + 1);
		char *d;

		cap = RB_MIN(cap, b->max + 1);
		d = realloc(b->data, cap);
		if (!d)
			return 0;
		b->data = d;
		b->cap = cap;
	}
	memcpy(b->data + b->len, p, k);
	b->len += k;
	return k;
}

int agent_fetch_small(const char *url, size_t max, const struct agent_fetch_opts *o, char **ret,
                      size_t *ret_len, unsigned *ret_requests, char *err, size_t errlen)
{
	struct membuf b = { .max = max };
	struct agent_hop_guard g;
	char msg[sizeof(g.msg)] = "";
	CURL *e;
	int r = -EIO;

	if (!agent_url_is_http(url)) {
		snprintf(err, errlen, "%s: only http:// and https:// URLs are allowed", url);
		return -EPROTO;
	}
	e = curl_easy_init();
	if (!e) {
		snprintf(err, errlen, "%s: out of memory", url);
		return -ENOMEM;
	}
	for (unsigned t = 0; t <= o->retries; t++) {
		bool retry;
		CURLcode rc;

		if (t > 0)
			sleep_usec(backoff_usec(t));
		b.len = 0;
		curl_easy_reset(e);
		setup_easy(e, o);
		curl_easy_setopt(e, CURLOPT_URL, url);
		curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, membuf_write);
		curl_easy_setopt(e, CURLOPT_WRITEDATA, &b);
		agent_hop_guard_reset(&g, o->hosts, url);
		agent_hop_guard_install(&g, e, true);
		rc = curl_easy_perform(e);
		if (ret_requests)
			(*ret_requests)++;
		if (g.refused) {
			snprintf(err, errlen, "%s: %s", url, g.msg);
			r = g.refused;
			goto out;
		}
		if (b.toobig) {
			snprintf(err, errlen, "%s: larger than %zu bytes", url, max);
			r = -EFBIG;
			goto out;
		}
		r = classify(e, rc, &retry, msg, sizeof(msg));
		if (r == 0 || !retry)
			break;
		log_debug("fetch %s: %s, attempt %u", url, msg, t + 1);
	}
	if (r < 0) {
		snprintf(err, errlen, "%s: %s", url, msg);
		goto out;
	}
	if (!b.data && !(b.data = malloc(1))) {
		r = -ENOMEM;
		snprintf(err, errlen, "%s: out of memory", url);
		goto out;
	}
	b.data[b.len] = '\0';
	*ret = b.data;
	*ret_len = b.len;
	b.data = NULL;
out:
	free(b.data);
	curl_easy_cleanup(e);
	return r;
}

/* ---- ranges ----------------------------------------------------------------- */

int agent_fetcher_new(const struct agent_fetch_opts *o, struct agent_fetcher **ret)
{
	struct agent_fetcher *f = calloc(1, sizeof(*f));

	if (!f)
		return -ENOMEM;
	f->opts = *o;
	f->multi = curl_multi_init();
	if (!f->multi) {
		free(f);
		return -ENOMEM;
	}
	/* One connection per parallel transfer, kept alive between ranges. */
	curl_multi_setopt(f->multi, CURLMOPT_MAX_HOST_CONNECTIONS, (long)o->parallel);
	curl_multi_setopt(f->multi, CURLMOPT_MAXCONNECTS, (long)o->parallel);
	*ret = f;
	return 0;
}

void agent_fetcher_free(struct agent_fetcher *f, void (*release)(struct agent_xfer *x))
{
	struct agent_xfer *lists[3], *x, *next;

	if (!f)
		return;
	lists[0] = f->active;
	lists[1] = f->retry;
	lists[2] = f->done;
	for (int k = 0; k < 3; k++)
		for (x = lists[k]; x; x = next) {
			next = x->next;
			if (x->easy) {
				curl_multi_remove_handle(f->multi, x->easy);
				curl_easy_cleanup(x->easy);
				x->easy = NULL;
			}
			free(x->guard);
			x->guard = NULL;
			if (release)
				release(x);
		}
	curl_multi_cleanup(f->multi);
	free(f);
}

static size_t xfer_write(char *p, size_t size, size_t n, void *ud)
{
	struct agent_xfer *x = ud;
	size_t k = size * n;

	if (k > x->length - x->got) {
		x->overflow = 1;
		return 0;
	}
	memcpy(x->buf + x->got, p, k);
	x->got += k;
	return k;
}

static int start(struct agent_fetcher *f, struct agent_xfer *x)
{
	CURL *e = curl_easy_init();
	char range[64];

	if (!e)
		return -ENOMEM;
	if (!x->guard && !(x->guard = malloc(sizeof(*x->guard)))) {
		curl_easy_cleanup(e);
		return -ENOMEM;
	}
	setup_easy(e, &f->opts);
	agent_hop_guard_reset(x->guard, f->opts.hosts, x->url);
	agent_hop_guard_install(x->guard, e, true);
	snprintf(range, sizeof(range), "%llu-%llu", (unsigned long long)(x->offset + x->got),
	         (unsigned long long)(x->offset + x->length - 1));
	curl_easy_setopt(e, CURLOPT_URL, x->url);
	curl_easy_setopt(e, CURLOPT_RANGE, range);
	/* Ranges are megabytes: a larger receive buffer than curl's 16 KiB
	 * means a sixteenth of the recv/poll calls and write callbacks. Not
	 * with a rate limit: libcurl 7.88 then stops throttling at all. */
	if (!f->opts.max_recv_speed)
		curl_easy_setopt(e, CURLOPT_BUFFERSIZE, (long)RANGE_BUFFER);
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, xfer_write);
	curl_easy_setopt(e, CURLOPT_WRITEDATA, x);
	curl_easy_setopt(e, CURLOPT_PRIVATE, x);
	if (curl_multi_add_handle(f->multi, e) != CURLM_OK) {
		curl_easy_cleanup(e);
		return -ENOMEM;
	}
	x->easy = e;
	x->next = f->active;
	f->active = x;
	x->tries++;
	f->requests++;
	return 0;
}

int agent_fetcher_add(struct agent_fetcher *f, struct agent_xfer *x)
{
	int r;

	if (x->length == 0)
		return -EINVAL;
	x->got = 0;
	x->tries = 0;
	x->error = 0;
	x->errmsg[0] = '\0';
	x->overflow = 0;
	x->guard = NULL;
	r = start(f, x);
	if (r < 0) {
		free(x->guard);
		x->guard = NULL;
		return r;
	}
	f->pending++;
	return 0;
}

static void finish(struct agent_fetcher *f, struct agent_xfer *x, int error)
{
	x->error = error;
	x->next = f->done;
	f->done = x;
	free(x->guard);
	x->guard = NULL;
}

static void fail(struct agent_fetcher *f, struct agent_xfer *x, int error, const char *what)
{
	snprintf(x->errmsg, sizeof(x->errmsg), "%s", what);
	finish(f, x, error);
}

/* A transfer ended: done, failed, or scheduled for a retry. */
static void ended(struct agent_fetcher *f, struct agent_xfer *x, CURLcode rc)
{
	CURL *e = x->easy;
	long status = 0;
	char msg[160] = "";
	bool retry = false;
	int r;

	for (struct agent_xfer **pp = &f->active; *pp; pp = &(*pp)->next)
		if (*pp == x) {
			*pp = x->next;
			break;
		}
	x->next = NULL;
	curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &status);
	r = x->overflow ? -EPROTO : classify(e, rc, &retry, msg, sizeof(msg));
	curl_multi_remove_handle(f->multi, e);
	curl_easy_cleanup(e);
	x->easy = NULL;
	if (x->guard->refused) {
		/* never retried: the repository said where to go, and it is not allowed */
		snprintf(x->errmsg, sizeof(x->errmsg), "%.500s (after %u request%s)", x->guard->msg,
		         x->tries, x->tries == 1 ? "" : "s");
		finish(f, x, x->guard->refused);
		return;
	}
	if (x->overflow) {
		fail(f, x, -EPROTO,
		     status == 200 ? "server ignored Range (200), sent the whole file"
		                   : "server sent more than the requested range");
		return;
	}
	if (r == 0 && status != 206 && !(status == 200 && x->offset == 0 && x->got == x->length)) {
		snprintf(msg, sizeof(msg), "HTTP %ld to a range request", status);
		r = -EPROTO;
		retry = false;
	}
	if (r == 0 && x->got != x->length) {
		snprintf(msg, sizeof(msg), "short response: %zu of %zu bytes", x->got, x->length);
		r = -EIO;
		retry = true;
	}
	if (r == 0) {
		finish(f, x, 0);
		return;
	}
	if (retry && x->tries <= f->opts.retries) {
		log_debug("fetch %s: %s, retry %u", x->url, msg, x->tries);
		x->not_before = rb_now_usec() + backoff_usec(x->tries);
		x->next = f->retry;
		f->retry = x;
		return;
	}
	snprintf(x->errmsg, sizeof(x->errmsg), "%s (after %u request%s)", msg, x->tries,
	         x->tries == 1 ? "" : "s");
	finish(f, x, r);
}

/* Starts the retries whose backoff has passed; returns the ms until the
 * next one (or -1 if none waits). */
static int run_retries(struct agent_fetcher *f)
{
	uint64_t now = rb_now_usec(), next = UINT64_MAX;
	struct agent_xfer **pp = &f->retry;

	while (*pp) {
		struct agent_xfer *x = *pp;

		if (x->not_before <= now) {
			*pp = x->next;
			x->next = NULL;
			if (start(f, x) < 0)
				fail(f, x, -ENOMEM, "out of memory");
			continue;
		}
		next = RB_MIN(next, x->not_before);
		pp = &x->next;
	}
	return next == UINT64_MAX ? -1 : (int)((next - now) / 1000 + 1);
}

/* Runs the transfers that can progress without waiting, and takes in the
 * ones that ended. */
static int perform(struct agent_fetcher *f)
{
	struct agent_xfer *x;
	CURLMsg *msg;
	int running, left;

	if (curl_multi_perform(f->multi, &running) != CURLM_OK)
		return -EIO;
	while ((msg = curl_multi_info_read(f->multi, &left))) {
		if (msg->msg != CURLMSG_DONE)
			continue;
		curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&x);
		ended(f, x, msg->data.result);
	}
	return 0;
}

int agent_fetcher_poll(struct agent_fetcher *f, int timeout_ms, struct agent_xfer **ret_done)
{
	struct agent_xfer *x;
	int wait;

	if (!f->done) {
		wait = run_retries(f);
		if (wait >= 0 && wait < timeout_ms)
			timeout_ms = wait;
		/* Transfers that end in this first perform must be taken in
		 * before waiting: with nothing left on the wire, the wait would
		 * last the whole timeout (it did: 250 ms per small range). */
		if (perform(f) < 0)
			return -EIO;
		if (!f->done) {
			if (curl_multi_poll(f->multi, NULL, 0, timeout_ms, NULL) != CURLM_OK)
				return -EIO;
			if (perform(f) < 0)
				return -EIO;
		}
	}
	x = f->done;
	if (x) {
		f->done = x->next;
		x->next = NULL;
		f->pending--;
		f->bytes += x->got;
	}
	*ret_done = x;
	return 0;
}

void agent_fetcher_wakeup(struct agent_fetcher *f)
{
	curl_multi_wakeup(f->multi);
}

unsigned agent_fetcher_pending(const struct agent_fetcher *f)
{
	return f->pending;
}

uint64_t agent_fetcher_in_flight(const struct agent_fetcher *f)
{
	const struct agent_xfer *lists[] = { f->active, f->retry, f->done };
	uint64_t got = 0;

	for (size_t k = 0; k < RB_ARRAY_SIZE(lists); k++)
		for (const struct agent_xfer *x = lists[k]; x; x = x->next)
			got += x->got;
	return got;
}

void agent_fetcher_stats(const struct agent_fetcher *f, unsigned *ret_requests, uint64_t *ret_bytes)
{
	*ret_requests = f->requests;
	*ret_bytes = f->bytes;
}
