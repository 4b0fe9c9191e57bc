/*
 * Identifiers, links and customers. See identity.h.
 */
#include "identity.h"

#include <string.h>

static const char *const kind_names[CC_IDENT__COUNT] = {
    "phone", "email", "chat", "social", "crm"};

const char *
cc_ident_kind_name(enum cc_ident_kind kind) {
    return (unsigned)kind < CC_IDENT__COUNT ? kind_names[kind] : "unknown";
}

/* ---- normalisation ---------------------------------------------------- */

static inline bool
is_space(char c) {
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

static inline char
lower(char c) {
    return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
}

static struct cc_str
trim(struct cc_str s) {
    while (s.n > 0 && is_space(s.p[0])) {
        s.p++;
        s.n--;
    }
    while (s.n > 0 && is_space(s.p[s.n - 1]))
        s.n--;
    return s;
}

/* Drops a case-insensitive prefix such as "tel:" if s starts with it. */
static struct cc_str
drop_prefix(struct cc_str s, const char *prefix) {
    size_t i, n = strlen(prefix);
    if (s.n < n)
        return s;
    for (i = 0; i < n; i++) {
        if (lower(s.p[i]) != prefix[i])
            return s;
    }
    s.p += n;
    s.n -= (uint32_t)n;
    return s;
}

#define E164_MIN 7
#define E164_MAX 15

static int
norm_phone(struct cc_str in, unsigned country, char *out, size_t cap,
           const char **why) {
    char d[E164_MAX + 8];
    char ccs[8];
    size_t nd = 0, i, skip = 0, ncc;
    bool plus = false;

    /* The commonest form, already E.164 ('+' and 7 to 15 digits, nothing
     * else), is its own normal form: one pass to check it. */
    if (in.n >= 1 + E164_MIN && in.n <= 1 + E164_MAX && in.p[0] == '+' &&
        in.n + 1 <= cap) {
        for (i = 1; i < in.n && in.p[i] >= '0' && in.p[i] <= '9'; i++)
            ;
        if (i == in.n) {
            memcpy(out, in.p, in.n);
            out[in.n] = '\0';
            return (int)in.n;
        }
    }
    in = trim(drop_prefix(trim(in), "tel:"));
    for (i = 0; i < in.n; i++) {
        char c = in.p[i];
        if (c >= '0' && c <= '9') {
            if (nd == sizeof(d)) {
                *why = "too many digits for a phone number";
                return -1;
            }
            d[nd++] = c;
        } else if (c == '+') {
            if (nd != 0 || plus) {
                *why = "'+' may only start a phone number";
                return -1;
            }
            plus = true;
        } else if (c == '(' && i + 2 < in.n && in.p[i + 1] == '0' &&
                   in.p[i + 2] == ')' && nd != 0) {
            /* "+44 (0)20 ...": the trunk 0 written after the country
             * code, never dialled internationally. */
            i += 2;
        } else if (c == ' ' || c == '-' || c == '.' || c == '(' || c == ')' ||
                   c == '/' || c == '\t') {
            continue;
        } else {
            *why = "a phone number may hold only digits, spaces, '+', '-', "
                   "'.', '/' and parentheses (no letters or extensions)";
            return -1;
        }
    }
    if (nd == 0) {
        *why = "a phone number needs digits";
        return -1;
    }
    /* ncc: the length of the default country code the number needs, 0 for
     * an international number; ccs is filled only when it is used. */
    ncc = 1;
    if (plus) {
        ncc = 0;
    } else if (nd > 2 && d[0] == '0' && d[1] == '0') {
        skip = 2; /* the ITU international prefix */
        ncc = 0;
    } else if (country == 1 && nd > 3 && d[0] == '0' && d[1] == '1' &&
               d[2] == '1') {
        skip = 3; /* the North American international prefix */
        ncc = 0;
    } else if (country == 1) {
        if (nd == 11 && d[0] == '1') {
            ncc = 0; /* already has the country code */
        } else if (nd != 10) {
            *why = "a national number for country code 1 has 10 digits";
            return -1;
        }
    } else if (d[0] == '0') {
        skip = 1; /* the trunk prefix of a national number */
    }
    if (ncc != 0) {
        if (country == 0 || country > 999) {
            *why = "a national number needs a default country code of 1 to "
                   "999";
            return -1;
        }
        ncc = cc_fmt_u64(ccs, country);
    }
    if (ncc + nd - skip < E164_MIN || ncc + nd - skip > E164_MAX) {
        *why = "an E.164 number has 7 to 15 digits with its country code";
        return -1;
    }
    if (1 + ncc + nd - skip + 1 > cap) {
        *why = "too long";
        return -1;
    }
    out[0] = '+';
    memcpy(out + 1, ccs, ncc);
    memcpy(out + 1 + ncc, d + skip, nd - skip);
    out[1 + ncc + nd - skip] = '\0';
    return (int)(1 + ncc + nd - skip);
}

static int
norm_email(struct cc_str in, char *out, size_t cap, const char **why) {
    const char *lt, *gt;
    size_t i, at = 0, nat = 0;

    /* The commonest form, a bare address: checked and lower-cased in one
     * pass. Anything else (spaces, brackets, a display name, "mailto:",
     * not exactly one '@' with text on both sides) takes the full path
     * below, which also says what is wrong. */
    if (in.n != 0 && in.n + 1 <= cap) {
        for (i = 0; i < in.n; i++) {
            unsigned char c = (unsigned char)in.p[i];
            if (c == '@') {
                at = i;
                nat++;
            } else if (c <= ' ' || c == '<' || c == '>' || c == ',' ||
                       c == 127 || c == ':') {
                break;
            }
            out[i] = lower((char)c);
        }
        if (i == in.n && nat == 1 && at != 0 && at != in.n - 1) {
            out[in.n] = '\0';
            return (int)in.n;
        }
        at = nat = 0;
    }
    in = trim(in);
    lt = memchr(in.p, '<', in.n);
    if (lt != NULL) {
        /* "Jane Doe <jane@example.com>": the address is in the brackets. */
        gt = memchr(lt, '>', in.n - (size_t)(lt - in.p));
        if (gt == NULL) {
            *why = "an email address has '<' without '>'";
            return -1;
        }
        in.p = lt + 1;
        in.n = (uint32_t)(gt - lt - 1);
        in = trim(in);
    }
    in = drop_prefix(in, "mailto:");
    if (in.n == 0) {
        *why = "an email address is empty";
        return -1;
    }
    for (i = 0; i < in.n; i++) {
        unsigned char c = (unsigned char)in.p[i];
        if (c == '@') {
            at = i;
            nat++;
        } else if (c <= ' ' || c == '<' || c == '>' || c == ',' || c == 127) {
            *why = "an email address holds no spaces, commas, brackets or "
                   "control characters";
            return -1;
        }
    }
    if (nat != 1) {
        *why = "an email address has exactly one '@'";
        return -1;
    }
    if (at == 0 || at == in.n - 1) {
        *why = "an email address has text on both sides of '@'";
        return -1;
    }
    if (in.n + 1 > cap) {
        *why = "too long";
        return -1;
    }
    for (i = 0; i < in.n; i++)
        out[i] = lower(in.p[i]);
    out[in.n] = '\0';
    return (int)in.n;
}

static int
norm_social(struct cc_str in, char *out, size_t cap, const char **why) {
    const char *colon;
    size_t np, nh, i, o = 0;
    const char *h;

    in = trim(in);
    colon = memchr(in.p, ':', in.n);
    if (colon == NULL) {
        *why = "a social handle is 'platform:handle'";
        return -1;
    }
    np = (size_t)(colon - in.p);
    h = colon + 1;
    nh = in.n - np - 1;
    if (nh > 0 && h[0] == '@') {
        h++;
        nh--;
    }
    if (np == 0 || nh == 0) {
        *why = "a social handle is 'platform:handle', both non-empty";
        return -1;
    }
    if (np + 1 + nh + 1 > cap) {
        *why = "too long";
        return -1;
    }
    for (i = 0; i < np; i++) {
        char c = lower(in.p[i]);
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' ||
              c == '-' || c == '.')) {
            *why = "a social platform is letters, digits, '_', '-' or '.'";
            return -1;
        }
        out[o++] = c;
    }
    out[o++] = ':';
    for (i = 0; i < nh; i++) {
        unsigned char c = (unsigned char)h[i];
        if (c <= ' ' || c == 127) {
            *why = "a social handle holds no spaces or control characters";
            return -1;
        }
        out[o++] = lower((char)c);
    }
    out[o] = '\0';
    return (int)o;
}

