/* Node list filters of the operator API: the query string of
 * GET /api/v1/nodes ("state=ready,failed&profile=gpu&rack=r12&label=tenant=a
 * &held=true") parsed into a filter, and the test of a node document
 * against it. Pure functions, no I/O. */
#pragma once
#include <stdbool.h>
#include <stddef.h>

#define NODE_FILTER_MAX_VALUES 16   /* per key: states, profiles, racks, labels */
#define NODE_FILTER_QUERY_MAX  4096 /* bytes of a query string */

struct json_t;

struct node_filter {
	char states[NODE_FILTER_MAX_VALUES][24]; /* any of */
	size_t n_states;
	char profiles[NODE_FILTER_MAX_VALUES][65]; /* any of; "" = no profile set */
	size_t n_profiles;
	char racks[NODE_FILTER_MAX_VALUES][65]; /* any of */
	size_t n_racks;
	struct {
		char key[64];
		char value[256];
		bool any_value;           /* "label=k": the key is present */
	} labels[NODE_FILTER_MAX_VALUES]; /* all of */
	size_t n_labels;
	int held; /* -1 either, 0 not held, 1 held */
};

/* Decodes one "key=value" pair of a query string at *cursor (percent
 * escapes, '+' as space) and advances past its '&'. 1 with the pair, 0 at
 * the end, -EINVAL for a bad escape, %00, or a key or value that does not
 * fit (err says which). */
int query_next(const char **cursor, char *key, size_t keylen, char *value, size_t valuelen,
               char *err, size_t errlen);

/* Parses a query string (without the '?'; NULL or "" = no filter). Values
 * of state, profile and rack are comma-separated lists; label may repeat.
 * -EINVAL with err naming the key for anything unknown or malformed. */
int node_filter_parse(const char *query, struct node_filter *ret, char *err, size_t errlen);
/* True if the node document (an element of registry_nodes_doc) passes. */
bool node_filter_match(const struct node_filter *f, const struct json_t *node);
