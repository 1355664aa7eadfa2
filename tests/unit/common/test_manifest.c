/* Image manifest: serialise -> parse round trip, and every rejection rule of
 * rackboot-image/1 with the field named in the message. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "common/manifest.h"
#include "common/sha256.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define H  "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"
#define H2 "ffeeddccbbaa99887766554433221100ffeeddccbbaa99887766554433221100"
#define HDR_(disk, csize)                                                                          \
	"\"format\":\"rackboot-image/1\",\"name\":\"deb\",\"version\":\"1\",\"disk_size\":" disk   \
	",\"chunk_size\":" csize ",\"created\":1,\"source_sha256\":\"" H "\""
#define HDR                  HDR_("1048576", "65536")
#define PACKS                "\"packs\":[{\"id\":\"" H "\",\"size\":1000}]"
#define CH(o, l, pi, po, sl) "[" #o "," #l ",\"" H "\"," #pi "," #po "," #sl "]"
#define M(body)              "{" body "}"
#define STD(chunks)          M(HDR "," PACKS ",\"chunks\":[" chunks "]")

static void test_accepts(void **state)
{
	static const char *const ok[] = {
		STD(""),
		STD(CH(0, 65536, 0, 0, 10) "," CH(65536, 65536, 0, 10, 10)),
		/* final short chunk of a disk that is not a multiple of chunk_size */
		M(HDR_("1049088", "65536") "," PACKS ",\"chunks\":[" CH(1048576, 512, 0, 0, 9) "]"),
		/* two chunks sharing the same pack bytes (dedup) */
		STD(CH(0, 65536, 0, 0, 10) "," CH(131072, 65536, 0, 0, 10)),
		/* unknown top-level keys are ignored */
		M(HDR "," PACKS ",\"chunks\":[],\"future\":{\"x\":[1,2]}"),
		M(HDR ",\"partitions\":{\"table\":\"gpt\",\"entries\":[{\"index\":1,\"start\":512,"
		      "\"size\":512,\"type\":\"0FC63DAF-8483-4772-8E79-3D69D8477DE4\",\"name\":"
		      "\"root\"}]}," PACKS ",\"chunks\":[]"),
	};

	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		struct img_manifest *m = NULL;
		char err[256] = "";
		int r = img_manifest_parse(ok[i], strlen(ok[i]), &m, err, sizeof(err));

		if (r != 0)
			fail_msg("vector %zu refused: %s", i, err);
		img_manifest_free(m);
	}
}