int
cc_ident_normalize(enum cc_ident_kind kind, struct cc_str in,
                   unsigned default_country, char *out, size_t cap,
                   const char **why) {
    switch (kind) {
    case CC_IDENT_PHONE:
        return norm_phone(in, default_country, out, cap, why);
    case CC_IDENT_EMAIL:
        return norm_email(in, out, cap, why);
    case CC_IDENT_SOCIAL:
        return norm_social(in, out, cap, why);
    case CC_IDENT_CHAT:
    case CC_IDENT_CRM:
        if (in.n == 0) {
            *why = "an identifier is empty";
            return -1;
        }
        if ((size_t)in.n + 1 > cap) {
            *why = "too long";
            return -1;
        }
        memcpy(out, in.p, in.n);
        out[in.n] = '\0';
        return (int)in.n;
    default:
        *why = "unknown identifier kind";
        return -1;
    }
}

/* ---- the store -------------------------------------------------------- */

int
cc_identity_init(struct cc_identity *id, const struct cc_identity_config *cfg) {
    uint64_t nb = 16;

    memset(id, 0, sizeof(*id));
    id->cfg = *cfg;
    /* Sized once for twice the identifiers allowed, as the contact table
     * is: at most half full, so that a lookup's run of occupied slots
     * rarely leaves its first line (bench/README). */
    while (nb < 2 * cfg->max_total)
        nb <<= 1;
    id->slots = cc_alloc_table(nb * sizeof(*id->slots));
    if (id->slots == NULL)
        return CC_ENOMEM;
    id->mask = nb - 1;
    /* About 2 MiB per chunk, like every large pool. */
    cc_pool_init(&id->cust_pool, sizeof(struct cc_customer),
                 cc_pool_huge_chunk(sizeof(struct cc_customer)));
    cc_pool_init(&id->link_pool, sizeof(struct cc_idlink),
                 cc_pool_huge_chunk(sizeof(struct cc_idlink)));
    cc_blobs_init(&id->blobs);
    return 0;
}

