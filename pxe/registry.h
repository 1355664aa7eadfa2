/* Node registry (SQLite): nodes by MAC with first/last seen, architecture,
 * profile, state, the hash of the node's current boot token, its latest
 * inventory, and an event log of every boot step.
 * Writers on the hot path (DHCP, TFTP, HTTP) call registry_note(), which only
 * queues in memory; a writer thread batches the queue into transactions, so
 * no packet waits for the disk. Reads (API, iPXE script choice) use their own
 * connection in WAL mode. All functions are thread-safe. */
#pragma once
#include <stddef.h>
#include <stdint.h>

struct registry;

struct registry_node {
	uint8_t mac[6];
	char state[24]; /* new, discovered, provisioning, ready, failed, ... */
	char profile[64];
	char arch[24];
	char hostname[64];
	char ip[16];
	int64_t first_seen; /* unix seconds */
	int64_t last_seen;
	char token_sha256[65]; /* hex SHA-256 of the current boot token, "" = none */
};

struct json_t;

int registry_open(const char *path, struct registry **ret);
/* Writes what is queued, stops the writer and closes. NULL is a no-op. */
void registry_free(struct registry *reg);

/* Queues "node mac was seen doing event" (e.g. "dhcp.offer", "tftp.done",
 * "http.script"). arch and ip may be NULL (then the stored value stays).
 * Never blocks on disk; if the queue is full the note is dropped and counted. */
void registry_note(struct registry *reg, const uint8_t mac[6], const char *arch, const char *ip,
                   const char *event, const char *detail_fmt, ...)
        __attribute__((format(printf, 6, 7)));
/* Blocks until everything queued so far is written (tests, shutdown). */
void registry_flush(struct registry *reg);

/* Synchronous reads/writes. Return 0, -ENOENT for an unknown node, -EIO. */
int registry_node_get(struct registry *reg, const uint8_t mac[6], struct registry_node *ret);
int registry_node_set(struct registry *reg, const uint8_t mac[6], const char *state,
                      const char *profile);
/* Replaces the node's boot token hash (64 lowercase hex), creating the node
 * if it is new. Synchronous: the hash is on disk when this returns 0. */
int registry_token_set(struct registry *reg, const uint8_t mac[6], const char *sha256_hex);
/* Replaces the node's stored inventory with doc (len bytes of JSON, the
 * caller validated it) and notes an "agent.inventory" event. Synchronous.
 * -ENOENT for an unknown node. */
int registry_inventory_set(struct registry *reg, const uint8_t mac[6], const char *doc, size_t len);
/* The node's stored inventory as parsed JSON (caller json_decref()s *ret).
 * -ENOENT if the node sent none (or the stored row no longer parses). */
int registry_inventory_get(struct registry *reg, const uint8_t mac[6], struct json_t **ret);
/* Sets the node's state and writes the event (detail may be NULL) in one
 * transaction, after everything queued before it. -ENOENT if unknown. */
int registry_node_transition(struct registry *reg, const uint8_t mac[6], const char *state,
                             const char *event, const char *detail);
/* JSON documents for the API; caller frees *ret (json_decref for the doc).
 * The single-node document carries "events" and "inventory" (null if none). */
int registry_nodes_json(struct registry *reg, char **ret);
int registry_node_json(struct registry *reg, const uint8_t mac[6], size_t max_events, char **ret);
int registry_node_doc(struct registry *reg, const uint8_t mac[6], size_t max_events,
                      struct json_t **ret);
/* Number of notes dropped because the queue was full. */
uint64_t registry_dropped(struct registry *reg);