static void test_rejects(void **state)
{
	static const struct {
		const char *json;
		const char *msg;
	} v[] = {
		{ "", "not JSON" },
		{ "[1]", "expected a JSON object" },
		{ M(HDR "," PACKS ",\"chunks\":[],\"name\":\"x\""),
		  "not JSON" }, /* duplicate key */
		{ M("\"name\":\"deb\""), "format: missing field" },
		{ M("\"format\":\"rackboot-image/2\""), "format: \"rackboot-image/2\" is not" },
		{ M("\"format\":\"rackboot-image/1\",\"name\":\"deb\",\"version\":\"1\""),
		  "disk_size: missing field" },
		{ M(HDR_("\"1048576\"", "65536") "," PACKS ",\"chunks\":[]"),
		  "disk_size: expected an integer" },
		{ M(HDR_("1000", "65536") "," PACKS ",\"chunks\":[]"), "disk_size: 1000 must be" },
		{ M(HDR_("1125899906843136", "65536") "," PACKS ",\"chunks\":[]"),
		  "disk_size: 1125899906843136 out of range" },
		{ M(HDR_("0", "65536") "," PACKS ",\"chunks\":[]"), "disk_size: 0 must be" },
		{ M(HDR_("1048576", "65535") "," PACKS ",\"chunks\":[]"), "chunk_size: 65535" },
		{ M(HDR_("1048576", "2048") "," PACKS ",\"chunks\":[]"), "chunk_size: 2048" },
		{ M(HDR_("1048576", "33554432") "," PACKS ",\"chunks\":[]"),
		  "chunk_size: 33554432" },
		{ M(HDR_("1048576", "65536.0") "," PACKS ",\"chunks\":[]"),
		  "chunk_size: expected an integer" },
		{ "{\"format\":\"rackboot-image/1\",\"name\":\"../"
		  "x\",\"version\":\"1\",\"disk_size\":512,"
		  "\"chunk_size\":4096,\"created\":1,\"source_sha256\":\"" H "\"," PACKS
		  ",\"chunks\":[]}",
		  "name: must match" },
		{ "{\"format\":\"rackboot-image/"
		  "1\",\"name\":\"..\",\"version\":\"1\",\"disk_size\":512,"
		  "\"chunk_size\":4096,\"created\":1,\"source_sha256\":\"" H "\"," PACKS
		  ",\"chunks\":[]}",
		  "name: must match" },
		{ "{\"format\":\"rackboot-image/1\",\"name\":\"d\",\"version\":\"1 "
		  "2\",\"disk_size\":512,"
		  "\"chunk_size\":4096,\"created\":1,\"source_sha256\":\"" H "\"," PACKS
		  ",\"chunks\":[]}",
		  "version: must match" },
		{ "{\"format\":\"rackboot-image/"
		  "1\",\"name\":\"d\",\"version\":\"1\",\"disk_size\":512,"
		  "\"chunk_size\":4096,\"created\":1,\"source_sha256\":\"" H "0\"," PACKS
		  ",\"chunks\":[]}",
		  "source_sha256: longer than 64" },
		{ "{\"format\":\"rackboot-image/"
		  "1\",\"name\":\"d\",\"version\":\"1\",\"disk_size\":512,"
		  "\"chunk_size\":4096,\"created\":1,\"source_sha256\":"
		  "\"00112233445566778899AABBCCDDEEFF00112233445566778899aabbccddeeff\"," PACKS
		  ",\"chunks\":[]}",
		  "source_sha256: not 64 lowercase hex" },
		{ "{\"format\":\"rackboot-image/"
		  "1\",\"name\":\"d\",\"version\":\"1\",\"disk_size\":512,"
		  "\"chunk_size\":4096,\"source_sha256\":\"" H "\"," PACKS ",\"chunks\":[]}",
		  "created: missing field" },
		{ M(HDR ",\"chunks\":[]"), "packs: missing field" },
		{ M(HDR ",\"packs\":{},\"chunks\":[]"), "packs: expected an array" },
		{ M(HDR ",\"packs\":[{\"id\":\"" H "x\",\"size\":1}],\"chunks\":[]"),
		  "packs[0].id: longer than 64" },
		{ M(HDR ",\"packs\":[{\"id\":\"" H "\"}],\"chunks\":[]"),
		  "packs[0].size: missing field" },
		{ M(HDR ",\"packs\":[{\"id\":\"" H "\",\"size\":0}],\"chunks\":[]"),
		  "packs[0].size: 0 out of range" },
		{ M(HDR ",\"packs\":[{\"id\":\"" H2 "\",\"size\":5},{\"id\":\"" H2
		        "\",\"size\":5}],\"chunks\":[]"),
		  "packs[1].id: duplicate of packs[0]" },
		{ M(HDR "," PACKS), "chunks: missing field" },
		{ STD(CH(65536, 65536, 0, 0, 10) "," CH(0, 65536, 0, 0, 10)),
		  "chunks[1].offset: 0 overlaps or precedes chunks[0]" },
		{ STD(CH(0, 65536, 0, 0, 10) "," CH(0, 65536, 0, 0, 10)),
		  "chunks[1].offset: 0 overlaps or precedes" },
		{ STD(CH(4096, 65536, 0, 0, 10)), "chunks[0].offset: 4096 is not a multiple" },
		{ STD(CH(1048576, 65536, 0, 0, 10)),
		  "chunks[0].offset: 1048576 is past disk_size" },
		{ M(HDR_("1049088", "65536") "," PACKS
		                             ",\"chunks\":[" CH(1048576, 65536, 0, 0, 9) "]"),
		  "chunks[0].length: chunk ends at 1114112, past disk_size" },
		{ STD(CH(0, 4096, 0, 0, 10)), "chunks[0].length: 4096 is short" },
		{ STD(CH(0, 0, 0, 0, 10)), "chunks[0].length: 0 not in" },
		{ STD(CH(0, 65537, 0, 0, 10)), "chunks[0].length: 65537 not in" },
		{ STD(CH(0, 65536, 1, 0, 10)), "chunks[0].pack: index 1 but 1 packs" },
		{ STD(CH(0, 65536, 0, 0, 10) "," CH(65536, 65536, 0, 995, 10)),
		  "chunks[1].pack_offset: 995+10 is past the end of packs[0]" },
		{ STD(CH(0, 65536, 0, 18446744073709551615, 10)), "not JSON" }, /* > json_int_t */
		{ STD(CH(0, 65536, 0, 0, 0)), "chunks[0].stored_length: 0 not in" },
		{ STD(CH(0, 65536, 0, 0, 70000)), "chunks[0].stored_length: 70000 not in" },
		{ STD(CH(0, 65536, 0, 0, 4294967296)),
		  "chunks[0].stored_length: 4294967296 out of" },
		{ STD(CH(-65536, 65536, 0, 0, 10)), "chunks[0].offset: -65536 out of range" },
		{ STD("[0,65536,\"" H "\",0,0]"), "chunks[0]: expected [offset, length" },
		{ STD("{}"), "chunks[0]: expected [offset, length" },
		{ STD("[0,65536,\"" H2 "0\",0,0,10]"), "chunks[0].sha256: not 64 lowercase hex" },
		{ STD("[0,65536,"
		      "\"zz112233445566778899aabbccddeeff00112233445566778899aabbccddeeff\","
		      "0,0,10]"),
		  "chunks[0].sha256: not 64 lowercase hex" },
		{ STD("[0,65536,7,0,0,10]"), "chunks[0].sha256: not 64 lowercase hex" },
		{ STD("[0,\"65536\",\"" H "\",0,0,10]"), "chunks[0].length: expected an integer" },
		/* more chunks than disk_size/chunk_size allows, refused before allocating */
		{ M(HDR_("65536", "65536") "," PACKS ",\"chunks\":[" CH(0, 65536, 0, 0, 1) "," CH(
		          65536, 65536, 0, 1, 1) "]"),
		  "chunks: 2 entries, more than disk_size/chunk_size allows" },
		{ M(HDR ",\"partitions\":{\"table\":\"zfs\",\"entries\":[]}," PACKS
		        ",\"chunks\":[]"),
		  "partitions.table: must be" },
		{ M(HDR ",\"partitions\":{\"table\":\"mbr\"}," PACKS ",\"chunks\":[]"),
		  "partitions.entries: missing field" },
		{ M(HDR ",\"partitions\":{\"table\":\"mbr\",\"entries\":[{\"index\":1,\"start\":"
		        "1048576,"
		        "\"size\":1048576,\"type\":\"0x83\",\"name\":\"\"}]}," PACKS
		        ",\"chunks\":[]"),
		  "partitions.entries[0]: ends past disk_size" },
		{ M(HDR ",\"partitions\":{\"table\":\"mbr\",\"entries\":[{\"index\":1,\"start\":0,"
		        "\"size\":512,\"type\":\"0x83\",\"name\":\"a\\u001b[2J\"}]}," PACKS
		        ",\"chunks\":[]"),
		  "partitions.entries[0].name: not printable" },
		{ M(HDR ",\"partitions\":{\"table\":\"mbr\",\"entries\":[{\"index\":1,\"start\":0,"
		        "\"size\":512,\"name\":\"a\"}]}," PACKS ",\"chunks\":[]"),
		  "partitions.entries[0].type: missing field" },
	};

	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		struct img_manifest *m = (struct img_manifest *)0x1;
		char err[256] = "";
		int r = img_manifest_parse(v[i].json, strlen(v[i].json), &m, err, sizeof(err));

		if (r != -EINVAL)
			fail_msg("vector %zu: r=%d (%s), expected -EINVAL", i, r, err);
		if (!strstr(err, v[i].msg))
			fail_msg("vector %zu: message \"%s\" lacks \"%s\"", i, err, v[i].msg);
		assert_ptr_equal(m, (struct img_manifest *)0x1); /* ret untouched */
	}
}

