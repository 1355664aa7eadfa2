/* The full-DHCP address pool and its persistence.
 *
 * Owns: an array with one slot per pool address (indexed by address minus
 * pool_start), an open-addressing hash from MAC to slot, and the copy of the
 * static reservations with their own lease state. A slot "owns" a MAC while
 * it is offered, bound, or released-but-remembered, so a client that comes
 * back gets the same address; the hash maps exactly the owning MACs.
 * Reserved pool addresses are never handed out dynamically.
 * Persistence is a small text file rewritten whole and atomically (write
 * temp, fsync, rename, fsync dir); the caller decides when (batched, never
 * per packet on the hot path).
 * Must never: allocate per packet (except a rare rehash), or do I/O outside
 * lease_pool_save/load. */
#include "pxe/leases.h"

#include "common/log.h"
#include "common/util.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define POOL_MAX (1u << 20)

enum slot_state {
	SLOT_FREE,     /* never used or fully forgotten */
	SLOT_OFFERED,  /* owned; held until expires */
	SLOT_BOUND,    /* owned; leased until expires, then reclaimable */
	SLOT_RELEASED, /* owned (remembered) but free for anyone */
	SLOT_DECLINED, /* no owner, out of use until expires */
	SLOT_RESERVED, /* a static reservation's address: never dynamic */
};

struct slot {
	uint8_t mac[6];
	uint8_t state;
	int64_t expires;
};

enum { ENT_EMPTY, ENT_LIVE, ENT_TOMB };

struct mac_ent {
	uint8_t mac[6];
	uint8_t used;
	uint32_t val;
};

struct mac_map {
	struct mac_ent *ents;
	uint32_t cap; /* power of two */
	uint32_t live, tombs;
};

struct reservation {
	struct rb_dhcp_host host;
	bool bound;
	int64_t expires;
};

struct lease_pool {
	uint32_t start, size; /* host order */
	struct slot *slots;
	struct mac_map map; /* MAC -> slot index */
	struct reservation *res;
	size_t n_res;
	struct mac_map res_map; /* MAC -> reservation index */
	uint32_t cursor;
	bool dirty;
};

static uint32_t mac_hash(const uint8_t m[6])
{
	uint64_t v = ((uint64_t)m[0] << 40) | ((uint64_t)m[1] << 32) | ((uint64_t)m[2] << 24) |
	             ((uint64_t)m[3] << 16) | ((uint64_t)m[4] << 8) | m[5];

	v *= 0x9E3779B97F4A7C15ull;
	return (uint32_t)(v >> 32);
}

static int map_init(struct mac_map *m, size_t want)
{
	uint32_t cap = 64;

	while (cap < want * 2)
		cap <<= 1;
	m->ents = calloc(cap, sizeof(*m->ents));
	if (!m->ents)
		return -ENOMEM;
	m->cap = cap;
	m->live = m->tombs = 0;
	return 0;
}

static struct mac_ent *map_find(const struct mac_map *m, const uint8_t mac[6])
{
	uint32_t mask = m->cap - 1, i = mac_hash(mac) & mask;

	for (uint32_t n = 0; n < m->cap; n++, i = (i + 1) & mask) {
		struct mac_ent *e = &m->ents[i];

		if (e->used == ENT_EMPTY)
			return NULL;
		if (e->used == ENT_LIVE && memcmp(e->mac, mac, 6) == 0)
			return e;
	}
	return NULL;
}

static void map_del(struct mac_map *m, const uint8_t mac[6])
{
	struct mac_ent *e = map_find(m, mac);

	if (e) {
		e->used = ENT_TOMB;
		m->live--;
		m->tombs++;
	}
}