static size_t
node_size(size_t len) {
    return sizeof(struct cc_idnode) + len + 1;
}

/* Files nd under hash h. The caller has checked that it is not there yet
 * and that the table has room (nodes < max_total, half the slots). */
static void
slot_put(struct cc_identity *id, struct cc_idnode *nd, uint64_t h) {
    uint64_t i = h & id->mask;

    /* User space addresses fit in 48 bits on the 64-bit systems we build
     * for (x86-64 and AArch64 without a larger address space asked for). */
    CC_ASSERT(((uintptr_t)nd & ~CC_IDSLOT_PTR) == 0);
    while (id->slots[i] != 0)
        i = (i + 1) & id->mask;
    id->slots[i] = CC_IDSLOT_TAG(h) | (uintptr_t)nd;
}

static void
link_free(struct cc_identity *id, struct cc_idlink *l) {
    if (l->event != NULL) {
        cc_blob_put(&id->blobs, l->event, l->event_len);
        id->bytes -= cc_blob_size(l->event_len);
    }
    cc_pool_put(&id->link_pool, l);
    id->links--;
}

static void
customer_free(struct cc_identity *id, struct cc_customer *c) {
    if (c->hist != NULL) {
        cc_free(c->hist, CC_IDHIST_MAX * sizeof(*c->hist));
        id->bytes -= CC_IDHIST_MAX * sizeof(*c->hist);
    }
    cc_pool_put(&id->cust_pool, c);
    id->customers--;
}