static void test_size_cap(void **state)
{
	struct img_manifest *m = NULL;
	char err[128] = "";

	/* The length is checked before a byte is read. */
	assert_int_equal(img_manifest_parse("{}", IMG_MANIFEST_MAX_SIZE + 1, &m, err, sizeof(err)),
	                 -EFBIG);
	assert_non_null(strstr(err, "byte limit"));
	assert_null(m);
}

static struct img_manifest *sample(size_t n_chunks)
{
	struct img_manifest *m;
	struct img_partition p = { .index = 1, .start = 1048576, .size = 4194304 };
	uint32_t pi, pj;

	assert_int_equal(img_manifest_new(&m), 0);
	memcpy(m->name, "debian12-gpu", 13);
	memcpy(m->version, "2026.11.27-1", 13);
	m->disk_size = 8589934592ULL;
	m->chunk_size = 65536;
	m->created = 1795796000;
	memcpy(m->source_sha256, H2, 65);
	memcpy(m->table, "gpt", 4);
	memcpy(p.type, "0FC63DAF-8483-4772-8E79-3D69D8477DE4", 37);
	memcpy(p.name, "root \"fs\" \xc3\xa9", 13); /* quotes and UTF-8 survive */
	assert_int_equal(img_manifest_add_partition(m, &p), 0);
	assert_int_equal(img_manifest_add_pack(m, H, 1ULL << 40, &pi), 0);
	assert_int_equal(img_manifest_add_pack(m, H2, 5000000, &pj), 0);
	assert_int_equal(img_manifest_add_pack(m, H, 1ULL << 40, &pi),
	                 0); /* existing: same index */
	assert_int_equal(pi, 0);
	assert_int_equal(pj, 1);
	assert_int_equal(img_manifest_add_pack(m, H, 7, &pi), -EINVAL); /* same id, other size */
	for (size_t i = 0; i < n_chunks; i++) {
		struct img_chunk c = {
			.offset = (uint64_t)i * 3 * 65536,
			.length = 65536,
			.pack = (uint32_t)(i % 2),
			.pack_offset = (uint64_t)(i / 2) * 100,
			.stored_len = 100,
		};

		for (size_t k = 0; k < 32; k++)
			c.sha256[k] = (uint8_t)(i * 7 + k);
		assert_int_equal(img_manifest_add_chunk(m, &c), 0);
	}
	return m;
}