/* Rebuilds the table without tombstones (rare: amortised over many deletes). */
static int map_rehash(struct mac_map *m)
{
	struct mac_ent *old = m->ents;
	uint32_t oldcap = m->cap, mask = m->cap - 1;

	m->ents = calloc(m->cap, sizeof(*m->ents));
	if (!m->ents) {
		m->ents = old;
		return -ENOMEM;
	}
	m->live = m->tombs = 0;
	for (uint32_t j = 0; j < oldcap; j++) {
		uint32_t i;

		if (old[j].used != ENT_LIVE)
			continue;
		i = mac_hash(old[j].mac) & mask;
		while (m->ents[i].used != ENT_EMPTY)
			i = (i + 1) & mask;
		m->ents[i] = old[j];
		m->live++;
	}
	free(old);
	return 0;
}

static int map_put(struct mac_map *m, const uint8_t mac[6], uint32_t val)
{
	struct mac_ent *e = map_find(m, mac);
	uint32_t mask = m->cap - 1, i;

	if (e) {
		e->val = val;
		return 0;
	}
	if ((m->live + m->tombs + 1) * 4 > m->cap * 3) {
		if (map_rehash(m) < 0 || (m->live + 1) * 4 > m->cap * 3)
			return -ENOMEM;
	}
	i = mac_hash(mac) & mask;
	while (m->ents[i].used == ENT_LIVE)
		i = (i + 1) & mask;
	if (m->ents[i].used == ENT_TOMB)
		m->tombs--;
	memcpy(m->ents[i].mac, mac, 6);
	m->ents[i].used = ENT_LIVE;
	m->ents[i].val = val;
	m->live++;
	return 0;
}

static bool slot_owned(const struct slot *s)
{
	return s->state == SLOT_OFFERED || s->state == SLOT_BOUND || s->state == SLOT_RELEASED;
}

/* May anyone take slot s now? */
static bool slot_takeable(const struct slot *s, int64_t now)
{
	switch (s->state) {
	case SLOT_FREE:
	case SLOT_RELEASED:
		return true;
	case SLOT_OFFERED:
	case SLOT_BOUND:
	case SLOT_DECLINED:
		return s->expires <= now;
	default:
		return false;
	}
}

static bool in_pool(const struct lease_pool *p, struct in_addr a, uint32_t *ret_idx)
{
	uint32_t h = ntohl(a.s_addr);

	if (h < p->start || h - p->start >= p->size)
		return false;
	*ret_idx = h - p->start;
	return true;
}

static struct in_addr slot_addr(const struct lease_pool *p, uint32_t i)
{
	struct in_addr a = { .s_addr = htonl(p->start + i) };

	return a;
}

static struct reservation *res_find(const struct lease_pool *p, const uint8_t mac[6])
{
	struct mac_ent *e = map_find(&p->res_map, mac);

	return e ? &p->res[e->val] : NULL;
}

static struct reservation *res_find_addr(const struct lease_pool *p, struct in_addr a)
{
	for (size_t i = 0; i < p->n_res; i++)
		if (p->res[i].host.addr.s_addr == a.s_addr)
			return &p->res[i];
	return NULL;
}

/* Gives slot i to mac, taking it from its previous owner. */
static int slot_take(struct lease_pool *p, uint32_t i, const uint8_t mac[6])
{
	struct slot *s = &p->slots[i];
	struct mac_ent *e;

	if (slot_owned(s) && memcmp(s->mac, mac, 6) != 0)
		map_del(&p->map, s->mac);
	/* A client holds one dynamic address at a time. */
	e = map_find(&p->map, mac);
	if (e && e->val != i) {
		struct slot *o = &p->slots[e->val];

		if (o->state == SLOT_BOUND)
			p->dirty = true;
		o->state = SLOT_FREE;
	}
	memcpy(s->mac, mac, 6);
	return map_put(&p->map, mac, i);
}

