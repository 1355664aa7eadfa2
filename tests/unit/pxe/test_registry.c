/* Registry: notes from the hot path land in the database after a flush,
 * nodes keep first_seen and update last_seen/arch/ip, reads return JSON
 * with the events, unknown nodes are -ENOENT, hostile strings are cleaned. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "pxe/registry.h"

#include <errno.h>
#include <jansson.h>
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
		cmocka_unit_test(test_open_fails_cleanly),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
