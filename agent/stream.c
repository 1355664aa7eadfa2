/* stream: one repository file (a plain image or a rootfs tarball) fetched
 * with libcurl by a background thread while the caller decompresses it.
 *
 * The producer thread runs curl_easy_perform(); its write callback hashes
 * every byte of the body (SHA-256 of the file as stored, which is what the
 * signed catalogue lists) and copies it into AGENT_STREAM_BUF buffers on a
 * queue of at most AGENT_STREAM_DEPTH, waiting while the queue is full, so
 * memory stays bounded (about 4.5 MiB) whatever the file size and however
 * slow the consumer. The consumer takes buffers in order with
 * agent_stream_read() (shaped for a libarchive read callback).
 *
 * Every request: http and https only, also after a redirect (at most 5);
 * to the hosts of opts.hosts only, on every hop (agent/hosts.c: a refused
 * hop ends the transfer before its body, never retried);
 * a connect timeout and a low-speed abort (below AGENT_FETCH_LOW_SPEED
 * bytes/s for timeout_s); HTTP errors fail the request. A transient failure
 * (network error, 5xx, 408, 429, a connection cut in the body) is retried
 * with backoff, resuming at the first byte not yet received with a Range
 * request: a 206 must start exactly there (Content-Range is checked), a
 * 200 (the server ignores Range) is read from the start and the bytes
 * already hashed are skipped. At most opts.retries failures in a row; an
 * attempt that moved at least 1 MiB starts the count again, so the number
 * of requests is bounded by the file size.
 *
 * The size is checked as early as the server lets it: Content-Length (200)
 * or the Content-Range total (206) must be the catalogue's size, and more
 * body bytes than that stop the transfer at once. A hash mismatch is only
 * known at the end: the consumer must not treat bytes as verified before
 * agent_stream_finish() returned 0.
 *
 * Owns the curl handle, the thread and the buffers. Never writes anywhere
 * but its own buffers, never follows a non-http(s) URL, never retries a
 * size or range mismatch (the file is wrong, not the network). */
#include "agent/stream.h"

#include <curl/curl.h>
#include <errno.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "agent/fetch.h"
#include "common/log.h"
#include "common/sha256.h"
#include "common/util.h"

#define PROGRESS_RESET (1024ULL * 1024) /* an attempt moving this much resets the count */
#define MAX_REDIRS     5L

struct sbuf {
	struct sbuf *next;
	size_t len;
	uint8_t data[AGENT_STREAM_BUF];
};

struct agent_stream {
	struct agent_stream_opts o;
	char *url;
	CURL *easy;
	EVP_MD_CTX *md;
	pthread_t th;
	bool started;

	pthread_mutex_t lock;
	pthread_cond_t cond; /* queue changed, stop or end */
	struct sbuf *qhead, *qtail, *pool;
	unsigned qlen;
	struct sbuf *fill; /* producer's, not yet queued */
	struct sbuf *cur;  /* consumer's, handed out by the last read */
	bool stop;         /* consumer: give up */
	bool ended;        /* producer: no more buffers will come */
	int error;         /* producer: the transfer failed (-errno) */
	bool hash_ok;
	char got_hex[RB_SHA256_HEX_LEN + 1];
	char msg[1024];

	uint64_t received; /* body bytes of the file accepted so far (atomic) */
	unsigned requests; /* atomic */

	/* the attempt in progress (producer thread only) */
	uint64_t from;    /* Range start asked for, 0 = whole file */
	uint64_t skip;    /* body bytes still to drop (server ignored Range) */
	bool first_write; /* the next write callback is the response's first */
	int fatal;        /* a mismatch found in a callback: no retry */
	char crange[128]; /* Content-Range of the last response */
	struct agent_hop_guard guard;
};

static void set_fatal(struct agent_stream *s, int e, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));
static void set_fatal(struct agent_stream *s, int e, const char *fmt, ...)
{
	va_list ap;

	if (s->fatal)
		return;
	s->fatal = e;
	va_start(ap, fmt);
	vsnprintf(s->msg, sizeof(s->msg), fmt, ap);
	va_end(ap);
}

/* ---- Content-Range ---------------------------------------------------------- */