int lease_pool_new(const struct rb_config *cfg, struct lease_pool **ret)
{
	uint32_t a = ntohl(cfg->pool_start.s_addr), b = ntohl(cfg->pool_end.s_addr);
	struct lease_pool *p;
	int r;

	if (!a || a > b || b - a >= POOL_MAX)
		return -EINVAL;
	p = calloc(1, sizeof(*p));
	if (!p)
		return -ENOMEM;
	p->start = a;
	p->size = b - a + 1;
	p->slots = calloc(p->size, sizeof(*p->slots));
	if (!p->slots) {
		r = -ENOMEM;
		goto err;
	}
	r = map_init(&p->map, p->size);
	if (r < 0)
		goto err;
	r = map_init(&p->res_map, cfg->n_hosts);
	if (r < 0)
		goto err;
	if (cfg->n_hosts) {
		p->res = calloc(cfg->n_hosts, sizeof(*p->res));
		if (!p->res) {
			r = -ENOMEM;
			goto err;
		}
	}
	for (size_t i = 0; i < cfg->n_hosts; i++) {
		uint32_t idx;

		/* first reservation for a MAC wins */
		if (map_find(&p->res_map, cfg->hosts[i].mac))
			continue;
		p->res[p->n_res].host = cfg->hosts[i];
		r = map_put(&p->res_map, cfg->hosts[i].mac, (uint32_t)p->n_res);
		if (r < 0)
			goto err;
		p->n_res++;
		if (in_pool(p, cfg->hosts[i].addr, &idx))
			p->slots[idx].state = SLOT_RESERVED;
	}
	*ret = p;
	return 0;
err:
	lease_pool_free(p);
	return r;
}

void lease_pool_free(struct lease_pool *p)
{
	if (!p)
		return;
	free(p->slots);
	free(p->map.ents);
	free(p->res_map.ents);
	free(p->res);
	free(p);
}

int lease_pool_offer(struct lease_pool *p, const uint8_t mac[6], const struct in_addr *requested,
                     int64_t now, struct in_addr *ret)
{
	struct reservation *rs = res_find(p, mac);
	struct mac_ent *e;
	uint32_t i;

	if (rs) {
		*ret = rs->host.addr;
		return 0;
	}
	e = map_find(&p->map, mac);
	if (e) {
		struct slot *s = &p->slots[e->val];

		if (!(s->state == SLOT_BOUND && s->expires > now)) {
			s->state = SLOT_OFFERED;
			s->expires = now + LEASE_OFFER_HOLD_S;
		}
		*ret = slot_addr(p, e->val);
		return 0;
	}
	if (requested && in_pool(p, *requested, &i) && slot_takeable(&p->slots[i], now))
		goto take;
	for (uint32_t n = 0; n < p->size; n++) {
		i = p->cursor;
		p->cursor = p->cursor + 1 < p->size ? p->cursor + 1 : 0;
		if (slot_takeable(&p->slots[i], now))
			goto take;
	}
	return -ENOSPC;
take:
	if (slot_take(p, i, mac) < 0)
		return -ENOMEM;
	p->slots[i].state = SLOT_OFFERED;
	p->slots[i].expires = now + LEASE_OFFER_HOLD_S;
	*ret = slot_addr(p, i);
	return 0;
}

int lease_pool_ack(struct lease_pool *p, const uint8_t mac[6], struct in_addr addr, int64_t now,
                   uint32_t lease_time)
{
	struct reservation *rs = res_find(p, mac);
	struct slot *s;
	uint32_t i;

	if (rs) {
		if (rs->host.addr.s_addr != addr.s_addr)
			return -EPERM;
		rs->bound = true;
		rs->expires = now + lease_time;
		p->dirty = true;
		return 0;
	}
	if (res_find_addr(p, addr))
		return -EPERM;
	if (!in_pool(p, addr, &i))
		return -EADDRNOTAVAIL;
	s = &p->slots[i];
	if (!(slot_owned(s) && memcmp(s->mac, mac, 6) == 0)) {
		if (!slot_takeable(s, now))
			return -EADDRINUSE;
		if (slot_take(p, i, mac) < 0)
			return -ENOMEM;
	}
	s->state = SLOT_BOUND;
	s->expires = now + lease_time;
	p->dirty = true;
	return 0;
}

