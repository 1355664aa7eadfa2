/* Wiping disk image files: metadata clears exactly the first and last MiB
 * (the middle keeps its bytes), full leaves every byte zero with the size
 * kept and the blocks freed, progress ends at the total; small and empty
 * files; wrong targets; the mode names and the command's exit codes.
 * Block devices are covered by tests/integration/test_agent_run.sh (loop). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "agent/wipe.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/util.h"

#define MIB (1024ULL * 1024)

static char dir[64];
static char path[128];

static int setup(void **state)
{
	(void)state;
	snprintf(dir, sizeof(dir), "/tmp/rbt-wipe.XXXXXX");
	if (!mkdtemp(dir))
		return -1;
	snprintf(path, sizeof(path), "%s/disk.img", dir);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	unlink(path);
	return rmdir(dir);
}

/* A file of size bytes, byte i = pattern(i) (never 0). */
static uint8_t pattern(uint64_t i)
{
	return (uint8_t)(i * 131 + i / 4093 + 1) | 1;
}

static void make_file(uint64_t size)
{
	uint8_t buf[65536];
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);

	assert_true(fd >= 0);
	for (uint64_t off = 0; off < size; off += sizeof(buf)) {
		size_t n = (size_t)RB_MIN((uint64_t)sizeof(buf), size - off);

		for (size_t i = 0; i < n; i++)
			buf[i] = pattern(off + i);
		assert_int_equal(rb_pwrite_all(fd, buf, n, off), 0);
	}
	close(fd);
}

/* Checks [0, size): zero inside [z0, z1) and [z2, z3), the pattern elsewhere. */
static void check(uint64_t size, uint64_t z0, uint64_t z1, uint64_t z2, uint64_t z3)
{
	uint8_t buf[65536];
	struct stat st;
	int fd = open(path, O_RDONLY);

	assert_true(fd >= 0);
	assert_int_equal(fstat(fd, &st), 0);
	assert_int_equal((uint64_t)st.st_size, size);
	for (uint64_t off = 0; off < size; off += sizeof(buf)) {
		size_t n = (size_t)RB_MIN((uint64_t)sizeof(buf), size - off);

		assert_int_equal(rb_pread_all(fd, buf, n, off), 0);
		for (size_t i = 0; i < n; i++) {
			uint64_t at = off + i;
			bool zero = (at >= z0 && at < z1) || (at >= z2 && at < z3);

			if (buf[i] != (zero ? 0 : pattern(at)))
				fail_msg("byte %llu is 0x%02x, expected %s", (unsigned long long)at,
				         buf[i], zero ? "zero" : "the old pattern");
		}
	}
	close(fd);
}

struct prog {
	unsigned calls;
	uint64_t last_done, total;
	int monotonic;
};

static void on_progress(void *arg, uint64_t done, uint64_t total)
{
	struct prog *p = arg;

	if (p->calls && done < p->last_done)
		p->monotonic = 0;
	p->calls++;
	p->last_done = done;
	p->total = total;
}

static void test_modes(void **state)
{
	enum agent_wipe_mode m;

	(void)state;
	assert_int_equal(agent_wipe_mode_parse("none", &m), 0);
	assert_int_equal(m, AGENT_WIPE_NONE);
	assert_int_equal(agent_wipe_mode_parse("metadata", &m), 0);
	assert_int_equal(m, AGENT_WIPE_METADATA);
	assert_int_equal(agent_wipe_mode_parse("full", &m), 0);
	assert_int_equal(m, AGENT_WIPE_FULL);
	assert_int_equal(agent_wipe_mode_parse("Full", &m), -EINVAL);
	assert_int_equal(agent_wipe_mode_parse("", &m), -EINVAL);
	assert_string_equal(agent_wipe_mode_name(AGENT_WIPE_METADATA), "metadata");
}

