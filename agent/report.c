/* report: the agent's side of the rackbootd API (the stage-1 contract).
 *
 * Every request carries "Authorization: Bearer <token>" (the token is
 * never logged), is http/https only (CURLOPT_PROTOCOLS_STR), follows no
 * redirect (a redirect would carry the token elsewhere; it is an error),
 * has a connect timeout, a stall abort and an overall time limit, and
 * reads at most REPLY_MAX bytes of reply. Transient failures (network
 * errors, 5xx, 408, 429) are retried a bounded number of times with
 * exponential backoff; other answers fail at once with the server's
 * {"error": ...} message, escaped.
 *
 * The progress reporter is a thread with its own connection, so that a
 * slow status endpoint never slows the disk write; a lost report is only
 * logged at debug level (the next follows a second later).
 *
 * Owns its curl handles and the reporter thread. Never touches a disk. */
#include "agent/report.h"

#include <curl/curl.h>
#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "common/log.h"
#include "common/util.h"

#define REPLY_MAX (1024U * 1024)
#define MSG_MAX   1000 /* characters of a status message */
#define STEP_MAX  256  /* characters of a status step */

struct reply {
	char *data;
	size_t len, cap;
	bool toobig;
};

static size_t reply_write(char *p, size_t size, size_t n, void *ud)
{
	struct reply *b = ud;
	size_t k = size * n;

	if (k > REPLY_MAX - b->len) {
		b->toobig = true;
		return 0;
	}
	if (b->len + k + 1 > b->cap) {
		size_t cap = RB_MIN(RB_MAX(b->cap * 2, b->len + k + 1), (size_t)REPLY_MAX + 1);
		char *d = realloc(b->data, cap);

		if (!d)
			return 0;
		b->data = d;
		b->cap = cap;
	}
	memcpy(b->data + b->len, p, k);
	b->len += k;
	b->data[b->len] = '\0';
	return k;
}

int agent_api_init(struct agent_api *a, const char *server, const char *mac, const char *token,
                   unsigned timeout_s)
{
	char auth[32 + AGENT_TOKEN_MAX];
	struct curl_slist *h;

	memset(a, 0, sizeof(*a));
	a->timeout_s = timeout_s;
	snprintf(a->base, sizeof(a->base), "%s/api/v1/nodes/%s", server, mac);
	snprintf(auth, sizeof(auth), "Authorization: Bearer %s", token);
	h = curl_slist_append(NULL, auth);
	if (h)
		a->hdrs = h;
	if (h)
		h = curl_slist_append(a->hdrs, "Accept: application/json");
	if (h)
		h = curl_slist_append(a->hdrs, "Content-Type: application/json");
	explicit_bzero(auth, sizeof(auth));
	a->easy = h ? curl_easy_init() : NULL;
	return a->easy ? 0 : -ENOMEM;
}

void agent_api_fini(struct agent_api *a)
{
	if (a->easy)
		curl_easy_cleanup(a->easy);
	curl_slist_free_all(a->hdrs);
	a->easy = NULL;
	a->hdrs = NULL;
}

