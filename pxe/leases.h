/* Full-DHCP address pool: which address a MAC gets, lease state and expiry,
 * static reservations, and the text form persisted to <state_dir>/dhcp.leases.
 * Lookups are O(1) (a MAC hash and an array indexed by pool offset); nothing
 * allocates per packet. Times are wall-clock unix seconds passed in by the
 * caller, so the logic is testable without a clock. Not thread-safe. */
#pragma once
#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "pxe/config.h"

struct lease_pool;

struct lease_info {
	uint8_t mac[6];
	struct in_addr addr;
	int64_t expires; /* unix seconds */
	bool bound;      /* ACKed (false: only offered) */
	bool reserved;   /* a static reservation (cfg->hosts) */
};

/* How long an offered address is held for the client's REQUEST. */
#define LEASE_OFFER_HOLD_S 60
/* How long a declined address (in use by someone else) stays out of use. */
#define LEASE_DECLINE_HOLD_S 600

/* Pool cfg->pool_start..pool_end (at most 1<<20 addresses) with the
 * reservations cfg->hosts. -EINVAL for an empty or reversed pool. */
int lease_pool_new(const struct rb_config *cfg, struct lease_pool **ret);
void lease_pool_free(struct lease_pool *p);

/* Address to OFFER to mac: its reservation, its current or remembered lease,
 * the requested address (NULL = none) if free, else the next free one; held
 * for LEASE_OFFER_HOLD_S. -ENOSPC when the pool is exhausted. */
int lease_pool_offer(struct lease_pool *p, const uint8_t mac[6], const struct in_addr *requested,
                     int64_t now, struct in_addr *ret);
/* Binds addr to mac for lease_time seconds (REQUEST). -EPERM: addr is
 * reserved for someone else or mac has a different reservation;
 * -EADDRINUSE: leased to another client; -EADDRNOTAVAIL: not one of ours.
 * Each of those is answered with a NAK. */
int lease_pool_ack(struct lease_pool *p, const uint8_t mac[6], struct in_addr addr, int64_t now,
                   uint32_t lease_time);
/* RELEASE: frees addr if mac holds it (the address is remembered for mac).
 * -ENOENT if it does not. */
int lease_pool_release(struct lease_pool *p, const uint8_t mac[6], struct in_addr addr);
/* DECLINE: addr is in use on the wire; keep it out of the pool for a while. */
int lease_pool_decline(struct lease_pool *p, const uint8_t mac[6], struct in_addr addr,
                       int64_t now);
/* Current lease of mac (bound or offered). -ENOENT if none. */
int lease_pool_lookup(const struct lease_pool *p, const uint8_t mac[6], struct lease_info *ret);
/* Hostname of mac's reservation, or NULL. */
const char *lease_pool_hostname(const struct lease_pool *p, const uint8_t mac[6]);

/* Changed since the last successful save (an ACK, RELEASE or load). */
bool lease_pool_dirty(const struct lease_pool *p);

/* Text form: "# comment" lines and "aa:bb:cc:dd:ee:ff 10.0.0.5 1700000000"
 * (MAC, address, expiry) per bound lease. */
int lease_pool_write(const struct lease_pool *p, FILE *f);
/* Reads the text form; lines that do not parse, or name an address that is
 * no longer in the pool or reserved for another MAC, are skipped (counted
 * in *ret_skipped when not NULL). Returns the number of leases taken. */
int lease_pool_read(struct lease_pool *p, FILE *f, unsigned *ret_skipped);

/* File I/O below the directory dirfd: save writes name.tmp, fsyncs it and
 * renames it over name (then fsyncs the directory); load reads name
 * (-ENOENT if it does not exist). Both clear the dirty flag on success. */
int lease_pool_save(struct lease_pool *p, int dirfd, const char *name);
int lease_pool_load(struct lease_pool *p, int dirfd, const char *name, unsigned *ret_skipped);
