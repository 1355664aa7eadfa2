/* Package archives (.tar.zst with .rackboot/meta.json first) and their
 * listing in the signed catalogue. */
#pragma once
#include <stdbool.h>
#include <stddef.h>

#include "repo.h"

/* Builds out_path from the tree at dir and the metadata file meta_path:
 * {"name","version","arch","depends":[..],"conflicts":[..],
 *  "allow":["setuid","devices","fifos"],"reboot":true,
 *  "scripts":{"preinst|postinst|prerm|postrm": "FILE relative to META"}}.
 * allow (IMG_PKG_ALLOW_*) and reboot are added to meta's (the command
 * line's --allow, --reboot-required). A tree member that needs an allow
 * word the package lacks, or a socket, fails the build naming it. */
int img_pkg_build(const char *dir, const char *meta_path, const char *out_path, unsigned allow,
                  bool reboot, char *err, size_t errlen);

/* Copies each package into repo/pkgs/<name>_<version>_<arch>.tar.zst and
 * lists it (SHA-256, size) in the catalogue, re-signed with key. */
int img_pkg_index(struct img_repo *r, const struct rb_key *key, const char *const *paths, size_t n,
                  char *err, size_t errlen);