static void sleep_usec(uint64_t us)
{
	struct timespec ts = { .tv_sec = (time_t)(us / 1000000),
		               .tv_nsec = (long)(us % 1000000) * 1000 };

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

/* The server's {"error": "..."} as a printable, bounded string. */
static void server_error(const struct reply *b, char *out, size_t outlen)
{
	json_t *j = b->data ? json_loadb(b->data, b->len, 0, NULL) : NULL;
	const char *s = j ? json_string_value(json_object_get(j, "error")) : NULL;

	if (s)
		rb_escape(out, outlen, s, strlen(s));
	else if (b->data && b->len)
		rb_escape(out, outlen, b->data, RB_MIN(b->len, (size_t)120));
	else
		snprintf(out, outlen, "(no body)");
	json_decref(j);
}

static bool curl_transient(CURLcode rc)
{
	switch (rc) {
	case CURLE_COULDNT_RESOLVE_HOST:
	case CURLE_COULDNT_CONNECT:
	case CURLE_OPERATION_TIMEDOUT:
	case CURLE_PARTIAL_FILE:
	case CURLE_RECV_ERROR:
	case CURLE_SEND_ERROR:
	case CURLE_GOT_NOTHING:
	case CURLE_SSL_CONNECT_ERROR:
		return true;
	default:
		return false;
	}
}

static int status_errno(long st)
{
	switch (st) {
	case 403:
		return -EACCES;
	case 404:
		return -ENOENT;
	case 409:
		return -EAGAIN;
	case 413:
		return -EFBIG;
	default:
		return -EPROTO;
	}
}

static int oom_err(char *err, size_t errlen)
{
	snprintf(err, errlen, "out of memory");
	return -ENOMEM;
}

/* The ETag of a reply, for a conditional GET. */
struct cond {
	const char *etag;      /* sent as If-None-Match, "" = none */
	char got[64];          /* the reply's ETag, "" = none */
	bool not_modified;     /* a 304 */
	struct curl_slist *hd; /* a->hdrs plus If-None-Match */
};

static size_t header_cb(char *buf, size_t size, size_t n, void *ud)
{
	struct cond *c = ud;
	size_t len = size * n, k;

	if (len > 5 && !strncasecmp(buf, "ETag:", 5)) {
		const char *v = buf + 5;

		while (v < buf + len && (*v == ' ' || *v == '\t'))
			v++;
		k = (size_t)(buf + len - v);
		while (k > 0 && (v[k - 1] == '\r' || v[k - 1] == '\n' || v[k - 1] == ' '))
			k--;
		if (k < sizeof(c->got)) {
			memcpy(c->got, v, k);
			c->got[k] = '\0';
			for (size_t i = 0; i < k; i++) /* printable, or none at all */
				if ((unsigned char)c->got[i] < 0x21 ||
				    (unsigned char)c->got[i] > 0x7e)
					c->got[0] = '\0';
		}
	}
	return len;
}

static int api_do(struct agent_api *a, const char *path, const char *body, struct cond *cond,
                  unsigned retries, char **ret, size_t *ret_len, char *err, size_t errlen);

int agent_api_call(struct agent_api *a, const char *path, const char *body, unsigned retries,
                   char **ret, size_t *ret_len, char *err, size_t errlen)
{
	return api_do(a, path, body, NULL, retries, ret, ret_len, err, errlen);
}

int agent_api_get_cond(struct agent_api *a, const char *path, const char *etag, unsigned retries,
                       bool *ret_not_modified, char ret_etag[64], char **ret, size_t *ret_len,
                       char *err, size_t errlen)
{
	struct cond c = { .etag = etag ? etag : "" };
	char hdr[100];
	int r;

	for (struct curl_slist *h = a->hdrs; h; h = h->next) {
		struct curl_slist *n = curl_slist_append(c.hd, h->data);

		if (!n) {
			curl_slist_free_all(c.hd);
			return oom_err(err, errlen);
		}
		c.hd = n;
	}
	if (c.etag[0]) {
		struct curl_slist *n;

		snprintf(hdr, sizeof(hdr), "If-None-Match: %.80s", c.etag);
		n = curl_slist_append(c.hd, hdr);
		if (!n) {
			curl_slist_free_all(c.hd);
			return oom_err(err, errlen);
		}
		c.hd = n;
	}
	*ret = NULL;
	*ret_len = 0;
	r = api_do(a, path, NULL, &c, retries, ret, ret_len, err, errlen);
	curl_slist_free_all(c.hd);
	if (r < 0)
		return r;
	*ret_not_modified = c.not_modified;
	memcpy(ret_etag, c.got, sizeof(c.got));
	if (c.not_modified) { /* no body */
		free(*ret);
		*ret = NULL;
		*ret_len = 0;
	}
	return 0;
}

/* One API request (body NULL: GET), retried up to retries times on
 * transient failures. 0 on a 2xx (or a 304 to a conditional GET) with the
 * body in *ret (if ret is not NULL; NUL-terminated, caller frees); else
 * -errno and a reason in err. */
static int api_do(struct agent_api *a, const char *path, const char *body, struct cond *cond,
                  unsigned retries, char **ret, size_t *ret_len, char *err, size_t errlen)
{
	const char *method = body ? "POST" : "GET";
	char url[sizeof(a->base) + 32], msg[256];
	struct reply b = { 0 };
	int r = -EIO;

	snprintf(url, sizeof(url), "%s%s", a->base, path);
	for (unsigned t = 0; t <= retries; t++) {
		long st = 0;
		CURLcode rc;

		if (t > 0)
			sleep_usec(RB_MIN(250000ULL << RB_MIN(t, 6U), 8000000ULL));
		b.len = 0;
		b.toobig = false;
		curl_easy_reset(a->easy);
		curl_easy_setopt(a->easy, CURLOPT_URL, url);
		curl_easy_setopt(a->easy, CURLOPT_PROTOCOLS_STR, "http,https");
		curl_easy_setopt(a->easy, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
		curl_easy_setopt(a->easy, CURLOPT_FOLLOWLOCATION, 0L);
		curl_easy_setopt(a->easy, CURLOPT_CONNECTTIMEOUT, (long)a->timeout_s);
		curl_easy_setopt(a->easy, CURLOPT_LOW_SPEED_LIMIT, 1L);
		curl_easy_setopt(a->easy, CURLOPT_LOW_SPEED_TIME, (long)a->timeout_s);
		curl_easy_setopt(a->easy, CURLOPT_TIMEOUT, (long)a->timeout_s * 3);
		curl_easy_setopt(a->easy, CURLOPT_NOSIGNAL, 1L);
		curl_easy_setopt(a->easy, CURLOPT_USERAGENT, "rackboot-agent/1");
		curl_easy_setopt(a->easy, CURLOPT_HTTPHEADER, cond ? cond->hd : a->hdrs);
		if (cond) {
			cond->got[0] = '\0';
			curl_easy_setopt(a->easy, CURLOPT_HEADERFUNCTION, header_cb);
			curl_easy_setopt(a->easy, CURLOPT_HEADERDATA, cond);
		}
		curl_easy_setopt(a->easy, CURLOPT_WRITEFUNCTION, reply_write);
		curl_easy_setopt(a->easy, CURLOPT_WRITEDATA, &b);
		if (body) {
			curl_easy_setopt(a->easy, CURLOPT_POSTFIELDS, body);
			curl_easy_setopt(a->easy, CURLOPT_POSTFIELDSIZE_LARGE,
			                 (curl_off_t)strlen(body));
		} else {
			curl_easy_setopt(a->easy, CURLOPT_HTTPGET, 1L);
		}
		rc = curl_easy_perform(a->easy);
		if (b.toobig) {
			rb_errf(err, errlen, "%s %s: reply larger than %u bytes", method, url,
			        REPLY_MAX);
			r = -EFBIG;
			goto out;
		}
		if (rc != CURLE_OK) {
			snprintf(msg, sizeof(msg), "%s", curl_easy_strerror(rc));
			r = -EIO;
			log_debug("%s %s: %s (attempt %u)", method, url, msg, t + 1);
			if (curl_transient(rc))
				continue;
			break;
		}
		curl_easy_getinfo(a->easy, CURLINFO_RESPONSE_CODE, &st);
		if (st >= 200 && st < 300) {
			r = 0;
			break;
		}
		if (st == 304 && cond && cond->etag[0]) {
			cond->not_modified = true;
			r = 0;
			break;
		}
		if (st >= 300 && st < 400) {
			snprintf(msg, sizeof(msg), "HTTP %ld: redirects are not followed", st);
			r = -EPROTO;
			break;
		}
		{
			char se[200];

			server_error(&b, se, sizeof(se));
			snprintf(msg, sizeof(msg), "HTTP %ld: %s", st, se);
		}
		r = status_errno(st);
		log_debug("%s %s: %s (attempt %u)", method, url, msg, t + 1);
		if (!(st >= 500 || st == 408 || st == 429))
			break;
	}
	if (r < 0) {
		rb_errf(err, errlen, "%s %s: %s", method, url, msg);
		goto out;
	}
	if (ret) {
		if (!b.data && !(b.data = calloc(1, 1))) {
			r = -ENOMEM;
			snprintf(err, errlen, "out of memory");
			goto out;
		}
		*ret = b.data;
		*ret_len = b.len;
		b.data = NULL;
	}
out:
	free(b.data);
	return r;
}

/* A status message: one line of printable ASCII, at most MSG_MAX. */
static void one_line(const char *in, char *out, size_t outlen)
{
	size_t n = 0;

	for (; *in && n + 1 < outlen && n < MSG_MAX; in++)
		out[n++] = (*in == '\n' || *in == '\r' || *in == '\t')                ? ' '
		           : ((unsigned char)*in < 0x20 || (unsigned char)*in > 0x7e) ? '?'
		                                                                      : *in;
	out[n] = '\0';
}

int agent_post_status(struct agent_api *a, const char *state, const char *step, const char *message,
                      const struct agent_progress *p, unsigned retries, char *err, size_t errlen)
{
	return agent_post_status_ex(a, state, step, message, p, NULL, retries, err, errlen);
}

int agent_post_status_ex(struct agent_api *a, const char *state, const char *step,
                         const char *message, const struct agent_progress *p, json_t *extra,
                         unsigned retries, char *err, size_t errlen)
{
	char line[MSG_MAX + 1];
	json_t *o = json_object();
	char *body = NULL;
	int r = -ENOMEM;

	if (!o || json_object_set_new(o, "state", json_string(state)) < 0)
		goto out;
	if (step) {
		one_line(step, line, STEP_MAX + 1);
		if (json_object_set_new(o, "step", json_string(line)) < 0)
			goto out;
	}
	if (message) {
		one_line(message, line, sizeof(line));
		if (json_object_set_new(o, "message", json_string(line)) < 0)
			goto out;
	}
	if (p && p->set &&
	    (json_object_set_new(o, "bytes_done", json_integer((json_int_t)p->done)) < 0 ||
	     json_object_set_new(o, "bytes_total", json_integer((json_int_t)p->total)) < 0 ||
	     json_object_set_new(o, "rate", json_integer((json_int_t)p->rate)) < 0))
		goto out;
	if (extra && json_object_update(o, extra) < 0)
		goto out;
	body = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_ENSURE_ASCII);
	if (!body)
		goto out;
	r = agent_api_call(a, "/status", body, retries, NULL, NULL, err, errlen);
out:
	if (r == -ENOMEM)
		snprintf(err, errlen, "status %s: out of memory", state);
	free(body);
	json_decref(o);
	return r;
}

/* ---- the progress reporter ------------------------------------------------------- */

void agent_reporter_update(void *arg, uint64_t done, uint64_t total)
{
	struct agent_reporter *rp = arg;

	pthread_mutex_lock(&rp->lock);
	rp->done = done;
	rp->total = total;
	pthread_mutex_unlock(&rp->lock);
}

static struct agent_progress reporter_snapshot(struct agent_reporter *rp)
{
	struct agent_progress p = { .set = true, .done = rp->done, .total = rp->total };
	uint64_t el = rb_now_usec() - rp->t0;

	p.rate = el ? (uint64_t)((double)p.done * 1e6 / (double)el) : 0;
	return p;
}

static void *reporter_main(void *arg)
{
	struct agent_reporter *rp = arg;

	pthread_mutex_lock(&rp->lock);
	for (;;) {
		struct timespec ts;
		struct agent_progress p;
		char err[256];

		clock_gettime(CLOCK_MONOTONIC, &ts);
		ts.tv_sec += 1;
		while (!rp->stop && pthread_cond_timedwait(&rp->cond, &rp->lock, &ts) != ETIMEDOUT)
			;
		if (rp->stop)
			break;
		/* Every second, also when nothing moved: updated_ms on the
		 * server shows that the agent is alive. */
		p = reporter_snapshot(rp);
		pthread_mutex_unlock(&rp->lock);
		if (agent_post_status(&rp->api, rp->state, rp->step, NULL, &p, 0, err,
		                      sizeof(err)) < 0) {
			log_debug("progress report lost: %s", err);
			rp->lost++;
		} else {
			rp->posts++;
		}
		pthread_mutex_lock(&rp->lock);
	}
	pthread_mutex_unlock(&rp->lock);
	return NULL;
}

int agent_reporter_start(struct agent_reporter *rp, const struct agent_cmdline *c,
                         unsigned timeout_s, const char *state, const char *step)
{
	pthread_condattr_t ca;

	memset(rp, 0, sizeof(*rp));
	rp->state = state;
	snprintf(rp->step, sizeof(rp->step), "%s", step);
	rp->t0 = rb_now_usec();
	if (agent_api_init(&rp->api, c->server, c->mac, c->token, RB_MIN(timeout_s, 5U)) < 0) {
		agent_api_fini(&rp->api);
		return -ENOMEM;
	}
	pthread_mutex_init(&rp->lock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&rp->cond, &ca);
	pthread_condattr_destroy(&ca);
	if (pthread_create(&rp->th, NULL, reporter_main, rp) != 0) {
		pthread_mutex_destroy(&rp->lock);
		pthread_cond_destroy(&rp->cond);
		agent_api_fini(&rp->api);
		return -EAGAIN;
	}
	rp->running = true;
	return 0;
}

/* Stops the thread; returns the last values seen. */
struct agent_progress agent_reporter_stop(struct agent_reporter *rp)
{
	struct agent_progress p = { 0 };

	if (!rp->running)
		return p;
	pthread_mutex_lock(&rp->lock);
	rp->stop = true;
	pthread_cond_signal(&rp->cond);
	pthread_mutex_unlock(&rp->lock);
	pthread_join(rp->th, NULL);
	p = reporter_snapshot(rp);
	pthread_mutex_destroy(&rp->lock);
	pthread_cond_destroy(&rp->cond);
	agent_api_fini(&rp->api);
	rp->running = false;
	return p;
}
