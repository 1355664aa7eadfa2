/* JSON API handlers under /api/v1/:
 *   GET /api/v1/nodes          all nodes (registry_nodes_json)
 *   GET /api/v1/nodes/<mac>    one node with its last 50 events
 * HEAD is answered like GET (http.c drops the body). Other methods get 405,
 * a malformed MAC 400, an unknown node or path 404; every error is a JSON
 * object {"error": "...", "status": N} built with jansson.
 *
 * Owns nothing between calls and never touches a socket: the reply goes
 * back to http.c. Never logs above debug level. */
#include "pxe/api.h"

#include <errno.h>
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/util.h"
#include "pxe/registry.h"

#define API_PREFIX     "/api/"
#define API_NODES      "/api/v1/nodes"
#define API_MAX_EVENTS 50

bool api_path_matches(const char *path)
{
	return path && strncmp(path, API_PREFIX, strlen(API_PREFIX)) == 0;
}

static int reply_error(struct api_reply *ret, unsigned status, const char *msg)
{
	json_t *doc = json_pack("{s:s, s:i}", "error", msg, "status", (json_int_t)status);
	char *body;

	if (!doc)
		return -ENOMEM;
	body = json_dumps(doc, JSON_COMPACT);
	json_decref(doc);
	if (!body)
		return -ENOMEM;
	ret->status = status;
	ret->body = body;
	ret->len = strlen(body);
	return 0;
}

/* Takes ownership of body (a JSON document from the registry). */
static int reply_ok(struct api_reply *ret, char *body)
{
	ret->status = 200;
	ret->body = body;
	ret->len = strlen(body);
	return 0;
}

static int reply_registry_error(struct api_reply *ret, int r)
{
	if (r == -ENOMEM)
		return -ENOMEM;
	if (r == -ENOENT)
		return reply_error(ret, 404, "unknown node");
	return reply_error(ret, 500, "registry error");
}

static int handle_nodes(struct registry *reg, struct api_reply *ret)
{
	char *body = NULL;
	int r = registry_nodes_json(reg, &body);

	if (r < 0) {
		log_debug("api: registry_nodes_json: %s", strerror(-r));
		return reply_registry_error(ret, r);
	}
	return reply_ok(ret, body);
}

static int handle_node(struct registry *reg, const char *macstr, struct api_reply *ret)
{
	uint8_t mac[6];
	char *body = NULL;
	int r;

	if (rb_mac_parse(macstr, mac) < 0)
		return reply_error(ret, 400, "bad MAC address (expected aa:bb:cc:dd:ee:ff)");
	r = registry_node_json(reg, mac, API_MAX_EVENTS, &body);
	if (r < 0) {
		if (r != -ENOENT)
			log_debug("api: registry_node_json: %s", strerror(-r));
		return reply_registry_error(ret, r);
	}
	return reply_ok(ret, body);
}

int api_handle(struct registry *reg, const char *method, const char *path, struct api_reply *ret)
{
	bool read_only = strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0;
	size_t n = strlen(API_NODES);
	const char *rest;

	memset(ret, 0, sizeof(*ret));
	if (strncmp(path, API_NODES, n) != 0 || (path[n] != '\0' && path[n] != '/'))
		return reply_error(ret, 404, "no such API endpoint");
	rest = path[n] == '/' ? path + n + 1 : "";
	/* Only reads exist so far; the path is matched first so that an unknown
	 * endpoint is 404 whatever the method. */
	if (*rest && strchr(rest, '/'))
		return reply_error(ret, 404, "no such API endpoint");
	if (!read_only)
		return reply_error(ret, 405, "method not allowed");
	if (!*rest)
		return handle_nodes(reg, ret);
	return handle_node(reg, rest, ret);
}