static void test_metadata(void **state)
{
	const uint64_t size = 8 * MIB + 4096;
	char rep[256], err[256];

	(void)state;
	make_file(size);
	assert_int_equal(agent_wipe(path, AGENT_WIPE_METADATA, NULL, NULL, rep, sizeof(rep), err,
	                            sizeof(err)),
	                 0);
	assert_non_null(strstr(rep, "metadata: zeroed"));
	check(size, 0, MIB, size - MIB, size);

	/* smaller than two MiB: all of it, nothing beyond the end */
	make_file(MIB + MIB / 2);
	assert_int_equal(agent_wipe(path, AGENT_WIPE_METADATA, NULL, NULL, rep, sizeof(rep), err,
	                            sizeof(err)),
	                 0);
	check(MIB + MIB / 2, 0, MIB + MIB / 2, 0, 0);

	/* none: nothing touched */
	make_file(3 * MIB);
	assert_int_equal(
	        agent_wipe(path, AGENT_WIPE_NONE, NULL, NULL, rep, sizeof(rep), err, sizeof(err)),
	        0);
	check(3 * MIB, 0, 0, 0, 0);
}

static void test_full(void **state)
{
	const uint64_t size = 24 * MIB + 512;
	struct prog p = { .monotonic = 1 };
	char rep[256], err[256];
	struct stat st;

	(void)state;
	make_file(size);
	assert_int_equal(agent_wipe(path, AGENT_WIPE_FULL, on_progress, &p, rep, sizeof(rep), err,
	                            sizeof(err)),
	                 0);
	assert_non_null(strstr(rep, "full: "));
	assert_non_null(strstr(rep, "24.0 MiB"));
	check(size, 0, size, 0, 0);
	assert_true(p.calls >= 2);
	assert_true(p.monotonic);
	assert_int_equal(p.last_done, size);
	assert_int_equal(p.total, size);
	assert_int_equal(stat(path, &st), 0);
	if (strstr(rep, "PUNCH_HOLE"))
		assert_true((uint64_t)st.st_blocks * 512 < size / 4); /* the blocks are freed */

	/* empty file */
	make_file(0);
	assert_int_equal(
	        agent_wipe(path, AGENT_WIPE_FULL, NULL, NULL, rep, sizeof(rep), err, sizeof(err)),
	        0);
	assert_non_null(strstr(rep, "empty"));
}

static void test_bad_targets(void **state)
{
	char rep[256], err[256];

	(void)state;
	assert_int_equal(agent_wipe("/nonexistent/rackboot-disk", AGENT_WIPE_FULL, NULL, NULL, rep,
	                            sizeof(rep), err, sizeof(err)),
	                 -ENOENT);
	assert_non_null(strstr(err, "/nonexistent/rackboot-disk"));
	assert_int_equal(agent_wipe(dir, AGENT_WIPE_METADATA, NULL, NULL, rep, sizeof(rep), err,
	                            sizeof(err)),
	                 -EISDIR);
	/* a character device is neither a disk nor a file */
	assert_int_equal(agent_wipe("/dev/null", AGENT_WIPE_METADATA, NULL, NULL, rep, sizeof(rep),
	                            err, sizeof(err)),
	                 -EINVAL);
	assert_non_null(strstr(err, "not a block device or regular file"));
}

static void test_command(void **state)
{
	char *help[] = { "wipe", "--help", NULL };
	char *nomode[] = { "wipe", path, NULL };
	char *badmode[] = { "wipe", "--mode", "shred", path, NULL };
	char *notarget[] = { "wipe", "--mode", "full", NULL };
	char *missing[] = { "wipe", "--mode", "full", "-q", "/nonexistent/rackboot-disk", NULL };
	char *ok[] = { "wipe", "--mode", "metadata", "-q", path, NULL };

	(void)state;
	make_file(4 * MIB);
	assert_int_equal(agent_cmd_wipe(2, help), 0);
	assert_int_equal(agent_cmd_wipe(2, nomode), 2);
	assert_int_equal(agent_cmd_wipe(4, badmode), 2);
	assert_int_equal(agent_cmd_wipe(3, notarget), 2);
	assert_int_equal(agent_cmd_wipe(5, missing), 1);
	assert_int_equal(agent_cmd_wipe(5, ok), 0);
	check(4 * MIB, 0, MIB, 3 * MIB, 4 * MIB);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_modes),   cmocka_unit_test(test_metadata),
		cmocka_unit_test(test_full),    cmocka_unit_test(test_bad_targets),
		cmocka_unit_test(test_command),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