static int parse_u64(const char **p, uint64_t *ret)
{
	uint64_t v = 0;
	const char *q = *p;

	if (*q < '0' || *q > '9')
		return -EINVAL;
	for (; *q >= '0' && *q <= '9'; q++) {
		if (v > (UINT64_MAX - (uint64_t)(*q - '0')) / 10)
			return -EINVAL;
		v = v * 10 + (uint64_t)(*q - '0');
	}
	*p = q;
	*ret = v;
	return 0;
}

int agent_content_range_parse(const char *v, uint64_t *ret_start, uint64_t *ret_end,
                              uint64_t *ret_total)
{
	uint64_t a, b, t = UINT64_MAX;
	const char *p = v;

	while (*p == ' ' || *p == '\t')
		p++;
	if (strncasecmp(p, "bytes", 5) != 0)
		return -EINVAL;
	p += 5;
	while (*p == ' ')
		p++;
	if (parse_u64(&p, &a) < 0 || *p++ != '-' || parse_u64(&p, &b) < 0 || *p++ != '/')
		return -EINVAL;
	if (*p == '*')
		p++;
	else if (parse_u64(&p, &t) < 0)
		return -EINVAL;
	while (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n')
		p++;
	if (*p || b < a || (t != UINT64_MAX && b >= t))
		return -EINVAL;
	*ret_start = a;
	*ret_end = b;
	*ret_total = t;
	return 0;
}

/* ---- producer ------------------------------------------------------------------ */

static size_t on_header(char *p, size_t size, size_t n, void *ud)
{
	struct agent_stream *s = ud;
	size_t k = size * n;

	if (!agent_hop_guard_header(&s->guard, s->easy, p, k))
		return 0;
	if (k >= 5 && strncasecmp(p, "HTTP/", 5) == 0)
		s->crange[0] = '\0'; /* a new response (after a redirect) */
	else if (k > 14 && strncasecmp(p, "Content-Range:", 14) == 0)
		snprintf(s->crange, sizeof(s->crange), "%.*s", (int)RB_MIN(k - 14, (size_t)120),
		         p + 14);
	return k;
}

static int xferinfo(void *ud, curl_off_t dt, curl_off_t dn, curl_off_t ut, curl_off_t un)
{
	struct agent_stream *s = ud;
	bool stop;

	pthread_mutex_lock(&s->lock);
	stop = s->stop;
	pthread_mutex_unlock(&s->lock);
	return stop ? 1 : 0;
}

/* The response's first body bytes: is it the file, from the right byte? */
static int check_response(struct agent_stream *s)
{
	curl_off_t cl = -1;
	long status = 0;

	curl_easy_getinfo(s->easy, CURLINFO_RESPONSE_CODE, &status);
	curl_easy_getinfo(s->easy, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &cl);
	if (status == 206 && s->from > 0) {
		uint64_t a, b, t;

		if (agent_content_range_parse(s->crange, &a, &b, &t) < 0 || a != s->from) {
			set_fatal(s, -EPROTO,
			          "%s: asked to resume at byte %llu, got Content-Range %s", s->url,
			          (unsigned long long)s->from, s->crange[0] ? s->crange : "(none)");
			return -1;
		}
		if (t != UINT64_MAX && t != s->o.size)
			goto size_mismatch;
		return 0;
	}
	if (status == 200) {
		s->skip = s->from; /* Range ignored: the whole file again */
		if (cl >= 0 && (uint64_t)cl != s->o.size)
			goto size_mismatch;
		return 0;
	}
	set_fatal(s, -EPROTO, "%s: unexpected HTTP status %ld", s->url, status);
	return -1;
size_mismatch:
	set_fatal(s, -EBADMSG,
	          "%s: the server's file has a different size than the signed catalogue's %llu "
	          "bytes: it was replaced or damaged; register it again",
	          s->url, (unsigned long long)s->o.size);
	return -1;
}

/* Queues the fill buffer; waits while the queue is full. -1 on stop. */
static int push_fill(struct agent_stream *s)
{
	int r = 0;

	pthread_mutex_lock(&s->lock);
	while (s->qlen >= AGENT_STREAM_DEPTH && !s->stop)
		pthread_cond_wait(&s->cond, &s->lock);
	if (s->stop) {
		r = -1;
	} else {
		s->fill->next = NULL;
		if (s->qtail)
			s->qtail->next = s->fill;
		else
			s->qhead = s->fill;
		s->qtail = s->fill;
		s->qlen++;
		s->fill = NULL;
		pthread_cond_broadcast(&s->cond);
	}
	pthread_mutex_unlock(&s->lock);
	return r;
}

static struct sbuf *get_buf(struct agent_stream *s)
{
	struct sbuf *b;

	pthread_mutex_lock(&s->lock);
	b = s->pool;
	if (b)
		s->pool = b->next;
	pthread_mutex_unlock(&s->lock);
	if (!b)
		b = malloc(sizeof(*b));
	if (b) {
		b->next = NULL;
		b->len = 0;
	}
	return b;
}

static size_t on_data(char *p, size_t size, size_t n, void *ud)
{
	struct agent_stream *s = ud;
	size_t k = size * n, all = k;
	uint64_t got = __atomic_load_n(&s->received, __ATOMIC_RELAXED);

	if (s->first_write) {
		s->first_write = false;
		if (check_response(s) < 0)
			return 0;
	}
	if (s->skip) {
		size_t d = (size_t)RB_MIN((uint64_t)k, s->skip);

		p += d;
		k -= d;
		s->skip -= d;
	}
	if (k > s->o.size - got) {
		set_fatal(s, -EBADMSG,
		          "%s: more bytes than the signed catalogue's %llu: the file was replaced "
		          "or damaged; register it again",
		          s->url, (unsigned long long)s->o.size);
		return 0;
	}
	EVP_DigestUpdate(s->md, p, k);
	while (k > 0) {
		size_t c;

		if (!s->fill && !(s->fill = get_buf(s))) {
			set_fatal(s, -ENOMEM, "%s: out of memory", s->url);
			return 0;
		}
		c = RB_MIN(k, AGENT_STREAM_BUF - s->fill->len);
		memcpy(s->fill->data + s->fill->len, p, c);
		s->fill->len += c;
		p += c;
		k -= c;
		got += c;
		__atomic_store_n(&s->received, got, __ATOMIC_RELAXED);
		if (s->fill->len == AGENT_STREAM_BUF && push_fill(s) < 0)
			return 0;
	}
	return all;
}

static void setup_attempt(struct agent_stream *s)
{
	const struct agent_stream_opts *o = &s->o;
	char range[48];
	CURL *e = s->easy;

	curl_easy_reset(e);
	curl_easy_setopt(e, CURLOPT_URL, s->url);
	curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(e, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 1L);
	curl_easy_setopt(e, CURLOPT_MAXREDIRS, MAX_REDIRS);
	curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT, (long)o->timeout_s);
	curl_easy_setopt(e, CURLOPT_LOW_SPEED_LIMIT, (long)AGENT_FETCH_LOW_SPEED);
	curl_easy_setopt(e, CURLOPT_LOW_SPEED_TIME, (long)o->timeout_s);
	curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(e, CURLOPT_FAILONERROR, 1L);
	curl_easy_setopt(e, CURLOPT_USERAGENT, "rackboot-agent/1");
	curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
	/* identity: the file's hash is of its stored bytes */
	curl_easy_setopt(e, CURLOPT_ACCEPT_ENCODING, NULL);
	curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(e, CURLOPT_HEADERDATA, s);
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_data);
	curl_easy_setopt(e, CURLOPT_WRITEDATA, s);
	curl_easy_setopt(e, CURLOPT_XFERINFOFUNCTION, xferinfo);
	curl_easy_setopt(e, CURLOPT_XFERINFODATA, s);
	curl_easy_setopt(e, CURLOPT_NOPROGRESS, 0L);
	agent_hop_guard_reset(&s->guard, o->hosts, s->url);
	agent_hop_guard_install(&s->guard, e, false);
	s->from = __atomic_load_n(&s->received, __ATOMIC_RELAXED);
	s->skip = 0;
	s->first_write = true;
	s->crange[0] = '\0';
	if (s->from > 0) {
		/* CURLOPT_RANGE rather than RESUME_FROM: curl fails a 200 answer
		 * to RESUME_FROM, and a server without Range support is fine. */
		snprintf(range, sizeof(range), "%llu-", (unsigned long long)s->from);
		curl_easy_setopt(e, CURLOPT_RANGE, range);
	}
}

