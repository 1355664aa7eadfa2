/* Ed25519 keys and detached signatures (OpenSSL 3 EVP).
 * Private keys are PKCS#8 PEM (mode 0600), public keys SubjectPublicKeyInfo
 * PEM. A signature file is the base64 of the 64-byte signature plus "\n":
 * exactly RB_SIG_TEXT_LEN (89) bytes of text. */
#pragma once
#include <stddef.h>

#define RB_SIG_LEN      64
#define RB_SIG_TEXT_LEN 89 /* 88 base64 characters + "\n" */

/* Generates a key pair into priv_path (created 0600 with O_EXCL) and
 * pub_path. Refuses to overwrite either file: -EEXIST. On any failure
 * neither file is left behind. */
int rb_sign_keygen(const char *priv_path, const char *pub_path);

struct rb_key; /* opaque */

int rb_key_load_private(const char *path, struct rb_key **ret);
int rb_key_load_public(const char *path, struct rb_key **ret);
void rb_key_free(struct rb_key *k);
/* Loads n public keys into keys[0..n): all or none (on failure none is
 * left loaded). -errno with "PATH: reason" in err. */
int rb_keys_load_public(const char *const *paths, size_t n, struct rb_key **keys, char *err,
                        size_t errlen);

/* Signs data with a private key; writes base64 + "\n" + NUL (90 bytes). */
int rb_sign(const struct rb_key *priv, const void *data, size_t len, char ret_sig_text[90]);

/* Verifies sig_text (sig_len bytes, the signature file's content; a missing
 * final "\n" is tolerated) over data against each trusted public key.
 * 0 if any key verifies, -EBADMSG if none does (or n_pubs == 0), -EINVAL if
 * sig_text is not a well-formed signature. */
int rb_verify(const struct rb_key *const *pubs, size_t n_pubs, const void *data, size_t len,
              const char *sig_text, size_t sig_len);