void
cc_identity_fini(struct cc_identity *id) {
    uint64_t i, k = 0, nlinks = id->links;
    struct cc_idnode *n;
    struct cc_idlink *l, **all;

    if (id->slots == NULL)
        return;
    /* A link sits on two lists: gather each once (from its first end),
     * then free them all. */
    all = nlinks ? cc_malloc(nlinks * sizeof(*all)) : NULL;
    CC_ASSERT(nlinks == 0 || all != NULL);
    for (i = 0; i <= id->mask; i++) {
        if (id->slots[i] == 0)
            continue;
        n = cc_idslot_node(id->slots[i]);
        for (l = n->links; l != NULL; l = l->next[l->end[0] == n ? 0 : 1])
            if (l->end[0] == n)
                all[k++] = l;
    }
    CC_ASSERT(k == nlinks);
    for (i = 0; i < k; i++)
        link_free(id, all[i]);
    cc_free(all, nlinks * sizeof(*all));
    /* Customers, once each: detach all members before freeing. */
    for (i = 0; i <= id->mask; i++) {
        struct cc_customer *c;
        struct cc_idnode *m;
        if (id->slots[i] == 0)
            continue;
        c = cc_idslot_node(id->slots[i])->cust;
        if (c == NULL)
            continue;
        for (m = c->members; m != NULL; m = m->cnext)
            m->cust = NULL;
        customer_free(id, c);
    }
    for (i = 0; i <= id->mask; i++) {
        if (id->slots[i] == 0)
            continue;
        n = cc_idslot_node(id->slots[i]);
        cc_blob_put(&id->blobs, n, node_size(n->len));
    }
    cc_blobs_fini(&id->blobs);
    cc_pool_fini(&id->link_pool);
    cc_pool_fini(&id->cust_pool);
    cc_free_table(id->slots, (id->mask + 1) * sizeof(*id->slots));
    memset(id, 0, sizeof(*id));
}

static inline uint64_t
ident_hash(const struct cc_identity *id, unsigned kind, const char *s,
           size_t n) {
    return cc_hash(s, n, id->cfg.seed + kind * 0x9e3779b97f4a7c15ULL);
}

static struct cc_idnode *
find_hashed(const struct cc_identity *id, unsigned kind, struct cc_str s,
            uint64_t h) {
    const uint64_t *slots = id->slots, mask = id->mask;
    uint64_t i = h & mask, slot;
    struct cc_idnode *n;

    while ((slot = slots[i]) != 0) {
        if (CC_IDSLOT_MATCH(slot, h)) {
            n = cc_idslot_node(slot);
            if (n->kind == kind && n->len == s.n && cc_bytes_eq(n->s, s.p, s.n))
                return n;
        }
        i = (i + 1) & mask;
    }
    return NULL;
}

struct cc_idnode *
cc_identity_find(const struct cc_identity *id, enum cc_ident_kind kind,
                 struct cc_str norm) {
    return find_hashed(id, kind, norm, ident_hash(id, kind, norm.p, norm.n));
}

uint64_t
cc_identity_hash(const struct cc_identity *id, enum cc_ident_kind kind,
                 struct cc_str norm) {
    return ident_hash(id, kind, norm.p, norm.n);
}

struct cc_idnode *
cc_identity_find_hashed(const struct cc_identity *id, enum cc_ident_kind kind,
                        struct cc_str norm, uint64_t h) {
    return find_hashed(id, kind, norm, h);
}

