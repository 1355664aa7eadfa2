/* libcurl client of the operator API. Owns nothing between calls (an easy
 * handle per request). Answers are capped (CLIENT_BODY_MAX) and parsed
 * with jansson; the token goes only into the Authorization header, never
 * into a URL or a message. Never prints: the caller reports r->err. */
#include "cli/client.h"

#include <curl/curl.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli/sse.h"

struct buf {
	char *data;
	size_t len, cap;
	bool too_big;
};

static size_t on_body(char *ptr, size_t size, size_t nmemb, void *ud)
{
	struct buf *b = ud;
	size_t n = size * nmemb;

	if (b->len + n > CLIENT_BODY_MAX) {
		b->too_big = true;
		return 0;
	}
	if (b->len + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap * 2 : 16384;
		char *d;

		while (cap < b->len + n + 1)
			cap *= 2;
		d = realloc(b->data, cap);
		if (!d)
			return 0;
		b->data = d;
		b->cap = cap;
	}
	memcpy(b->data + b->len, ptr, n);
	b->len += n;
	b->data[b->len] = '\0';
	return n;
}

static struct curl_slist *headers(const struct client *c, bool json_body, const char *extra)
{
	struct curl_slist *h = NULL, *t;
	char auth[320];

	snprintf(auth, sizeof(auth), "Authorization: Bearer %s", c->token);
	h = curl_slist_append(h, auth);
	explicit_bzero(auth, sizeof(auth));
	if (h && json_body && (t = curl_slist_append(h, "Content-Type: application/json")))
		h = t;
	if (h && extra && (t = curl_slist_append(h, extra)))
		h = t;
	return h;
}

/* A curl failure as an exit code and a message that says what to do. */
static int transport_error(const struct client *c, CURLcode rc, const char *detail, char *err,
                           size_t errlen)
{
	if (rc == CURLE_PEER_FAILED_VERIFICATION || rc == CURLE_SSL_CONNECT_ERROR ||
	    rc == CURLE_SSL_CACERT_BADFILE || rc == CURLE_SSL_CERTPROBLEM) {
		snprintf(err, errlen,
		         "TLS with %s failed: %s (a private CA: pass --cacert FILE or set "
		         "RACKBOOT_CACERT)",
		         c->server, *detail ? detail : curl_easy_strerror(rc));
		return CLI_CONNECT;
	}
	snprintf(err, errlen,
	         "cannot reach rackbootd at %s: %s (is it running? pass --server URL or set "
	         "RACKBOOT_SERVER)",
	         c->server, *detail ? detail : curl_easy_strerror(rc));
	return CLI_CONNECT;
}

/* The class of an HTTP error status, with the server's message. */
static int status_error(long status, json_t *doc, char *err, size_t errlen)
{
	const char *msg = json_string_value(json_object_get(doc, "error"));

	snprintf(err, errlen, "%s%s(HTTP %ld)", msg ? msg : "", msg ? " " : "", status);
	if (status == 401 || status == 403)
		return CLI_AUTH;
	return CLI_REFUSED;
}

int client_request(const struct client *c, const char *method, const char *path, const char *body,
                   struct response *r)
{
	char url[1200], cerr[CURL_ERROR_SIZE] = "";
	struct buf b = { 0 };
	struct curl_slist *h;
	CURL *e;
	CURLcode rc;
	int ret;

	memset(r, 0, sizeof(*r));
	snprintf(url, sizeof(url), "%s%s", c->server, path);
	e = curl_easy_init();
	h = headers(c, body != NULL, NULL);
	if (!e || !h) {
		curl_easy_cleanup(e);
		curl_slist_free_all(h);
		snprintf(r->err, sizeof(r->err), "out of memory");
		return CLI_CONNECT;
	}
	curl_easy_setopt(e, CURLOPT_URL, url);
	curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, method);
	curl_easy_setopt(e, CURLOPT_HTTPHEADER, h);
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(e, CURLOPT_WRITEDATA, &b);
	curl_easy_setopt(e, CURLOPT_ERRORBUFFER, cerr);
	curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT, 5L);
	curl_easy_setopt(e, CURLOPT_TIMEOUT, c->timeout_s > 0 ? c->timeout_s : 30L);
	curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
	if (c->cacert)
		curl_easy_setopt(e, CURLOPT_CAINFO, c->cacert);
	if (!strcmp(method, "HEAD"))
		curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
	if (body) {
		curl_easy_setopt(e, CURLOPT_POSTFIELDS, body);
		curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
	}
	rc = curl_easy_perform(e);
	curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &r->status);
	if (rc != CURLE_OK) {
		ret = b.too_big ? (snprintf(r->err, sizeof(r->err),
		                            "the answer from %s is larger than %d bytes", c->server,
		                            CLIENT_BODY_MAX),
		                   CLI_CONNECT)
		                : transport_error(c, rc, cerr, r->err, sizeof(r->err));
		goto out;
	}
	r->doc = b.len ? json_loadb(b.data, b.len, 0, NULL) : NULL;
	if (r->status >= 300) {
		ret = status_error(r->status, r->doc, r->err, sizeof(r->err));
		json_decref(r->doc); /* only a success hands a document over */
		r->doc = NULL;
		goto out;
	}
	if (!r->doc) {
		snprintf(r->err, sizeof(r->err),
		         "%s answered HTTP %ld without JSON: is it rackbootd (check --server)?",
		         c->server, r->status);
		ret = CLI_CONNECT;
		goto out;
	}
	ret = CLI_OK;
