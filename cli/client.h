/* The rackboot CLI's HTTP side (libcurl): one JSON request to the
 * operator API, or the event stream. Maps every outcome to one of the
 * CLI's exit codes, with a message that says what to do. */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

/* Exit codes (docs/operator.md). */
enum {
	CLI_OK = 0,
	CLI_REFUSED = 1, /* the server answered with an error (400, 404, 409, 5xx) */
	CLI_USAGE = 2,   /* the command line is wrong */
	CLI_CONNECT = 3, /* no answer: cannot connect, timeout, not rackbootd */
	CLI_AUTH = 4,    /* no token, or the server refused it (401, 403) */
};

#define CLIENT_BODY_MAX (64 * 1024 * 1024) /* a longer answer is an error */

struct client {
	char server[512];   /* "http://host:port", no trailing slash */
	char token[256];    /* the operator token */
	long timeout_s;     /* per request (not the stream) */
	const char *cacert; /* CA file for https (NULL: the system's) */
};

struct response {
	long status;   /* HTTP status, 0 when there was no answer */
	json_t *doc;   /* the parsed body, NULL if none or not JSON */
	char err[600]; /* what went wrong, when the result is not CLI_OK */
};

/* One request; body (JSON text) may be NULL. Returns an exit code: CLI_OK
 * for 2xx with a JSON body, else the class of the failure with err set
 * (the server's "error" text when it sent one). r->doc is set only on
 * CLI_OK (caller frees it; json_decref(NULL) is fine on failures). */
int client_request(const struct client *c, const char *method, const char *path, const char *body,
                   struct response *r);

/* Called per stream event; data is the JSON text. Non-zero stops. */
typedef int (*client_event_fn)(const char *type, const char *id, const char *data, void *ud);
/* Called about once a second while the stream is open (redraws, idle
 * checks). Non-zero stops the stream. */
typedef int (*client_tick_fn)(void *ud);

/* Follows GET path (the event stream) until it ends, the callback stops
 * it, or the connection fails. *last_id is sent as Last-Event-ID when
 * >= 0 and updated from every event with an id, so a caller can
 * reconnect where it left off. Returns an exit code like client_request()
 * (CLI_OK when a callback stopped it or the server ended the stream). */
int client_stream(const struct client *c, const char *path, int64_t *last_id, client_event_fn fn,
                  client_tick_fn tick, void *ud, char *err, size_t errlen);