/* 0 done, 1 retry, -errno give up (message set). */
static int classify(struct agent_stream *s, CURLcode rc)
{
	uint64_t got = __atomic_load_n(&s->received, __ATOMIC_RELAXED);
	long status = 0;

	if (s->guard.refused) {
		set_fatal(s, s->guard.refused, "%s: %s", s->url, s->guard.msg);
		return s->fatal;
	}
	if (s->fatal)
		return s->fatal;
	curl_easy_getinfo(s->easy, CURLINFO_RESPONSE_CODE, &status);
	switch (rc) {
	case CURLE_OK:
		if (got == s->o.size)
			return 0;
		set_fatal(s, -EBADMSG,
		          "%s: the file ended after %llu bytes, the signed catalogue says %llu: it "
		          "was replaced or damaged; register it again",
		          s->url, (unsigned long long)got, (unsigned long long)s->o.size);
		return s->fatal;
	case CURLE_HTTP_RETURNED_ERROR:
		if (status == 416 && s->from > 0) {
			set_fatal(s, -EBADMSG,
			          "%s: the file is shorter than the signed catalogue's %llu bytes: "
			          "it "
			          "was replaced or damaged; register it again",
			          s->url, (unsigned long long)s->o.size);
			return s->fatal;
		}
		snprintf(s->msg, sizeof(s->msg), "%s: HTTP %ld", s->url, status);
		if (status >= 500 || status == 408 || status == 429)
			return 1;
		return status == 404 || status == 410 ? -ENOENT : -EPROTO;
	case CURLE_UNSUPPORTED_PROTOCOL:
	case CURLE_TOO_MANY_REDIRECTS:
		snprintf(s->msg, sizeof(s->msg), "%s: %s (only http/https are allowed)", s->url,
		         curl_easy_strerror(rc));
		return -EPROTO;
	case CURLE_ABORTED_BY_CALLBACK:
	case CURLE_WRITE_ERROR:
		snprintf(s->msg, sizeof(s->msg), "%s: stopped", s->url);
		return -ECANCELED;
	case CURLE_COULDNT_RESOLVE_HOST:
	case CURLE_COULDNT_CONNECT:
	case CURLE_OPERATION_TIMEDOUT:
	case CURLE_PARTIAL_FILE:
	case CURLE_RECV_ERROR:
	case CURLE_SEND_ERROR:
	case CURLE_GOT_NOTHING:
	case CURLE_SSL_CONNECT_ERROR:
		snprintf(s->msg, sizeof(s->msg), "%s: %s after %llu of %llu bytes", s->url,
		         curl_easy_strerror(rc), (unsigned long long)got,
		         (unsigned long long)s->o.size);
		return 1;
	default:
		snprintf(s->msg, sizeof(s->msg), "%s: %s", s->url, curl_easy_strerror(rc));
		return -EIO;
	}
}