static void assert_same(const struct img_manifest *a, const struct img_manifest *b)
{
	assert_string_equal(a->name, b->name);
	assert_string_equal(a->version, b->version);
	assert_true(a->disk_size == b->disk_size);
	assert_int_equal(a->chunk_size, b->chunk_size);
	assert_true(a->created == b->created);
	assert_string_equal(a->source_sha256, b->source_sha256);
	assert_string_equal(a->table, b->table);
	assert_int_equal(a->n_parts, b->n_parts);
	for (size_t i = 0; i < a->n_parts; i++) {
		assert_int_equal(a->parts[i].index, b->parts[i].index);
		assert_true(a->parts[i].start == b->parts[i].start);
		assert_true(a->parts[i].size == b->parts[i].size);
		assert_string_equal(a->parts[i].type, b->parts[i].type);
		assert_string_equal(a->parts[i].name, b->parts[i].name);
	}
	assert_int_equal(a->n_packs, b->n_packs);
	for (size_t i = 0; i < a->n_packs; i++) {
		assert_string_equal(a->packs[i].id, b->packs[i].id);
		assert_true(a->packs[i].size == b->packs[i].size);
	}
	assert_int_equal(a->n_chunks, b->n_chunks);
	for (size_t i = 0; i < a->n_chunks; i++) {
		const struct img_chunk *x = &a->chunks[i], *y = &b->chunks[i];

		assert_true(x->offset == y->offset);
		assert_int_equal(x->length, y->length);
		assert_memory_equal(x->sha256, y->sha256, 32);
		assert_int_equal(x->pack, y->pack);
		assert_true(x->pack_offset == y->pack_offset);
		assert_int_equal(x->stored_len, y->stored_len);
	}
}

static void test_round_trip(void **state)
{
	static const size_t counts[] = { 0, 1, 15, 16, 17, 1000 };

	for (size_t t = 0; t < sizeof(counts) / sizeof(counts[0]); t++) {
		struct img_manifest *m = sample(counts[t]), *back = NULL;
		char *s1 = NULL, *s2 = NULL, err[256] = "";
		size_t n1 = 0, n2 = 0;

		assert_int_equal(img_manifest_serialize(m, &s1, &n1), 0);
		assert_int_equal(strlen(s1), n1);
		/* keys in the spec's order, compact */
		assert_int_equal(
		        strncmp(s1,
		                "{\"format\":\"rackboot-image/1\",\"name\":\"debian12-gpu\","
		                "\"version\":\"2026.11.27-1\",\"disk_size\":8589934592,"
		                "\"chunk_size\":65536,\"created\":1795796000,",
		                strlen("{\"format\":\"rackboot-image/1\",\"name\":\"debian12-"
		                       "gpu\",\"version\":\"2026.11.27-1\",\"disk_size\":"
		                       "8589934592,\"chunk_size\":65536,\"created\":"
		                       "1795796000,")),
		        0);
		if (img_manifest_parse(s1, n1, &back, err, sizeof(err)) != 0)
			fail_msg("own output refused: %s", err);
		assert_same(m, back);
		assert_int_equal(img_manifest_serialize(back, &s2, &n2), 0);
		assert_int_equal(n1, n2);
		assert_memory_equal(s1, s2, n1);
		/* A parsed manifest can still grow (capacity rule shared). */
		for (size_t i = 0; i < 40; i++) {
			struct img_chunk c = { .offset = 8589934592ULL - 65536, .length = 65536 };

			assert_int_equal(img_manifest_add_chunk(back, &c), 0);
		}
		assert_int_equal(back->n_chunks, counts[t] + 40);
		free(s1);
		free(s2);
		img_manifest_free(m);
		img_manifest_free(back);
	}
}

