/* The JSON API under /api/v1/, independent of the HTTP library: http.c
 * passes the method, decoded path, body and Authorization header and sends
 * back what this returns. Also issues the per-boot tokens that the iPXE
 * scripts hand to the agent. */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct api;
struct registry;
struct rb_config;

#define API_BODY_MAX     (1024 * 1024) /* request bodies above this are 413 */
#define API_PROGRESS_MAX 65536         /* live progress records kept in memory */
#define API_TOKEN_LEN    32            /* hex characters of a boot token */

struct api_request {
	const char *method;        /* "GET", "HEAD", "POST", ... */
	const char *path;          /* decoded, e.g. "/api/v1/nodes/52:54:00:12:34:56/plan" */
	const char *body;          /* NULL when there is none; not NUL-terminated */
	size_t body_len;           /* at most API_BODY_MAX */
	const char *authorization; /* the header's value, NULL if absent */
	const char *query;         /* raw query string (after '?', still encoded), NULL if none */
	const char *base;          /* "http://host:port" the node reached us at */
	const char *if_none_match; /* the header's value, NULL if absent */
};

struct api_reply {
	unsigned status; /* HTTP status code */
	char *body;      /* JSON document, malloc'ed, owned by the caller */
	size_t len;
	const char *allow; /* for 405: the methods the path takes (static) */
	char etag[40];     /* "" or the ETag header's value, quotes included; a 304
	                      has no body */
};

/* cfg, reg and repo_fd (the repository root as an O_PATH directory fd, or
 * -1 when there is none) are borrowed and must outlive the api. At most
 * progress_cap nodes have a live progress record; the least recently
 * updated one makes room for a new one. */
int api_new(const struct rb_config *cfg, struct registry *reg, int repo_fd, size_t progress_cap,
            struct api **ret);
/* NULL is a no-op. */
void api_free(struct api *api);

/* True if path belongs to the API (starts with "/api/"). */
bool api_path_matches(const char *path);
/* Answers one request. Errors are answered too, as
 * {"error": "...", "status": N}. Returns 0 with *ret filled, or -ENOMEM
 * (then nothing is allocated). Thread-safe. */
int api_handle(struct api *api, const struct api_request *rq, struct api_reply *ret);

/* Reply helpers shared by the agent (api.c) and operator (api_ops.c)
 * handlers: a JSON document (taken over, NULL = -ENOMEM), or an error
 * object {"error": msg, "status": N}. 0 or -ENOMEM. */
struct json_t;
int api_reply_doc(struct api_reply *ret, unsigned status, struct json_t *doc);
int api_reply_error(struct api_reply *ret, unsigned status, const char *msg);
int api_reply_errorf(struct api_reply *ret, unsigned status, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));

/* True for the states in which a node boots the agent to be provisioned
 * (provision.ipxe, plan mode "provision"). */
bool api_state_provisions(const char *state);

/* Makes a fresh boot token for the node (API_TOKEN_LEN lowercase hex from
 * getrandom) and stores its SHA-256 in the registry, replacing the one of
 * the node's previous boot. The token is valid once this returns 0. */
int api_token_issue(struct registry *reg, const uint8_t mac[6], char ret_token[API_TOKEN_LEN + 1]);

/* For the operator API (pxe/api_ops.c), which api_handle() hands its
 * paths to and which shares the api's state: */
struct json_t;
struct img_catalog;
struct api_ops;
struct rb_events;
/* The node's live progress record as JSON, or JSON null; NULL only
 * without memory. */
struct json_t *api_progress_json(struct api *api, const uint8_t mac[6]);
/* Reads the repository's catalog.json: 0, or -errno with why. */
int api_catalog_load(struct api *api, struct img_catalog **ret, char *why, size_t whylen);
/* The operator side (tokens), owned by the api. */
struct api_ops *api_ops_of(struct api *api);
/* Where agents' progress reports are published as live events (borrowed;
 * NULL = nowhere). Set once, before requests are served. */
void api_set_events(struct api *api, struct rb_events *events);