static struct cc_customer *
customer_new(struct cc_identity *id) {
    struct cc_customer *c = cc_pool_get(&id->cust_pool);
    if (c == NULL)
        return NULL;
    c->id = ++id->next_customer;
    id->customers++;
    return c;
}

static void
customer_add(struct cc_customer *c, struct cc_idnode *n) {
    n->cust = c;
    n->cnext = c->members;
    c->members = n;
    c->nmembers++;
}

static void
record(struct cc_identity *id, struct cc_customer *c, enum cc_idhist_kind k,
       uint64_t other, struct cc_str event, int64_t ts) {
    struct cc_idhist *h;

    if (c->hist == NULL) {
        c->hist = cc_calloc(CC_IDHIST_MAX, sizeof(*c->hist));
        if (c->hist == NULL)
            return; /* the merge stands; only its note is lost */
        id->bytes += CC_IDHIST_MAX * sizeof(*c->hist);
    }
    h = &c->hist[c->nhist % CC_IDHIST_MAX];
    h->ts = ts;
    h->other = other;
    h->kind = (uint8_t)k;
    h->event_len =
        (uint8_t)(event.n < CC_IDEVENT_MAX ? event.n : CC_IDEVENT_MAX);
    memcpy(h->event, event.p, h->event_len);
    c->nhist++;
}

/* The direct link between a and b, found on the shorter of their lists:
 * each link is a cache miss, and an identifier other than a customer's
 * first usually has one link. */
static struct cc_idlink *
link_between(const struct cc_idnode *a, const struct cc_idnode *b) {
    struct cc_idlink *l;
    if (b->nlinks < a->nlinks) {
        const struct cc_idnode *t = a;
        a = b;
        b = t;
    }
    for (l = a->links; l != NULL; l = l->next[l->end[0] == a ? 0 : 1]) {
        if (l->end[0] == b || l->end[1] == b)
            return l;
    }
    return NULL;
}

static int
link_new(struct cc_identity *id, struct cc_idnode *a, struct cc_idnode *b,
         struct cc_str event, int64_t ts) {
    struct cc_idlink *l = cc_pool_get(&id->link_pool);
    size_t en = event.n < CC_IDEVENT_MAX ? event.n : CC_IDEVENT_MAX;

    if (l == NULL)
        return CC_ENOMEM;
    if (en != 0) {
        l->event = cc_blob_get(&id->blobs, en);
        if (l->event == NULL) {
            cc_pool_put(&id->link_pool, l);
            return CC_ENOMEM;
        }
        memcpy(l->event, event.p, en);
        id->bytes += cc_blob_size(en);
    }
    l->event_len = (uint16_t)en;
    l->ts = ts;
    l->end[0] = a;
    l->end[1] = b;
    l->next[0] = a->links;
    a->links = l;
    l->next[1] = b->links;
    b->links = l;
    if (a->nlinks < UINT8_MAX)
        a->nlinks++;
    if (b->nlinks < UINT8_MAX)
        b->nlinks++;
    id->links++;
    return 0;
}

/* Takes l off the list of node n. A saturated count stays saturated: it
 * only chooses which list to search. */
static void
link_detach(struct cc_idnode *n, struct cc_idlink *l) {
    struct cc_idlink **pp = &n->links;
    while (*pp != l)
        pp = &(*pp)->next[(*pp)->end[0] == n ? 0 : 1];
    *pp = l->next[l->end[0] == n ? 0 : 1];
    if (n->nlinks != 0 && n->nlinks < UINT8_MAX)
        n->nlinks--;
}