static void test_stored_bytes(void **state)
{
	struct img_manifest *m = sample(10);

	/* 10 chunks of 100 stored bytes, all at distinct (pack, offset). */
	assert_true(img_manifest_stored_bytes(m) == 1000);
	assert_true(img_manifest_data_bytes(m) == 10 * 65536);
	/* chunk 2 now shares chunk 0's bytes */
	m->chunks[2].pack = m->chunks[0].pack;
	m->chunks[2].pack_offset = m->chunks[0].pack_offset;
	assert_true(img_manifest_stored_bytes(m) == 900);
	img_manifest_free(m);
}

/* source_sha256 from the chunk list equals the hash list of the raw disk
 * computed here the long way: 3 full pieces of 4 KiB + a 512-byte tail,
 * only piece 1 stored. */
static void test_source_hash(void **state)
{
	struct img_manifest *m;
	struct img_chunk c = { .offset = 4096, .length = 4096, .stored_len = 10 };
	uint8_t disk[3 * 4096 + 512] = { 0 }, list[4 * 32], want[32], got[32];
	uint32_t pi;

	(void)state;
	memset(disk + 4096, 'A', 4096);
	for (size_t i = 0; i < 4; i++)
		rb_sha256(disk + i * 4096, i < 3 ? 4096 : 512, list + i * 32);
	rb_sha256(list, sizeof(list), want);
	assert_int_equal(img_manifest_new(&m), 0);
	m->disk_size = sizeof(disk);
	m->chunk_size = 4096;
	assert_int_equal(img_manifest_add_pack(m, H, 100, &pi), 0);
	memcpy(c.sha256, list + 32, 32);
	assert_int_equal(img_manifest_add_chunk(m, &c), 0);
	assert_int_equal(img_manifest_source_hash(m, got), 0);
	assert_memory_equal(got, want, 32);
	/* A hostile size is refused, not hashed for hours. */
	m->disk_size = 1ULL << 50;
	assert_int_equal(img_manifest_source_hash(m, got), -E2BIG);
	img_manifest_free(m);
}

static void test_serialize_refuses_invalid(void **state)
{
	struct img_manifest *m = sample(3);
	char *s = (char *)0x1, err[256] = "";
	size_t n = 0;

	m->chunks[2].offset = m->chunks[1].offset; /* overlap */
	assert_int_equal(img_manifest_validate(m, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "chunks[2].offset"));
	assert_int_equal(img_manifest_serialize(m, &s, &n), -EINVAL);
	assert_ptr_equal(s, (char *)0x1);
	img_manifest_free(m);
	img_manifest_free(NULL);
}

static void test_names(void **state)
{
	static const struct {
		const char *s;
		bool ok;
	} v[] = {
		{ "debian12-gpu", true },
		{ "2026.11.27-1", true },
		{ "a+b_c", true },
		{ "", false },
		{ ".", false },
		{ "..", false },
		{ ".hidden", false },
		{ "a/b", false },
		{ "a b", false },
		{ "1234567890123456789012345678901234567890123456789012345678901234", true },
		{ "12345678901234567890123456789012345678901234567890123456789012345", false },
	};

	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++)
		if (img_name_is_valid(v[i].s) != v[i].ok)
			fail_msg("name \"%s\": expected %d", v[i].s, v[i].ok);
	assert_true(img_sha256_hex_is_valid(H));
	assert_false(img_sha256_hex_is_valid(H "0"));
	assert_false(img_sha256_hex_is_valid("00"));
	assert_false(img_sha256_hex_is_valid(NULL));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_accepts),
		cmocka_unit_test(test_rejects),
		cmocka_unit_test(test_size_cap),
		cmocka_unit_test(test_round_trip),
		cmocka_unit_test(test_stored_bytes),
		cmocka_unit_test(test_source_hash),
		cmocka_unit_test(test_serialize_refuses_invalid),
		cmocka_unit_test(test_names),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