int lease_pool_release(struct lease_pool *p, const uint8_t mac[6], struct in_addr addr)
{
	struct reservation *rs = res_find(p, mac);
	struct slot *s;
	uint32_t i;

	if (rs) {
		if (rs->host.addr.s_addr != addr.s_addr || !rs->bound)
			return -ENOENT;
		rs->bound = false;
		p->dirty = true;
		return 0;
	}
	if (!in_pool(p, addr, &i))
		return -ENOENT;
	s = &p->slots[i];
	if (!(s->state == SLOT_BOUND || s->state == SLOT_OFFERED) || memcmp(s->mac, mac, 6) != 0)
		return -ENOENT;
	if (s->state == SLOT_BOUND)
		p->dirty = true;
	s->state = SLOT_RELEASED;
	return 0;
}

int lease_pool_decline(struct lease_pool *p, const uint8_t mac[6], struct in_addr addr, int64_t now)
{
	struct slot *s;
	uint32_t i;

	if (!in_pool(p, addr, &i))
		return -ENOENT;
	s = &p->slots[i];
	if (!slot_owned(s) || memcmp(s->mac, mac, 6) != 0)
		return -ENOENT;
	if (s->state == SLOT_BOUND)
		p->dirty = true;
	map_del(&p->map, mac);
	s->state = SLOT_DECLINED;
	s->expires = now + LEASE_DECLINE_HOLD_S;
	return 0;
}

int lease_pool_lookup(const struct lease_pool *p, const uint8_t mac[6], struct lease_info *ret)
{
	struct reservation *rs = res_find(p, mac);
	struct lease_info li = { 0 };
	struct mac_ent *e;

	memcpy(li.mac, mac, 6);
	if (rs) {
		li.addr = rs->host.addr;
		li.expires = rs->expires;
		li.bound = rs->bound;
		li.reserved = true;
		*ret = li;
		return 0;
	}
	e = map_find(&p->map, mac);
	if (!e || p->slots[e->val].state == SLOT_RELEASED)
		return -ENOENT;
	li.addr = slot_addr(p, e->val);
	li.expires = p->slots[e->val].expires;
	li.bound = p->slots[e->val].state == SLOT_BOUND;
	*ret = li;
	return 0;
}

const char *lease_pool_hostname(const struct lease_pool *p, const uint8_t mac[6])
{
	struct reservation *rs = res_find(p, mac);

	return rs && rs->host.hostname[0] ? rs->host.hostname : NULL;
}

bool lease_pool_dirty(const struct lease_pool *p)
{
	return p->dirty;
}

static int write_line(FILE *f, const uint8_t mac[6], struct in_addr a, int64_t expires)
{
	char m[18], ip[INET_ADDRSTRLEN];

	rb_mac_format(mac, m);
	inet_ntop(AF_INET, &a, ip, sizeof(ip));
	return fprintf(f, "%s %s %lld\n", m, ip, (long long)expires) < 0 ? -EIO : 0;
}

int lease_pool_write(const struct lease_pool *p, FILE *f)
{
	if (fputs("# rackbootd DHCP leases: MAC address expiry (unix seconds)\n", f) < 0)
		return -EIO;
	for (size_t i = 0; i < p->n_res; i++)
		if (p->res[i].bound &&
		    write_line(f, p->res[i].host.mac, p->res[i].host.addr, p->res[i].expires) < 0)
			return -EIO;
	for (uint32_t i = 0; i < p->size; i++)
		if (p->slots[i].state == SLOT_BOUND &&
		    write_line(f, p->slots[i].mac, slot_addr(p, i), p->slots[i].expires) < 0)
			return -EIO;
	return 0;
}

