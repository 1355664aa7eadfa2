/* The agent's side of the rackbootd API: authenticated JSON requests to
 * /api/v1/nodes/<mac>/..., status reports, and a thread that reports
 * progress about once a second. See agent/report.c. */
#pragma once
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "agent/plan.h"

struct curl_slist;

struct agent_api {
	char base[AGENT_URL_MAX + 64]; /* <server>/api/v1/nodes/<mac> */
	struct curl_slist *hdrs;
	void *easy; /* CURL * */
	unsigned timeout_s;
};

struct agent_progress {
	bool set;
	uint64_t done, total, rate;
};

struct agent_reporter {
	struct agent_api api; /* its own connection */
	const char *state;
	char step[256];
	pthread_t th;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool running, stop;
	uint64_t done, total, t0;
	unsigned posts, lost;
};

/* One connection to the node's API. 0 or -ENOMEM; agent_api_fini() in
 * both cases. */
int agent_api_init(struct agent_api *a, const char *server, const char *mac, const char *token,
                   unsigned timeout_s);
void agent_api_fini(struct agent_api *a);

/* One request to <server>/api/v1/nodes/<mac><path>: a GET when body is
 * NULL, else a POST of the JSON body. Network errors, 5xx, 408 and 429
 * are retried up to retries times with exponential backoff; redirects are
 * never followed. 0 on a 2xx with the reply in *ret (if ret is not NULL;
 * NUL-terminated, at most 1 MiB, the caller frees it); else -EACCES (403),
 * -ENOENT (404), -EAGAIN (409), -EFBIG, -EPROTO or -EIO with a reason
 * naming the request and the server's error message in err. */
int agent_api_call(struct agent_api *a, const char *path, const char *body, unsigned retries,
                   char **ret, size_t *ret_len, char *err, size_t errlen);

/* A conditional GET (stage 3's desired state): If-None-Match etag (NULL or
 * "" for none). 0 with *ret_not_modified (a 304, *ret NULL) or the body in
 * *ret, and the reply's ETag in ret_etag ("" when none or not printable).
 * Errors as agent_api_call(). */
int agent_api_get_cond(struct agent_api *a, const char *path, const char *etag, unsigned retries,
                       bool *ret_not_modified, char ret_etag[64], char **ret, size_t *ret_len,
                       char *err, size_t errlen);

/* POSTs a status report; step, message and p may be NULL. step and
 * message are sent as one line of printable ASCII, cut to the server's
 * limits (256 and 1000 characters). */
int agent_post_status(struct agent_api *a, const char *state, const char *step, const char *message,
                      const struct agent_progress *p, unsigned retries, char *err, size_t errlen);
/* The same with the members of extra (a JSON object, may be NULL) added to
 * the body: "installed", "reboot_required". */
struct json_t;
int agent_post_status_ex(struct agent_api *a, const char *state, const char *step,
                         const char *message, const struct agent_progress *p, struct json_t *extra,
                         unsigned retries, char *err, size_t errlen);

/* Starts a thread that posts {state, step, bytes_done, bytes_total, rate}
 * every second on its own connection, from what agent_reporter_update()
 * (a progress callback: arg is the reporter) last gave it. */
int agent_reporter_start(struct agent_reporter *rp, const struct agent_cmdline *c,
                         unsigned timeout_s, const char *state, const char *step);
void agent_reporter_update(void *arg, uint64_t done, uint64_t total);
/* Stops the thread (if running) and returns the last values seen. */
struct agent_progress agent_reporter_stop(struct agent_reporter *rp);
