/* Registry: notes from the hot path land in the database after a flush,
 * nodes keep first_seen and update last_seen/arch/ip, reads return JSON
 * with the events, unknown nodes are -ENOENT, hostile strings are cleaned.
 * Boot tokens, inventories and agent state changes are synchronous writes;
 * a registry.db of the previous schema is migrated and keeps its data. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "pxe/registry.h"

#include <errno.h>
#include <jansson.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const uint8_t mac1[6] = { 0x52, 0x54, 0x00, 0x12, 0x34, 0x56 };
static const uint8_t mac2[6] = { 0x52, 0x54, 0x00, 0x12, 0x34, 0x57 };

static char dir[] = "/tmp/rbregXXXXXX";
static char path[64];

static int setup(void **state)
{
	memcpy(dir + strlen(dir) - 6, "XXXXXX", 6);
	if (!mkdtemp(dir))
		return -1;
	snprintf(path, sizeof(path), "%s/registry.db", dir);
	return 0;
}

static int teardown(void **state)
{
	char cmd[96];

	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	return system(cmd);
}

static void test_notes_and_reads(void **state)
{
	struct registry *reg = NULL;
	struct registry_node n;
	json_t *doc, *evs;
	char *s;

	assert_int_equal(registry_open(path, &reg), 0);
	assert_int_equal(registry_node_get(reg, mac1, &n), -ENOENT);
	registry_note(reg, mac1, "bios", NULL, "dhcp.offer", "file %s", "undionly.kpxe");
	registry_note(reg, mac1, NULL, "10.77.0.100", "tftp.done", "undionly.kpxe");
	registry_note(reg, mac2, "uefi-x64", "10.77.0.101", "dhcp.offer", "x\n\"y\x01");
	registry_flush(reg);

	assert_int_equal(registry_node_get(reg, mac1, &n), 0);
	assert_string_equal(n.arch, "bios"); /* NULL arch kept the stored one */
	assert_string_equal(n.ip, "10.77.0.100");
	assert_string_equal(n.state, "new");
	assert_true(n.first_seen > 0 && n.last_seen >= n.first_seen);

	assert_int_equal(registry_nodes_json(reg, &s), 0);
	doc = json_loads(s, 0, NULL);
	free(s);
	assert_non_null(doc);
	assert_int_equal(json_array_size(json_object_get(doc, "nodes")), 2);
	json_decref(doc);

	assert_int_equal(registry_node_json(reg, mac2, 50, &s), 0);
	doc = json_loads(s, 0, NULL);
	free(s);
	evs = json_object_get(doc, "events");
	assert_int_equal(json_array_size(evs), 1);
	/* control characters never reach the registry */
	assert_string_equal(json_string_value(json_object_get(json_array_get(evs, 0), "detail")),
	                    "x?\"y?");
	json_decref(doc);

	assert_int_equal(registry_node_set(reg, mac1, "ready", "gpu"), 0);
	assert_int_equal(registry_node_get(reg, mac1, &n), 0);
	assert_string_equal(n.state, "ready");
	assert_string_equal(n.profile, "gpu");
	registry_free(reg);

	/* persisted across a restart */
	assert_int_equal(registry_open(path, &reg), 0);
	assert_int_equal(registry_node_get(reg, mac1, &n), 0);
	assert_string_equal(n.state, "ready");
	assert_int_equal(registry_node_json(reg, mac1, 1, &s), 0);
	doc = json_loads(s, 0, NULL);
	free(s);
	/* newest event only when asked for one */
	assert_string_equal(json_string_value(json_object_get(
	                            json_array_get(json_object_get(doc, "events"), 0), "event")),
	                    "tftp.done");
	json_decref(doc);
	registry_free(reg);
}

static void test_many_notes(void **state)
{
	struct registry *reg = NULL;
	char *s;
	json_t *doc;

	assert_int_equal(registry_open(path, &reg), 0);
	for (int i = 0; i < 20000; i++)
		registry_note(reg, mac2, NULL, NULL, "dhcp.offer", "%d", i);
	registry_flush(reg);
	assert_int_equal(registry_node_json(reg, mac2, 50, &s), 0);
	doc = json_loads(s, 0, NULL);
	free(s);
	assert_int_equal(json_array_size(json_object_get(doc, "events")), 50);
	json_decref(doc);
	/* every note was either written or counted as dropped, none lost silently */
	assert_int_equal(registry_node_json(reg, mac2, 100000, &s), 0);
	doc = json_loads(s, 0, NULL);
	free(s);
	assert_int_equal(json_array_size(json_object_get(doc, "events")) + registry_dropped(reg),
	                 20000);
	json_decref(doc);
	registry_free(reg);
}

