/* Ed25519 keys and signatures: key files and their modes, sign/verify, and
 * every way a signature must fail: wrong key, flipped byte in the data or
 * in the signature, truncated or malformed signature text. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "common/sha256.h"
#include "common/sign.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct fx {
	char dir[64];
	char priv_a[128], pub_a[128], priv_b[128], pub_b[128];
	struct rb_key *ka, *pa, *kb, *pb;
};

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));

	if (!f)
		return -1;
	snprintf(f->dir, sizeof(f->dir), "/tmp/rb-test-sign.XXXXXX");
	if (!mkdtemp(f->dir))
		return -1;
	snprintf(f->priv_a, sizeof(f->priv_a), "%s/a.key", f->dir);
	snprintf(f->pub_a, sizeof(f->pub_a), "%s/a.pub", f->dir);
	snprintf(f->priv_b, sizeof(f->priv_b), "%s/b.key", f->dir);
	snprintf(f->pub_b, sizeof(f->pub_b), "%s/b.pub", f->dir);
	if (rb_sign_keygen(f->priv_a, f->pub_a) < 0 || rb_sign_keygen(f->priv_b, f->pub_b) < 0 ||
	    rb_key_load_private(f->priv_a, &f->ka) < 0 ||
	    rb_key_load_public(f->pub_a, &f->pa) < 0 ||
	    rb_key_load_private(f->priv_b, &f->kb) < 0 || rb_key_load_public(f->pub_b, &f->pb) < 0)
		return -1;
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;
	const char *files[] = { f->priv_a, f->pub_a, f->priv_b, f->pub_b };

	rb_key_free(f->ka);
	rb_key_free(f->pa);
	rb_key_free(f->kb);
	rb_key_free(f->pb);
	for (size_t i = 0; i < 4; i++)
		unlink(files[i]);
	rmdir(f->dir);
	free(f);
	return 0;
}

static void read_head(const char *path, char *buf, size_t n)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	assert_true(fd >= 0);
	assert_int_equal(read(fd, buf, n), (ssize_t)n);
	close(fd);
}

static void test_keygen(void **state)
{
	struct fx *f = *state;
	struct stat st;
	char head[32];

	assert_int_equal(stat(f->priv_a, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	read_head(f->priv_a, head, 27);
	assert_memory_equal(head, "-----BEGIN PRIVATE KEY-----", 27); /* PKCS#8 */
	read_head(f->pub_a, head, 26);
	assert_memory_equal(head, "-----BEGIN PUBLIC KEY-----", 26); /* SPKI */
	/* Never overwrites, and leaves the existing key as it was. */
	assert_int_equal(rb_sign_keygen(f->priv_a, f->pub_a), -EEXIST);
	assert_int_equal(stat(f->priv_a, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	{
		char priv_c[160], pub_c[160];

		/* public path taken: no private key left behind */
		snprintf(priv_c, sizeof(priv_c), "%s/c.key", f->dir);
		assert_int_equal(rb_sign_keygen(priv_c, f->pub_a), -EEXIST);
		assert_int_equal(access(priv_c, F_OK), -1);
		/* private path taken */
		snprintf(pub_c, sizeof(pub_c), "%s/c.pub", f->dir);
		assert_int_equal(rb_sign_keygen(f->priv_b, pub_c), -EEXIST);
		assert_int_equal(access(pub_c, F_OK), -1);
	}
}

static void test_load_errors(void **state)
{
	struct fx *f = *state;
	struct rb_key *k = (struct rb_key *)0x1;
	char missing[160];

	snprintf(missing, sizeof(missing), "%s/missing.pub", f->dir);
	assert_int_equal(rb_key_load_public(missing, &k), -ENOENT);
	assert_int_equal(rb_key_load_public(f->priv_a, &k), -EINVAL); /* wrong kind of PEM */
	assert_int_equal(rb_key_load_private(f->pub_a, &k), -EINVAL);
	assert_int_equal(rb_key_load_public("/dev/null", &k), -EINVAL);
	assert_ptr_equal(k, (struct rb_key *)0x1);
	rb_key_free(NULL);
}

static void test_sign_verify(void **state)
{
	struct fx *f = *state;
	static const char data[] = "{\"format\":\"rackboot-image/1\"}";
	const struct rb_key *only_a[] = { f->pa }, *only_b[] = { f->pb },
	                    *both[] = { f->pb, f->pa };
	char sig[90], bad[90], data2[sizeof(data)];

	assert_int_equal(rb_sign(f->ka, data, strlen(data), sig), 0);
	assert_int_equal(strlen(sig), RB_SIG_TEXT_LEN);
	assert_int_equal(sig[88], '\n');
	assert_memory_equal(sig + 86, "==\n", 3);

	assert_int_equal(rb_verify(only_a, 1, data, strlen(data), sig, 89), 0);
	assert_int_equal(rb_verify(both, 2, data, strlen(data), sig, 89), 0);   /* any one */
	assert_int_equal(rb_verify(only_a, 1, data, strlen(data), sig, 88), 0); /* no final \n */
	/* wrong key, no key */
	assert_int_equal(rb_verify(only_b, 1, data, strlen(data), sig, 89), -EBADMSG);
	assert_int_equal(rb_verify(only_a, 0, data, strlen(data), sig, 89), -EBADMSG);
	/* flipped byte in data, every position */
	for (size_t i = 0; i < strlen(data); i++) {
		memcpy(data2, data, sizeof(data));
		data2[i] ^= 0x01;
		assert_int_equal(rb_verify(only_a, 1, data2, strlen(data), sig, 89), -EBADMSG);
	}
	/* data shorter by one byte */
	assert_int_equal(rb_verify(only_a, 1, data, strlen(data) - 1, sig, 89), -EBADMSG);
	/* flipped signature byte: in the decoded bytes (base64 char swapped)
	 * at every position that stays canonical base64 */
	for (size_t i = 0; i < 85; i++) {
		memcpy(bad, sig, sizeof(bad));
		bad[i] = bad[i] == 'A' ? 'B' : 'A';
		assert_int_equal(rb_verify(only_a, 1, data, strlen(data), bad, 89), -EBADMSG);
	}
	/* truncated */
	assert_int_equal(rb_verify(only_a, 1, data, strlen(data), sig, 87), -EINVAL);
	assert_int_equal(rb_verify(only_a, 1, data, strlen(data), sig, 0), -EINVAL);
	assert_int_equal(rb_verify(only_a, 1, data, strlen(data), NULL, 0), -EINVAL);
	/* malformed text: non-base64 char, missing padding, trailing junk */
	memcpy(bad, sig, sizeof(bad));
	bad[10] = '*';
	assert_int_equal(rb_verify(only_a, 1, data, strlen(data), bad, 89), -EINVAL);
	memcpy(bad, sig, sizeof(bad));
	bad[87] = 'A';
	assert_int_equal(rb_verify(only_a, 1, data, strlen(data), bad, 89), -EINVAL);
	memcpy(bad, sig, sizeof(bad));
	bad[88] = 'x';
	assert_int_equal(rb_verify(only_a, 1, data, strlen(data), bad, 89), -EINVAL);
	/* signing needs the private key */
	assert_int_equal(rb_sign(f->pa, data, strlen(data), bad), -EINVAL);
	/* the other key signs differently and verifies only with its own */
	assert_int_equal(rb_sign(f->kb, data, strlen(data), bad), 0);
	assert_string_not_equal(bad, sig);
	assert_int_equal(rb_verify(only_b, 1, data, strlen(data), bad, 89), 0);
	assert_int_equal(rb_verify(only_a, 1, data, strlen(data), bad, 89), -EBADMSG);
}

static void test_sha256(void **state)
{
	static const struct {
		const char *in, *hex;
	} v[] = {
		{ "", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855" },
		{ "abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad" },
	};
	uint8_t d[32], back[32];
	char hex[65];

	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		rb_sha256(v[i].in, strlen(v[i].in), d);
		rb_hex(d, 32, hex);
		assert_string_equal(hex, v[i].hex);
		assert_int_equal(rb_unhex(hex, back, 32), 0);
		assert_memory_equal(back, d, 32);
	}
	assert_int_equal(rb_unhex("0aFF", back, 2), 0);
	assert_int_equal(back[0], 0x0a);
	assert_int_equal(back[1], 0xff);
	assert_int_equal(rb_unhex("0aF", back, 2), -EINVAL);
	assert_int_equal(rb_unhex("0aFF0", back, 2), -EINVAL);
	assert_int_equal(rb_unhex("0g00", back, 2), -EINVAL);
	assert_int_equal(rb_unhex("", back, 0), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_keygen),
		cmocka_unit_test(test_load_errors),
		cmocka_unit_test(test_sign_verify),
		cmocka_unit_test(test_sha256),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
