/* Ed25519 key pairs and detached signatures, OpenSSL 3 EVP.
 *
 * Owns the EVP_PKEY inside struct rb_key. Key files are read whole (bounded
 * to RB_KEY_FILE_MAX) and parsed from memory so that a missing file gives a
 * real errno. The private key is created with O_CREAT|O_EXCL and mode 0600:
 * it never exists, even for an instant, with wider permissions, and an
 * existing key is never overwritten (losing a signing key is worse than an
 * error message). Signature text is strict base64 (canonical, "==" padding,
 * optional final "\n"): one signature has exactly one accepted text form.
 * Never logs. */
#include "common/sign.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#define RB_KEY_FILE_MAX (16 * 1024)
#define SIG_B64_LEN     88

struct rb_key {
	EVP_PKEY *pkey;
	bool is_private;
};

void rb_key_free(struct rb_key *k)
{
	if (!k)
		return;
	EVP_PKEY_free(k->pkey);
	free(k);
}

int rb_keys_load_public(const char *const *paths, size_t n, struct rb_key **keys, char *err,
                        size_t errlen)
{
	for (size_t i = 0; i < n; i++) {
		int e = rb_key_load_public(paths[i], &keys[i]);

		if (e < 0) {
			snprintf(err, errlen, "%s: %s", paths[i], strerror(-e));
			while (i > 0)
				rb_key_free(keys[--i]);
			return e;
		}
	}
	return 0;
}

/* Writes pkey as PEM (PKCS#8 private or SubjectPublicKeyInfo) into a new file. */
static int write_new_file(const char *path, mode_t mode, EVP_PKEY *pkey, bool priv)
{
	BIO *bio = NULL;
	char *pem;
	long pem_len;
	int fd, r;

	bio = BIO_new(BIO_s_mem());
	if (!bio)
		return -ENOMEM;
	if (priv)
		r = PEM_write_bio_PrivateKey(bio, pkey, NULL, NULL, 0, NULL, NULL);
	else
		r = PEM_write_bio_PUBKEY(bio, pkey);
	if (r != 1) {
		BIO_free(bio);
		return -EIO;
	}
	pem_len = BIO_get_mem_data(bio, &pem);

	fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, mode);
	if (fd < 0) {
		r = -errno;
		goto out;
	}
	for (long off = 0; off < pem_len;) {
		ssize_t n = write(fd, pem + off, (size_t)(pem_len - off));

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			r = n < 0 ? -errno : -EIO;
			goto err_unlink;
		}
		off += n;
	}
	if (fsync(fd) < 0) {
		r = -errno;
		goto err_unlink;
	}
	if (close(fd) < 0) {
		fd = -1;
		r = -errno;
		goto err_unlink;
	}
	r = 0;
	goto out;

err_unlink:
	if (fd >= 0)
		close(fd);
	unlink(path);
out:
	/* The private key's PEM was in this buffer: clear it before freeing. */
	OPENSSL_cleanse(pem, (size_t)pem_len);
	BIO_free(bio);
	return r;
}

int rb_sign_keygen(const char *priv_path, const char *pub_path)
{
	EVP_PKEY *pkey;
	struct stat st;
	int r;

	/* Check the public path first so that a clash there does not leave a
	 * fresh private key behind; O_EXCL below is the real guard. */
	if (lstat(pub_path, &st) == 0)
		return -EEXIST;
	pkey = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
	if (!pkey)
		return -EIO;
	r = write_new_file(priv_path, 0600, pkey, true);
	if (r < 0)
		goto out;
	r = write_new_file(pub_path, 0644, pkey, false);
	if (r < 0)
		unlink(priv_path);
out:
	EVP_PKEY_free(pkey);
	return r;
}

static int read_small_file(const char *path, char **ret, size_t *ret_len)
{
	struct stat st;
	char *buf;
	size_t len = 0;
	int fd, r;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) < 0) {
		r = -errno;
		goto err_close;
	}
	if (!S_ISREG(st.st_mode) || st.st_size > RB_KEY_FILE_MAX) {
		r = -EINVAL;
		goto err_close;
	}
	buf = malloc(RB_KEY_FILE_MAX + 1);
	if (!buf) {
		r = -ENOMEM;
		goto err_close;
	}
	for (;;) {
		ssize_t n = read(fd, buf + len, RB_KEY_FILE_MAX + 1 - len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			r = -errno;
			goto err_free;
		}
		if (n == 0)
			break;
		len += (size_t)n;
		if (len > RB_KEY_FILE_MAX) {
			r = -EINVAL;
			goto err_free;
		}
	}
	close(fd);
	*ret = buf;
	*ret_len = len;
	return 0;

err_free:
	OPENSSL_cleanse(buf, RB_KEY_FILE_MAX + 1);
	free(buf);
err_close:
	close(fd);
	return r;
}