static size_t count_events(struct registry *reg, const uint8_t *mac)
{
	size_t n;
	char *s;
	json_t *doc;

	registry_flush(reg);
	assert_int_equal(registry_node_json(reg, mac, 100000, &s), 0);
	doc = json_loads(s, 0, NULL);
	free(s);
	n = json_array_size(json_object_get(doc, "events"));
	json_decref(doc);
	return n;
}

static void test_coalesce_repeats(void **state)
{
	struct registry *reg = NULL;

	assert_int_equal(registry_open(path, &reg), 0);
	/* A DHCP client retransmitting: one event, not a hundred. */
	for (int i = 0; i < 100; i++)
		registry_note(reg, mac1, "bios", NULL, "dhcp.offer", "undionly.kpxe");
	assert_int_equal(count_events(reg, mac1), 1);
	/* A different step, detail or node is its own event. */
	registry_note(reg, mac1, NULL, NULL, "dhcp.ack", "undionly.kpxe");
	registry_note(reg, mac1, NULL, NULL, "dhcp.offer", "snponly.efi");
	registry_note(reg, mac2, NULL, NULL, "dhcp.offer", "undionly.kpxe");
	assert_int_equal(count_events(reg, mac1), 3);
	assert_int_equal(count_events(reg, mac2), 1);
	/* After the window the same step is logged again. */
	usleep(1100 * 1000);
	registry_note(reg, mac1, NULL, NULL, "dhcp.offer", "undionly.kpxe");
	assert_int_equal(count_events(reg, mac1), 4);
	registry_free(reg);
}

static const char tok_a[] = "aa2f1c0b8e3d4f5a6b7c8d9e0f1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c";
static const char tok_b[] = "bb2f1c0b8e3d4f5a6b7c8d9e0f1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c";

/* Reads one node document (with inventory) and the name of its last event. */
static json_t *node_doc(struct registry *reg, const uint8_t *mac, const char **ret_last_event)
{
	json_t *doc = NULL, *evs;

	assert_int_equal(registry_node_doc(reg, mac, 100, &doc), 0);
	evs = json_object_get(doc, "events");
	*ret_last_event = json_string_value(
	        json_object_get(json_array_get(evs, json_array_size(evs) - 1), "event"));
	return doc;
}

static void test_token_inventory_transition(void **state)
{
	struct registry *reg = NULL;
	struct registry_node n;
	const char *last;
	json_t *doc;

	assert_int_equal(registry_open(path, &reg), 0);
	/* A token for an unknown node creates it, as a script fetch does. */
	assert_int_equal(registry_token_set(reg, mac1, tok_a), 0);
	assert_int_equal(registry_node_get(reg, mac1, &n), 0);
	assert_string_equal(n.token_sha256, tok_a);
	assert_string_equal(n.state, "new");
	/* A new boot replaces it; the token never shows in the JSON. */
	assert_int_equal(registry_token_set(reg, mac1, tok_b), 0);
	assert_int_equal(registry_node_get(reg, mac1, &n), 0);
	assert_string_equal(n.token_sha256, tok_b);
	doc = node_doc(reg, mac1, &last);
	assert_null(json_object_get(doc, "token_sha256"));
	assert_true(json_is_null(json_object_get(doc, "inventory")));
	json_decref(doc);

	/* Inventory: only for a known node; replaced, with an event. */
	assert_int_equal(registry_inventory_set(reg, mac2, "{}", 2), -ENOENT);
	assert_int_equal(registry_inventory_set(reg, mac1, "{\"cpus\":2}", 10), 0);
	assert_int_equal(registry_inventory_set(reg, mac1, "{\"cpus\":4}", 10), 0);
	doc = node_doc(reg, mac1, &last);
	assert_int_equal(
	        json_integer_value(json_object_get(json_object_get(doc, "inventory"), "cpus")), 4);
	assert_string_equal(last, "agent.inventory");
	json_decref(doc);

	/* A state change with its event, after the notes queued before it. */
	registry_note(reg, mac1, NULL, NULL, "http.script", "provision.ipxe");
	assert_int_equal(
	        registry_node_transition(reg, mac1, "failed", "agent.failed", "disk\nvanished"), 0);
	assert_int_equal(registry_node_get(reg, mac1, &n), 0);
	assert_string_equal(n.state, "failed");
	assert_string_equal(n.token_sha256, tok_b); /* untouched */
	doc = node_doc(reg, mac1, &last);
	assert_string_equal(last, "agent.failed");
	{
		json_t *evs = json_object_get(doc, "events");
		json_t *e = json_array_get(evs, json_array_size(evs) - 1);

		assert_string_equal(json_string_value(json_object_get(e, "detail")),
		                    "disk?vanished");
		e = json_array_get(evs, json_array_size(evs) - 2);
		assert_string_equal(json_string_value(json_object_get(e, "event")), "http.script");
	}
	json_decref(doc);
	assert_int_equal(registry_node_transition(reg, mac2, "imaged", "agent.imaged", NULL),
	                 -ENOENT);
	assert_int_equal(registry_node_get(reg, mac2, &n), -ENOENT);
	registry_free(reg);

	/* All of it persisted. */
	assert_int_equal(registry_open(path, &reg), 0);
	assert_int_equal(registry_node_get(reg, mac1, &n), 0);
	assert_string_equal(n.token_sha256, tok_b);
	doc = node_doc(reg, mac1, &last);
	assert_non_null(json_object_get(json_object_get(doc, "inventory"), "cpus"));
	json_decref(doc);
	registry_free(reg);
}