out:
	free(b.data);
	curl_slist_free_all(h);
	curl_easy_cleanup(e);
	return ret;
}

/* ---- the event stream ------------------------------------------------------ */

struct stream {
	struct sse_parser sse;
	client_event_fn fn;
	client_tick_fn tick;
	void *ud;
	int64_t *last_id;
	int stopped;         /* the callback's value */
	struct buf err_body; /* a non-200 answer's body */
	long status;
	CURL *e;
	time_t last_tick;
};

static int on_sse(const struct sse_event *ev, void *ud)
{
	struct stream *s = ud;
	int r;

	if (ev->id) {
		char *end;
		long long v = strtoll(ev->id, &end, 10);

		if (*ev->id && !*end && v >= 0)
			*s->last_id = v;
	}
	r = s->fn(ev->type, ev->id, ev->data, s->ud);
	if (r)
		s->stopped = r;
	return r;
}

static size_t on_stream(char *ptr, size_t size, size_t nmemb, void *ud)
{
	struct stream *s = ud;
	size_t n = size * nmemb;

	if (!s->status)
		curl_easy_getinfo(s->e, CURLINFO_RESPONSE_CODE, &s->status);
	if (s->status != 200)
		return on_body(ptr, size, nmemb, &s->err_body);
	if (sse_feed(&s->sse, ptr, n) != 0)
		return 0; /* stopped, or a broken stream */
	return n;
}

static int on_progress(void *ud, curl_off_t dt, curl_off_t dn, curl_off_t ut, curl_off_t un)
{
	struct stream *s = ud;
	time_t now = time(NULL);

	if (s->tick && now != s->last_tick) {
		int r;

		s->last_tick = now;
		r = s->tick(s->ud);
		if (r) {
			s->stopped = r;
			return 1; /* curl aborts the transfer */
		}
	}
	return 0;
}

int client_stream(const struct client *c, const char *path, int64_t *last_id, client_event_fn fn,
                  client_tick_fn tick, void *ud, char *err, size_t errlen)
{
	struct stream s = { .fn = fn, .tick = tick, .ud = ud, .last_id = last_id };
	char url[1200], lei[64], cerr[CURL_ERROR_SIZE] = "";
	struct curl_slist *h;
	CURLcode rc;
	int ret;

	snprintf(url, sizeof(url), "%s%s", c->server, path);
	snprintf(lei, sizeof(lei), "Last-Event-ID: %lld", (long long)*last_id);
	sse_init(&s.sse, on_sse, &s);
	s.e = curl_easy_init();
	h = headers(c, false, *last_id >= 0 ? lei : NULL);
	if (!s.e || !h) {
		curl_easy_cleanup(s.e);
		curl_slist_free_all(h);
		snprintf(err, errlen, "out of memory");
		return CLI_CONNECT;
	}
	curl_easy_setopt(s.e, CURLOPT_URL, url);
	curl_easy_setopt(s.e, CURLOPT_HTTPHEADER, h);
	curl_easy_setopt(s.e, CURLOPT_WRITEFUNCTION, on_stream);
	curl_easy_setopt(s.e, CURLOPT_WRITEDATA, &s);
	curl_easy_setopt(s.e, CURLOPT_ERRORBUFFER, cerr);
	curl_easy_setopt(s.e, CURLOPT_CONNECTTIMEOUT, 5L);
	curl_easy_setopt(s.e, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(s.e, CURLOPT_PROTOCOLS_STR, "http,https");
	if (c->cacert)
		curl_easy_setopt(s.e, CURLOPT_CAINFO, c->cacert);
	/* The server sends a heartbeat at least every 15 s: 45 s of silence
	 * is a dead connection. */
	curl_easy_setopt(s.e, CURLOPT_LOW_SPEED_LIMIT, 1L);
	curl_easy_setopt(s.e, CURLOPT_LOW_SPEED_TIME, 45L);
	curl_easy_setopt(s.e, CURLOPT_NOPROGRESS, 0L);
	curl_easy_setopt(s.e, CURLOPT_XFERINFOFUNCTION, on_progress);
	curl_easy_setopt(s.e, CURLOPT_XFERINFODATA, &s);
	rc = curl_easy_perform(s.e);
	if (!s.status)
		curl_easy_getinfo(s.e, CURLINFO_RESPONSE_CODE, &s.status);
	if (s.stopped) {
		ret = CLI_OK;
	} else if (s.status >= 300) {
		json_t *doc = s.err_body.len ? json_loadb(s.err_body.data, s.err_body.len, 0, NULL)
		                             : NULL;

		ret = status_error(s.status, doc, err, errlen);
		json_decref(doc);
	} else if (rc == CURLE_OK || rc == CURLE_PARTIAL_FILE) {
		snprintf(err, errlen, "the server ended the event stream");
		ret = CLI_OK;
	} else if (rc == CURLE_WRITE_ERROR) {
		snprintf(err, errlen, "the event stream from %s is not valid (is it rackbootd?)",
		         c->server);
		ret = CLI_CONNECT;
	} else {
		ret = transport_error(c, rc, cerr, err, errlen);
	}
	sse_free(&s.sse);
	free(s.err_body.data);
	curl_slist_free_all(h);
	curl_easy_cleanup(s.e);
	return ret;
}