static int key_load(const char *path, bool priv, struct rb_key **ret)
{
	struct rb_key *k;
	EVP_PKEY *pkey;
	BIO *bio;
	char *buf = NULL;
	size_t len = 0;
	int r;

	r = read_small_file(path, &buf, &len);
	if (r < 0)
		return r;
	bio = BIO_new_mem_buf(buf, (int)len);
	if (!bio) {
		r = -ENOMEM;
		goto out;
	}
	if (priv)
		pkey = PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL);
	else
		pkey = PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL);
	BIO_free(bio);
	if (!pkey) {
		r = -EINVAL;
		goto out;
	}
	if (EVP_PKEY_get_id(pkey) != EVP_PKEY_ED25519) {
		EVP_PKEY_free(pkey);
		r = -EINVAL;
		goto out;
	}
	k = calloc(1, sizeof(*k));
	if (!k) {
		EVP_PKEY_free(pkey);
		r = -ENOMEM;
		goto out;
	}
	k->pkey = pkey;
	k->is_private = priv;
	*ret = k;
	r = 0;
out:
	OPENSSL_cleanse(buf, len);
	free(buf);
	return r;
}

int rb_key_load_private(const char *path, struct rb_key **ret)
{
	return key_load(path, true, ret);
}

int rb_key_load_public(const char *path, struct rb_key **ret)
{
	return key_load(path, false, ret);
}

int rb_sign(const struct rb_key *priv, const void *data, size_t len, char ret_sig_text[90])
{
	unsigned char sig[RB_SIG_LEN];
	unsigned char b64[SIG_B64_LEN + 1];
	size_t sig_len = sizeof(sig);
	EVP_MD_CTX *ctx;
	int r = -EIO;

	if (!priv || !priv->is_private)
		return -EINVAL;
	ctx = EVP_MD_CTX_new();
	if (!ctx)
		return -ENOMEM;
	/* Ed25519 is "pure": no separate digest, hence NULL md and the one-shot
	 * EVP_DigestSign over the whole message. */
	if (EVP_DigestSignInit(ctx, NULL, NULL, NULL, priv->pkey) != 1)
		goto out;
	if (EVP_DigestSign(ctx, sig, &sig_len, data, len) != 1 || sig_len != RB_SIG_LEN)
		goto out;
	if (EVP_EncodeBlock(b64, sig, RB_SIG_LEN) != SIG_B64_LEN)
		goto out;
	memcpy(ret_sig_text, b64, SIG_B64_LEN);
	ret_sig_text[SIG_B64_LEN] = '\n';
	ret_sig_text[SIG_B64_LEN + 1] = '\0';
	r = 0;
out:
	EVP_MD_CTX_free(ctx);
	return r;
}

static bool is_b64(char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
	       c == '+' || c == '/';
}

/* Strict decoding of the 88-character form of a 64-byte value. */
static int sig_decode(const char *text, size_t len, unsigned char out[RB_SIG_LEN])
{
	unsigned char buf[SIG_B64_LEN];
	unsigned char check[SIG_B64_LEN + 1];

	if (len == SIG_B64_LEN + 1 && text[SIG_B64_LEN] == '\n')
		len--;
	if (len != SIG_B64_LEN)
		return -EINVAL;
	for (size_t i = 0; i < SIG_B64_LEN - 2; i++)
		if (!is_b64(text[i]))
			return -EINVAL;
	if (text[SIG_B64_LEN - 2] != '=' || text[SIG_B64_LEN - 1] != '=')
		return -EINVAL;
	/* 22 groups of 4 characters -> 66 bytes, the last 2 being padding. */
	if (EVP_DecodeBlock(buf, (const unsigned char *)text, SIG_B64_LEN) != 66)
		return -EINVAL;
	/* Canonical form only: re-encoding must give the same text (rejects
	 * stray low bits in the last character). */
	if (EVP_EncodeBlock(check, buf, RB_SIG_LEN) != SIG_B64_LEN ||
	    memcmp(check, text, SIG_B64_LEN) != 0)
		return -EINVAL;
	memcpy(out, buf, RB_SIG_LEN);
	return 0;
}

int rb_verify(const struct rb_key *const *pubs, size_t n_pubs, const void *data, size_t len,
              const char *sig_text, size_t sig_len)
{
	unsigned char sig[RB_SIG_LEN];
	int r;

	if (!sig_text)
		return -EINVAL;
	r = sig_decode(sig_text, sig_len, sig);
	if (r < 0)
		return r;
	for (size_t i = 0; i < n_pubs; i++) {
		EVP_MD_CTX *ctx;
		int ok;

		if (!pubs[i])
			continue;
		ctx = EVP_MD_CTX_new();
		if (!ctx)
			return -ENOMEM;
		ok = EVP_DigestVerifyInit(ctx, NULL, NULL, NULL, pubs[i]->pkey) == 1 &&
		     EVP_DigestVerify(ctx, sig, RB_SIG_LEN, data, len) == 1;
		EVP_MD_CTX_free(ctx);
		if (ok)
			return 0;
	}
	return -EBADMSG;
}