/* Moves every member of from into into and frees from. */
static void
merge(struct cc_identity *id, struct cc_customer *into,
      struct cc_customer *from, struct cc_str event, int64_t ts) {
    struct cc_idnode *n, *next;

    if (id->on_merge != NULL)
        id->on_merge(id, into, from, id->arg);
    for (n = from->members; n != NULL; n = next) {
        next = n->cnext;
        customer_add(into, n);
    }
    record(id, into, CC_IDH_MERGE, from->id, event, ts);
    id->merges++;
    customer_free(id, from);
}

int
cc_identity_resolve(struct cc_identity *id, const uint8_t *kinds,
                    const struct cc_str *norm, uint32_t n, struct cc_str event,
                    int64_t ts, struct cc_idresult *res) {
    uint64_t h[CC_IDENT__COUNT * 2];
    uint32_t i;

    CC_ASSERT(n <= CC_ARRAY_SIZE(h));
    for (i = 0; i < n; i++)
        h[i] = ident_hash(id, kinds[i], norm[i].p, norm[i].n);
    return cc_identity_resolve_hashed(id, kinds, norm, h, n, event, ts, res);
}

int
cc_identity_resolve_hashed(struct cc_identity *id, const uint8_t *kinds,
                           const struct cc_str *norm, const uint64_t *h,
                           uint32_t n, struct cc_str event, int64_t ts,
                           struct cc_idresult *res) {
    struct cc_idnode *node[CC_IDENT__COUNT * 2];
    struct cc_customer *cust[CC_IDENT__COUNT * 2], *into = NULL;
    uint32_t i, j, ncust = 0, fresh = 0, total = 0;

    memset(res, 0, sizeof(*res));
    if (n == 0)
        return 0;
    CC_ASSERT(n <= CC_ARRAY_SIZE(node));
    for (i = 0; i < n; i++) {
        node[i] = find_hashed(id, kinds[i], norm[i], h[i]);
        if (node[i] == NULL) {
            /* The same identifier twice in one call counts once. */
            for (j = 0; j < i; j++) {
                if (kinds[j] == kinds[i] && cc_str_eqn(norm[j], norm[i]))
                    break;
            }
            if (j == i)
                fresh++;
            continue;
        }
        for (j = 0; j < ncust; j++) {
            if (cust[j] == node[i]->cust)
                break;
        }
        if (j == ncust) {
            cust[ncust++] = node[i]->cust;
            total += node[i]->cust->nmembers;
        }
    }
    if (id->nodes + fresh > id->cfg.max_total)
        return CC_ELIMIT;
    total += fresh;
    if (total > id->cfg.max_identifiers && !(ncust == 1 && fresh == 0)) {
        /* One bad link must not fuse thousands of customers: keep them
         * apart, and give the event the first identifier's customer. */
        res->conflict = true;
        res->conflict_size = total;
        id->conflicts++;
        n = 1;
        ncust = node[0] != NULL ? 1 : 0;
        if (ncust)
            cust[0] = node[0]->cust;
        fresh = node[0] == NULL;
    }
    /* The oldest customer survives a merge. */
    for (j = 0; j < ncust; j++) {
        if (into == NULL || cust[j]->id < into->id)
            into = cust[j];
    }
    if (into == NULL) {
        into = customer_new(id);
        if (into == NULL)
            return CC_ENOMEM;
    }
    for (i = 0; i < n; i++) {
        struct cc_idnode *nd;
        if (node[i] != NULL)
            continue;
        /* An identifier named twice in this call was created above. */
        nd = find_hashed(id, kinds[i], norm[i], h[i]);
        if (nd != NULL) {
            node[i] = nd;
            continue;
        }
        nd = cc_blob_get(&id->blobs, node_size(norm[i].n));
        if (nd == NULL)
            return CC_ENOMEM; /* what exists is consistent */
        memset(nd, 0, sizeof(*nd));
        nd->kind = kinds[i];
        nd->len = (uint16_t)norm[i].n;
        memcpy(nd->s, norm[i].p, norm[i].n);
        nd->s[norm[i].n] = '\0';
        slot_put(id, nd, h[i]);
        id->nodes++;
        id->bytes += cc_blob_size(node_size(nd->len));
        customer_add(into, nd);
        node[i] = nd;
        res->created++;
    }
    for (j = 0; j < ncust; j++) {
        if (cust[j] != into) {
            merge(id, into, cust[j], event, ts);
            res->merged++;
        }
    }
    /* A star of links from the first identifier: enough to keep them
     * connected, and unlink can name any pair. */
    for (i = 1; i < n; i++) {
        if (node[i] == node[0] || link_between(node[0], node[i]) != NULL)
            continue;
        if (link_new(id, node[0], node[i], event, ts) != 0)
            return CC_ENOMEM;
    }
    res->cust = into;
    return 0;
}