/* Sleeps before a retry; false if the consumer stopped meanwhile. */
static bool backoff(struct agent_stream *s, unsigned fails)
{
	uint64_t us = 250000ULL << RB_MIN(fails - 1, 4U); /* 0.25 s .. 4 s */
	struct timespec ts;
	bool stop;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	ts.tv_sec += (time_t)(us / 1000000);
	ts.tv_nsec += (long)(us % 1000000) * 1000;
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&s->lock);
	while (!s->stop && pthread_cond_timedwait(&s->cond, &s->lock, &ts) != ETIMEDOUT)
		;
	stop = s->stop;
	pthread_mutex_unlock(&s->lock);
	return !stop;
}

static void *producer_main(void *arg)
{
	struct agent_stream *s = arg;
	unsigned fails = 0;
	int r;

	for (;;) {
		uint64_t before = __atomic_load_n(&s->received, __ATOMIC_RELAXED);
		CURLcode rc;

		setup_attempt(s);
		rc = curl_easy_perform(s->easy);
		__atomic_add_fetch(&s->requests, 1, __ATOMIC_RELAXED);
		r = classify(s, rc);
		if (r <= 0)
			break;
		if (__atomic_load_n(&s->received, __ATOMIC_RELAXED) - before >= PROGRESS_RESET)
			fails = 0;
		if (++fails > s->o.retries)
			break;
		log_debug("stream %s: %s, retry %u", s->url, s->msg, fails);
		if (!backoff(s, fails)) {
			r = -ECANCELED;
			break;
		}
	}
	if (r == 0) {
		uint8_t sum[RB_SHA256_LEN];

		EVP_DigestFinal_ex(s->md, sum, NULL);
		rb_hex(sum, sizeof(sum), s->got_hex);
		s->hash_ok = memcmp(sum, s->o.sha256, sizeof(sum)) == 0;
		if (s->fill && s->fill->len > 0 && push_fill(s) < 0)
			r = -ECANCELED;
	} else if (r > 0) {
		r = -EIO; /* retries used up: s->msg names the last failure */
	}
	pthread_mutex_lock(&s->lock);
	s->error = r;
	s->ended = true;
	pthread_cond_broadcast(&s->cond);
	pthread_mutex_unlock(&s->lock);
	return NULL;
}

