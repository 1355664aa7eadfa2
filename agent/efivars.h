/* efivars: the UEFI boot variables (BootOrder, Boot####, BootNext) read
 * and written through efivarfs, the way efibootmgr does it, so that an
 * installed node with no efibootmgr can still make its next boot a
 * network boot. See agent/efivars.c. */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define AGENT_EFIVARS_DIR     "/sys/firmware/efi/efivars"
#define AGENT_EFI_GLOBAL_GUID "8be4df61-93ca-11d2-aa0d-00e098032b8c"
/* A boot variable larger than this is not one: refused unread. */
#define AGENT_EFI_VAR_MAX (64 * 1024)
/* EFI_VARIABLE_NON_VOLATILE | BOOTSERVICE_ACCESS | RUNTIME_ACCESS */
#define AGENT_EFI_ATTRS_NV_BS_RT     0x7u
#define AGENT_EFI_LOAD_OPTION_ACTIVE 0x1u
#define AGENT_EFI_BOOT_ENTRIES_MAX   512

/* One EFI_LOAD_OPTION (a Boot#### variable's data, without efivarfs'
 * 4 attribute bytes), what the choice of a network entry needs. */
struct agent_efi_load_option {
	uint32_t attributes;
	char description[128]; /* printable ASCII, anything else '?', cut with "..." */
	char path[256];        /* FilePathList[0] in efibootmgr's notation, cut with "..." */
	bool has_mac;          /* a MAC node (type 3, subtype 11) in FilePathList[0] */
	uint8_t mac[6];
	bool ipv4, ipv6, uri; /* IPv4 (3/12), IPv6 (3/13), URI (3/24) nodes */
};

/* Parses an EFI_LOAD_OPTION: attributes, FilePathListLength, the
 * NUL-terminated UTF-16LE description, the device path list (every node's
 * length checked against what is left, known nodes against their size, the
 * list ending with an End Entire node exactly at FilePathListLength),
 * optional data (ignored). -EINVAL with what was wrong in err: nothing
 * is read outside data[0..len). */
int agent_efi_load_option_parse(const uint8_t *data, size_t len, struct agent_efi_load_option *ret,
                                char *err, size_t errlen);

/* One Boot#### as agent_efi_choose_netboot() sees it. */
struct agent_efi_boot_entry {
	uint16_t num;
	int order; /* position in BootOrder, -1 where BootOrder does not list it */
	struct agent_efi_load_option opt;
};

/* Picks the entry that boots this node from the network through the NIC
 * with mac, best first: a device path with this MAC and an IPv4 node (PXE
 * over IPv4), this MAC alone (a NIC ROM's own entry, iPXE), HTTP boot over
 * IPv4 (a URI node), IPv6 PXE, HTTP over IPv6; else an entry whose
 * description says PXE, Network or iPXE and names this MAC. Never an
 * entry of another NIC or of the application category; active entries
 * before inactive ones; a tie goes to the earlier in BootOrder. Writes
 * the index to *ret and the reason to why; -ENOENT (why says what there
 * was) if none fits. */
int agent_efi_choose_netboot(const struct agent_efi_boot_entry *entries, size_t n,
                             const uint8_t mac[6], size_t *ret, char *why, size_t whylen);

/* An efivarfs directory, opened (and mounted or remounted read-write if
 * need be) by agent_efivars_open(). */
struct agent_efivars;

/* dir NULL: the system's, AGENT_EFIVARS_DIR: -EOPNOTSUPP where there is
 * no /sys/firmware/efi (BIOS), efivarfs mounted there if it is not
 * (and remounted read-write for the write, read-only again after, if it
 * was mounted read-only). Any other dir is used as it is (tests: a
 * directory of files as efivarfs shows them). */
int agent_efivars_open(const char *dir, struct agent_efivars **ret, char *err, size_t errlen);
void agent_efivars_free(struct agent_efivars *v);

/* Reads variable name ("BootOrder-<guid>"): its attributes and data
 * (malloc'ed, at most AGENT_EFI_VAR_MAX bytes). -ENOENT if absent. */
int agent_efivars_read(struct agent_efivars *v, const char *name, uint32_t *ret_attrs,
                       uint8_t **ret_data, size_t *ret_len, char *err, size_t errlen);

/* BootNext = num: one write of 6 bytes (attributes NV|BS|RT, the number
 * little-endian), FS_IMMUTABLE_FL cleared first on an existing BootNext
 * (and set again after), then read back and compared. */
int agent_efivars_set_boot_next(struct agent_efivars *v, uint16_t num, char *err, size_t errlen);

/* Reads BootOrder and every Boot#### of v (at most
 * AGENT_EFI_BOOT_ENTRIES_MAX; those that do not parse are skipped and
 * named in skipped, if given). *ret is malloc'ed, sorted by BootOrder
 * then number. */
int agent_efivars_boot_entries(struct agent_efivars *v, struct agent_efi_boot_entry **ret,
                               size_t *ret_n, char *skipped, size_t skippedlen, char *err,
                               size_t errlen);

/* The whole job: open dir (see agent_efivars_open), choose the network
 * entry for mac, set BootNext to it (not with dry_run). msg says what was
 * done and why, e.g. "BootNext = Boot0003 (UEFI PXEv4 (MAC:525400E20022)),
 * written to efivarfs (...)", or what failed. 0 done, -EOPNOTSUPP BIOS,
 * -ENOENT no entry, other -errno. */
int agent_efi_netboot_next(const char *dir, const uint8_t mac[6], bool dry_run, char *msg,
                           size_t msglen);