/* Marks every node reachable from start through links with mark, and
 * returns how many. */
static uint32_t
walk_mark(struct cc_idnode *start, uint32_t mark, struct cc_idnode **stack,
          uint32_t cap) {
    struct cc_idnode *n, *o;
    struct cc_idlink *l;
    uint32_t top = 0, seen = 1;

    start->mark = mark;
    stack[top++] = start;
    while (top > 0) {
        n = stack[--top];
        for (l = n->links; l != NULL; l = l->next[l->end[0] == n ? 0 : 1]) {
            o = l->end[0] == n ? l->end[1] : l->end[0];
            if (o->mark == mark)
                continue;
            o->mark = mark;
            CC_ASSERT(top < cap);
            stack[top++] = o;
            seen++;
        }
    }
    return seen;
}

/* A mark no node carries yet. When the counter wraps, old marks are
 * cleared so that none can pass for a new one. */
static uint32_t
next_mark(struct cc_identity *id) {
    uint64_t i;

    if (++id->walk == 0) {
        for (i = 0; i <= id->mask; i++)
            if (id->slots[i] != 0)
                cc_idslot_node(id->slots[i])->mark = 0;
        id->walk = 1;
    }
    return id->walk;
}

/* Adds the nodes of list that carry mark to into; returns the others, as a
 * list through cnext. */
static struct cc_idnode *
take_marked(struct cc_customer *into, struct cc_idnode *list, uint32_t mark) {
    struct cc_idnode *n, *next, *left = NULL;

    for (n = list; n != NULL; n = next) {
        next = n->cnext;
        if (n->mark == mark) {
            customer_add(into, n);
        } else {
            n->cnext = left;
            left = n;
        }
    }
    return left;
}

/* After links inside c were removed: splits c into its connected parts.
 * The part holding keep stays c. Returns how many customers were made. */
static uint32_t
split(struct cc_identity *id, struct cc_customer *c, struct cc_idnode *keep,
      struct cc_str event, int64_t ts) {
    struct cc_idnode **stack, *rest;
    uint32_t cap = c->nmembers, made = 0, mark;

    stack = cc_malloc(cap * sizeof(*stack));
    if (stack == NULL)
        return 0; /* still one customer; links are already gone */
    mark = next_mark(id);
    if (walk_mark(keep, mark, stack, cap) == c->nmembers) {
        cc_free(stack, cap * sizeof(*stack));
        return 0;
    }
    /* Keep the marked members in c; the rest form new customers. */
    rest = c->members;
    c->members = NULL;
    c->nmembers = 0;
    rest = take_marked(c, rest, mark);
    while (rest != NULL) {
        struct cc_customer *f = customer_new(id);
        if (f == NULL) {
            /* Out of memory: what remains stays with c. */
            while (rest != NULL) {
                struct cc_idnode *n = rest;
                rest = n->cnext;
                customer_add(c, n);
            }
            break;
        }
        mark = next_mark(id);
        walk_mark(rest, mark, stack, cap);
        rest = take_marked(f, rest, mark);
        record(id, c, CC_IDH_SPLIT, f->id, event, ts);
        record(id, f, CC_IDH_SPLIT, c->id, event, ts);
        id->splits++;
        made++;
        if (id->on_split != NULL)
            id->on_split(id, c, f, id->arg);
    }
    cc_free(stack, cap * sizeof(*stack));
    return made;
}