/* ---- consumer -------------------------------------------------------------------- */

int agent_stream_new(const struct agent_stream_opts *o, struct agent_stream **ret)
{
	struct agent_stream *s = calloc(1, sizeof(*s));
	pthread_condattr_t ca;

	if (!s)
		return -ENOMEM;
	s->o = *o;
	if (!s->o.timeout_s)
		s->o.timeout_s = 30;
	pthread_mutex_init(&s->lock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&s->cond, &ca);
	pthread_condattr_destroy(&ca);
	s->url = strdup(o->url);
	s->easy = curl_easy_init();
	s->md = EVP_MD_CTX_new();
	if (!s->url || !s->easy || !s->md || EVP_DigestInit_ex(s->md, EVP_sha256(), NULL) != 1) {
		agent_stream_free(s);
		return -ENOMEM;
	}
	s->o.url = s->url;
	if (pthread_create(&s->th, NULL, producer_main, s) != 0) {
		agent_stream_free(s);
		return -EAGAIN;
	}
	s->started = true;
	*ret = s;
	return 0;
}

static void free_list(struct sbuf *b)
{
	while (b) {
		struct sbuf *n = b->next;

		free(b);
		b = n;
	}
}

void agent_stream_free(struct agent_stream *s)
{
	if (!s)
		return;
	if (s->started) {
		pthread_mutex_lock(&s->lock);
		s->stop = true;
		pthread_cond_broadcast(&s->cond);
		pthread_mutex_unlock(&s->lock);
		pthread_join(s->th, NULL);
	}
	free_list(s->qhead);
	free_list(s->pool);
	free(s->fill);
	free(s->cur);
	if (s->easy)
		curl_easy_cleanup(s->easy);
	EVP_MD_CTX_free(s->md);
	free(s->url);
	pthread_mutex_destroy(&s->lock);
	pthread_cond_destroy(&s->cond);
	free(s);
}

ssize_t agent_stream_read(struct agent_stream *s, const void **ret_buf)
{
	ssize_t r;

	pthread_mutex_lock(&s->lock);
	if (s->cur) {
		s->cur->next = s->pool;
		s->pool = s->cur;
		s->cur = NULL;
	}
	while (!s->qhead && !s->ended)
		pthread_cond_wait(&s->cond, &s->lock);
	if (s->ended && s->error < 0) {
		r = s->error;
	} else if (s->qhead) {
		s->cur = s->qhead;
		s->qhead = s->cur->next;
		if (!s->qhead)
			s->qtail = NULL;
		s->qlen--;
		pthread_cond_broadcast(&s->cond);
		*ret_buf = s->cur->data;
		r = (ssize_t)s->cur->len;
	} else {
		r = 0;
	}
	pthread_mutex_unlock(&s->lock);
	return r;
}

int agent_stream_finish(struct agent_stream *s, char *err, size_t errlen)
{
	const void *p;
	ssize_t n;

	while ((n = agent_stream_read(s, &p)) > 0)
		;
	if (s->started) {
		pthread_join(s->th, NULL);
		s->started = false;
	}
	if (s->error < 0) {
		snprintf(err, errlen, "%s", s->msg);
		return s->error;
	}
	if (!s->hash_ok) {
		char want[RB_SHA256_HEX_LEN + 1];

		rb_hex(s->o.sha256, sizeof(s->o.sha256), want);
		snprintf(err, errlen,
		         "%s: sha256 mismatch: the signed catalogue says %s, the file is %s: it "
		         "was replaced or damaged; register it again",
		         s->url, want, s->got_hex);
		return -EBADMSG;
	}
	return 0;
}

uint64_t agent_stream_received(struct agent_stream *s)
{
	return __atomic_load_n(&s->received, __ATOMIC_RELAXED);
}

unsigned agent_stream_requests(struct agent_stream *s)
{
	return __atomic_load_n(&s->requests, __ATOMIC_RELAXED);
}
