/* Node registry (SQLite): nodes by MAC with first/last seen, architecture,
 * profile, state, the hash of the node's current boot token, its latest
 * inventory, and an event log of every boot step.
 * Writers on the hot path (DHCP, TFTP, HTTP) call registry_note(), which only
 * queues in memory; a writer thread batches the queue into transactions, so
 * no packet waits for the disk. Reads (API, iPXE script choice) use their own
 * connection in WAL mode. All functions are thread-safe. */
#pragma once
#include <stdbool.h>
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

/* operator */
#define REGISTRY_LABELS_MAX  4096 /* bytes of the labels JSON object */
#define REGISTRY_PKGSETS_MAX 1024 /* bytes of the desired package sets JSON array */
/* What operators set on a node (pxe/api_ops.c), beside registry_node's
 * profile and hostname. */
struct registry_operator {
	char labels[REGISTRY_LABELS_MAX + 1]; /* JSON object text, "{}" when none */
	char rack[65];
	char desired_image[65];   /* "" = the profile's image */
	char desired_version[65]; /* "" = the profile's version */
	/* JSON array text of package set names, "" = the profile's */
	char desired_package_sets[REGISTRY_PKGSETS_MAX + 1];
	int held; /* 0 or 1: no provisioning, no updates while set */
	/* Wipe level of a pending reimage ("none", "metadata", "full"), "" =
	 * none asked for. Cleared by provision and retire, and when the agent
	 * reports imaged (event "reimage.done"). */
	char reimage_wipe[16];
};
/* The node and its operator fields. Either out pointer may be NULL. */
int registry_operator_get(struct registry *reg, const uint8_t mac[6],
                          struct registry_node *ret_node, struct registry_operator *ret_op);
/* Decides an operator change inside the registry's transaction: gets the
 * node's current row, edits node->state/profile/hostname and *op, and
 * fills event (at most 23 bytes) and detail; returns 0 to write, or a
 * negative value to write nothing (returned by registry_operator_change;
 * the callback may leave a reason in its ud). Must not call the registry. */
typedef int (*registry_decide_fn)(struct registry_node *node, struct registry_operator *op,
                                  char event[24], char detail[512], void *ud);
/* Reads, decides and writes one node atomically (BEGIN IMMEDIATE), with an
 * event, after everything queued before it. -ENOENT for an unknown node. */
int registry_operator_change(struct registry *reg, const uint8_t mac[6], registry_decide_fn decide,
                             void *ud);
/* Registers a node that has not booted yet (state node->state, "new" if
 * ""), with an event. -EEXIST if the MAC is known. */
int registry_node_register(struct registry *reg, const struct registry_node *node,
                           const struct registry_operator *op, const char *event,
                           const char *detail);
/* JSON array of every node object (as registry_nodes_json's "nodes"). */
int registry_nodes_doc(struct registry *reg, struct json_t **ret);
/* {"<state>": count, ...} over all nodes, and the number held. */
int registry_state_counts(struct registry *reg, struct json_t **ret, uint64_t *ret_held);

/* events (the operator's event stream, pxe/events.c) */
/* Events with id > after_id in id order, at most limit, as an array of
 * {"id","mac","ts_ms","event","detail","state"} (state: the node's state
 * now). */
int registry_events_since(struct registry *reg, int64_t after_id, size_t limit,
                          struct json_t **ret);
/* The highest event id (0 when there is none). */
int registry_last_event_id(struct registry *reg, int64_t *ret);
/* fn(ud) is called, with no registry lock held, after each commit that
 * wrote events (from the writer thread or the caller of a synchronous
 * write). One hook; NULL removes it. Returns once no call of the previous
 * hook runs any more (so its ud may be freed); must not be called from
 * inside the hook. */
void registry_set_event_hook(struct registry *reg, void (*fn)(void *), void *ud);

/* installed node (agent stages 2 and 3: pxe/api.c) */
#define REGISTRY_INSTALLED_MAX (256 * 1024) /* bytes of the installed JSON */
struct registry_installed {
	char node_token_sha256[65]; /* hex SHA-256 of the installed agent's token, "" = none */
	struct json_t *installed;   /* {"image":{...},"packages":[...]} last reported, or NULL */
	bool reboot_required;
};
/* Replaces the hash of the node's long-lived agent token (stored when a
 * plan hands out a fresh one). Synchronous; -ENOENT for an unknown node. */
int registry_node_token_set(struct registry *reg, const uint8_t mac[6], const char *sha256_hex);
/* What the node's agent last reported: installed (compact JSON text, NULL
 * keeps the stored one), reboot_required (0 or 1, negative keeps it). */
int registry_installed_set(struct registry *reg, const uint8_t mac[6], const char *installed,
                           int reboot_required);
/* Reads the above; registry_installed_fini() frees the JSON values. */
int registry_installed_get(struct registry *reg, const uint8_t mac[6],
                           struct registry_installed *ret);
void registry_installed_fini(struct registry_installed *v);

/* package sets (pxe/api.c, pxe/api_ops.c): per set, the resolution (JSON
 * object text {"package": "version", ...}) last handed out, the one before
 * it and an operator's pin. */
/* Records that resolution was handed out for set name: when it differs
 * from the stored current one, that one becomes previous. *ret_pinned is
 * the pinned resolution (malloc'd text; NULL when not pinned). */
int registry_pkgset_observe(struct registry *reg, const char *name, const char *resolution,
                            char **ret_pinned);
/* {"current","previous","pinned"}: each the parsed resolution or null. */
int registry_pkgset_get(struct registry *reg, const char *name, struct json_t **ret);
/* rollback: pins the set to its previous resolution (-ENOENT when there is
 * none); else removes the pin (0 also when there was none). */
int registry_pkgset_pin(struct registry *reg, const char *name, bool rollback);