/* Splits "MAC ADDR EXPIRES" in place; false if the shape is wrong. */
static bool split3(char *line, char *tok[3])
{
	char *s = line;

	for (int k = 0; k < 3; k++) {
		while (*s == ' ' || *s == '\t')
			s++;
		if (!*s)
			return false;
		tok[k] = s;
		while (*s && *s != ' ' && *s != '\t')
			s++;
		if (*s)
			*s++ = '\0';
	}
	while (*s == ' ' || *s == '\t')
		s++;
	return *s == '\0';
}

/* Applies one persisted lease; false if it no longer fits the config. */
static bool take_persisted(struct lease_pool *p, const uint8_t mac[6], struct in_addr a,
                           int64_t expires)
{
	struct reservation *rs = res_find(p, mac);
	uint32_t i;

	if (rs) {
		if (rs->host.addr.s_addr != a.s_addr)
			return false;
		rs->bound = true;
		rs->expires = expires;
		return true;
	}
	if (!in_pool(p, a, &i) || p->slots[i].state != SLOT_FREE || map_find(&p->map, mac))
		return false;
	if (slot_take(p, i, mac) < 0)
		return false;
	p->slots[i].state = SLOT_BOUND;
	p->slots[i].expires = expires;
	return true;
}

int lease_pool_read(struct lease_pool *p, FILE *f, unsigned *ret_skipped)
{
	char line[256];
	unsigned skipped = 0;
	int taken = 0;

	while (fgets(line, sizeof(line), f)) {
		size_t n = strlen(line);
		char *tok[3];
		uint8_t mac[6];
		struct in_addr a;
		long long exp;

		if (n && line[n - 1] == '\n')
			line[--n] = '\0';
		else if (!feof(f)) {
			/* overlong line: skip the rest of it */
			int c;

			while ((c = fgetc(f)) != EOF && c != '\n')
				;
			skipped++;
			continue;
		}
		if (n == 0 || line[0] == '#')
			continue;
		if (!split3(line, tok) || rb_mac_parse(tok[0], mac) < 0 ||
		    inet_pton(AF_INET, tok[1], &a) != 1 ||
		    rb_strtonum(tok[2], 0, INT64_MAX, &exp) < 0 ||
		    !take_persisted(p, mac, a, exp)) {
			skipped++;
			continue;
		}
		taken++;
	}
	if (ret_skipped)
		*ret_skipped = skipped;
	return taken;
}

int lease_pool_save(struct lease_pool *p, int dirfd, const char *name)
{
	char tmp[256];
	FILE *f;
	int fd, r;

	if (snprintf(tmp, sizeof(tmp), "%s.tmp", name) >= (int)sizeof(tmp))
		return -ENAMETOOLONG;
	fd = openat(dirfd, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0640);
	if (fd < 0)
		return -errno;
	f = fdopen(fd, "w");
	if (!f) {
		r = -errno;
		close(fd);
		goto err_unlink;
	}
	r = lease_pool_write(p, f);
	if (r == 0 && fflush(f) != 0)
		r = -errno;
	if (r == 0 && fsync(fileno(f)) < 0)
		r = -errno;
	if (fclose(f) != 0 && r == 0)
		r = -errno;
	if (r < 0)
		goto err_unlink;
	if (renameat(dirfd, tmp, dirfd, name) < 0) {
		r = -errno;
		goto err_unlink;
	}
	/* the rename itself must survive a crash */
	(void)fsync(dirfd);
	p->dirty = false;
	return 0;
err_unlink:
	unlinkat(dirfd, tmp, 0);
	return r;
}

int lease_pool_load(struct lease_pool *p, int dirfd, const char *name, unsigned *ret_skipped)
{
	FILE *f;
	int fd, n;

	fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return -errno;
	f = fdopen(fd, "r");
	if (!f) {
		n = -errno;
		close(fd);
		return n;
	}
	n = lease_pool_read(p, f, ret_skipped);
	fclose(f);
	p->dirty = false;
	return n;
}