/* The schema of the previous release, with data in it, as an upgraded
 * server finds it. */
static void test_migrates_old_schema(void **state)
{
	static const char old_schema[] =
	        "PRAGMA journal_mode=WAL;"
	        "CREATE TABLE nodes ("
	        "  mac TEXT PRIMARY KEY, first_seen INTEGER NOT NULL, last_seen INTEGER NOT NULL,"
	        "  arch TEXT NOT NULL DEFAULT '', ip TEXT NOT NULL DEFAULT '',"
	        "  state TEXT NOT NULL DEFAULT 'new', profile TEXT NOT NULL DEFAULT '',"
	        "  hostname TEXT NOT NULL DEFAULT '');"
	        "CREATE TABLE events ("
	        "  id INTEGER PRIMARY KEY AUTOINCREMENT, mac TEXT NOT NULL, ts_ms INTEGER NOT NULL,"
	        "  event TEXT NOT NULL, detail TEXT NOT NULL DEFAULT '');"
	        "CREATE INDEX events_mac ON events(mac, id);"
	        "INSERT INTO nodes(mac, first_seen, last_seen, arch, state, profile) VALUES"
	        "  ('52:54:00:12:34:56', 100, 200, 'bios', 'provisioning', 'gpu');"
	        "INSERT INTO events(mac, ts_ms, event, detail) VALUES"
	        "  ('52:54:00:12:34:56', 200000, 'dhcp.offer', 'undionly.kpxe');";
	struct registry *reg = NULL;
	struct registry_node n;
	sqlite3 *db = NULL;
	const char *last;
	json_t *doc;

	assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
	assert_int_equal(sqlite3_exec(db, old_schema, NULL, NULL, NULL), SQLITE_OK);
	sqlite3_close(db);

	for (int round = 0; round < 2; round++) { /* the second open finds it migrated */
		assert_int_equal(registry_open(path, &reg), 0);
		assert_int_equal(registry_node_get(reg, mac1, &n), 0);
		assert_string_equal(n.state, "provisioning");
		assert_string_equal(n.profile, "gpu");
		assert_string_equal(n.arch, "bios");
		assert_int_equal(n.first_seen, 100);
		if (round == 0) {
			assert_string_equal(n.token_sha256, "");
			assert_int_equal(registry_token_set(reg, mac1, tok_a), 0);
			assert_int_equal(registry_inventory_set(reg, mac1, "[1]", 3), 0);
		} else {
			assert_string_equal(n.token_sha256, tok_a);
		}
		doc = node_doc(reg, mac1, &last);
		assert_string_equal(
		        json_string_value(json_object_get(
		                json_array_get(json_object_get(doc, "events"), 0), "event")),
		        "dhcp.offer");
		assert_true(json_is_array(json_object_get(doc, "inventory")));
		json_decref(doc);
		registry_free(reg);
	}
}

static void test_open_fails_cleanly(void **state)
{
	struct registry *reg = (void *)0x1;

	assert_true(registry_open("/nonexistent-dir/x/registry.db", &reg) < 0);
	assert_ptr_equal(reg, (void *)0x1);
	registry_free(NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_notes_and_reads, setup, teardown),
		cmocka_unit_test_setup_teardown(test_many_notes, setup, teardown),
		cmocka_unit_test_setup_teardown(test_coalesce_repeats, setup, teardown),
		cmocka_unit_test_setup_teardown(test_token_inventory_transition, setup, teardown),
		cmocka_unit_test_setup_teardown(test_migrates_old_schema, setup, teardown),
		cmocka_unit_test(test_open_fails_cleanly),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