uint32_t
cc_identity_unlink(struct cc_identity *id, const uint8_t *kinds,
                   const struct cc_str *norm, uint32_t n, struct cc_str event,
                   int64_t ts, uint32_t *splits) {
    struct cc_idnode *node[CC_IDENT__COUNT * 2];
    struct cc_idlink *l;
    uint32_t i, j, k = 0, removed = 0;

    *splits = 0;
    CC_ASSERT(n <= CC_ARRAY_SIZE(node));
    for (i = 0; i < n; i++) {
        struct cc_idnode *nd = cc_identity_find(id, kinds[i], norm[i]);
        if (nd != NULL)
            node[k++] = nd;
    }
    for (i = 0; i < k; i++) {
        for (j = i + 1; j < k; j++) {
            if (node[i] == node[j])
                continue;
            l = link_between(node[i], node[j]);
            if (l == NULL)
                continue;
            link_detach(l->end[0], l);
            link_detach(l->end[1], l);
            link_free(id, l);
            removed++;
        }
    }
    if (removed == 0)
        return 0;
    /* Each named identifier's customer may have come apart. */
    for (i = 0; i < k; i++)
        *splits += split(id, node[i]->cust, node[i], event, ts);
    return removed;
}

uint64_t
cc_identity_bytes(const struct cc_identity *id) {
    return (id->mask + 1) * sizeof(*id->slots) +
           id->customers * sizeof(struct cc_customer) +
           id->links * sizeof(struct cc_idlink) + id->bytes;
}

/* ---- snapshot support ------------------------------------------------- */

int
cc_identity_restore_customer(struct cc_identity *id, uint64_t cid,
                             struct cc_customer **out) {
    struct cc_customer *c = cc_pool_get(&id->cust_pool);

    if (c == NULL)
        return CC_ENOMEM;
    c->id = cid;
    id->customers++;
    *out = c;
    return 0;
}

int
cc_identity_restore_hist(struct cc_identity *id, struct cc_customer *c) {
    c->hist = cc_calloc(CC_IDHIST_MAX, sizeof(*c->hist));
    if (c->hist == NULL)
        return CC_ENOMEM;
    id->bytes += CC_IDHIST_MAX * sizeof(*c->hist);
    return 0;
}

int
cc_identity_restore_node(struct cc_identity *id, struct cc_customer *c,
                         enum cc_ident_kind kind, struct cc_str norm,
                         struct cc_idnode **out) {
    uint64_t h = ident_hash(id, kind, norm.p, norm.n);
    struct cc_idnode *nd;

    if (find_hashed(id, kind, norm, h) != NULL)
        return CC_EEXIST;
    if (id->nodes >= id->cfg.max_total)
        return CC_ELIMIT; /* the index has room for no more */
    nd = cc_blob_get(&id->blobs, node_size(norm.n));
    if (nd == NULL)
        return CC_ENOMEM;
    memset(nd, 0, sizeof(*nd));
    nd->kind = (uint8_t)kind;
    nd->len = (uint16_t)norm.n;
    memcpy(nd->s, norm.p, norm.n);
    nd->s[norm.n] = '\0';
    slot_put(id, nd, h);
    id->nodes++;
    id->bytes += cc_blob_size(node_size(nd->len));
    customer_add(c, nd);
    *out = nd;
    return 0;
}

int
cc_identity_restore_link(struct cc_identity *id, struct cc_idnode *a,
                         struct cc_idnode *b, struct cc_str event, int64_t ts,
                         struct cc_idlink **out) {
    int rc = link_new(id, a, b, event, ts);

    if (rc != 0)
        return rc;
    *out = a->links;
    return 0;
}
