/*
 * Customer identity: normalised identifiers, the links between them, and
 * the customers they form.
 *
 * An identifier is a kind (phone, email, chat, social, crm) and a
 * normalised value. Identifiers named together in one event, or in an
 * identity.link event, are linked; a customer is a connected set of linked
 * identifiers. The links themselves are kept (with the event that made
 * each), so identity.unlink can remove them and split a customer again:
 * merges are reversible. Every merge and split is recorded on the
 * customers concerned with the event that caused it.
 *
 * Lookups by identifier read one line of an index and then the identifier
 * itself (see struct cc_identity). A merge relabels the smaller
 * customer's identifiers; a split walks the links of one customer, which
 * [identity] max_identifiers bounds. Nothing here reads a clock or does
 * I/O; times come with the calls. Not thread-safe.
 */
#ifndef CC_IDENTITY_H
#define CC_IDENTITY_H

#include "cc.h"
#include "event.h"
#include "mem.h"

#include <stdbool.h>

/* Longest normalised value: the protocol's identifier limit. */
#define CC_IDENT_NORM_MAX CC_IDENT_MAX

/*
 * Normalises one identifier into out (cap bytes, at least
 * CC_IDENT_NORM_MAX). Phone numbers become E.164 ("+15551234567"):
 * punctuation and spaces go, a national number gets default_country (and
 * loses its trunk 0 outside country code 1), "00" and, for country code 1,
 * "011" mean an international number, "(0)" after a country code is
 * dropped, a "tel:" prefix is allowed. Email addresses are trimmed and
 * lower-cased ("Name <a@b.example>" gives "a@b.example", "mailto:" is
 * dropped). Social handles are "platform:handle", lower-cased, without an
 * "@" before the handle. Chat and CRM ids are kept as given.
 *
 * Returns the length, or -1 with *why pointing at a static reason: values
 * that cannot be normalised are refused, never guessed.
 */
int cc_ident_normalize(enum cc_ident_kind kind, struct cc_str in,
                       unsigned default_country, char *out, size_t cap,
                       const char **why);

/* "phone", "email", ... */
const char *cc_ident_kind_name(enum cc_ident_kind kind);

struct cc_customer;
struct cc_idnode;
struct cc_idlink;

/* One merge or split, as the customer remembers it. */
enum cc_idhist_kind { CC_IDH_MERGE, CC_IDH_SPLIT };

#define CC_IDHIST_MAX 8   /* entries each customer keeps, newest last */
#define CC_IDEVENT_MAX 64 /* bytes of a causing event id kept */

struct cc_idhist {
    int64_t ts;
    uint64_t other; /* the customer merged in or split off */
    uint8_t kind;   /* enum cc_idhist_kind */
    uint8_t event_len;
    char event[CC_IDEVENT_MAX];
};

struct cc_customer {
    uint64_t id;               /* shown as "cu-<id>" */
    struct cc_idnode *members; /* list through cc_idnode.cnext */
    uint32_t nmembers;
    uint32_t nhist;         /* merges and splits ever recorded */
    struct cc_idhist *hist; /* ring of CC_IDHIST_MAX, allocated at the
                               first merge or split */
    void *owner;            /* for the conversation layer */
};

struct cc_idnode {
    struct cc_customer *cust;
    struct cc_idnode *cnext; /* next member of cust */
    struct cc_idlink *links; /* links touching this node */
    uint32_t mark;           /* scratch for walks */
    uint16_t len;
    uint8_t kind;
    uint8_t nlinks; /* links on the list, saturating at 255 */
    char s[];       /* normalised value, NUL-terminated */
};

/* A link between two identifiers, listed on both. */
struct cc_idlink {
    struct cc_idnode *end[2];
    struct cc_idlink *next[2]; /* next link on end[0] / end[1] */
    int64_t ts;
    char *event; /* the id of the event that made it (a blob) */
    uint16_t event_len;
};

struct cc_identity_config {
    unsigned default_country; /* [identity] default_country */
    uint32_t max_identifiers; /* per customer */
    uint64_t max_total;       /* identifiers in all */
    uint64_t seed;
};

/*
 * The index: an open-addressed table of 8-byte slots, each an identifier's
 * address in its low 48 bits and 16 bits of its hash above them (0: empty).
 * A lookup starts at the slot its hash picks and steps to the next until
 * the identifier or an empty slot: with the table at most half full that is
 * usually the first line of slots, and a slot whose hash bits differ is
 * passed over without reading its identifier. Identifiers are never
 * removed one by one, so the table needs no tombstones.
 */
#define CC_IDSLOT_PTR ((UINT64_C(1) << 48) - 1)
#define CC_IDSLOT_TAG(h) ((h) & ~CC_IDSLOT_PTR)
/* Whether slot s carries the 16 bits of hash h. */
#define CC_IDSLOT_MATCH(s, h) ((((s) ^ (h)) >> 48) == 0)

/* The identifier a non-empty slot holds. */
static inline struct cc_idnode *
cc_idslot_node(uint64_t s) {
    return (struct cc_idnode *)(uintptr_t)(s & CC_IDSLOT_PTR);
}

struct cc_identity {
    struct cc_identity_config cfg;
    uint64_t *slots;
    uint64_t mask;
    uint64_t nodes, links, customers;
    uint64_t next_customer;
    uint64_t merges, splits, conflicts;
    uint64_t bytes; /* identifier nodes, event ids and histories */
    uint32_t walk;  /* current mark for walks */
    struct cc_pool cust_pool, link_pool;
    struct cc_blobs blobs;
    /* Called when a customer is about to disappear into another (merge:
     * from is merged into into) or is created by a split (split: fresh
     * split off from from). May be NULL. */
    void (*on_merge)(struct cc_identity *id, struct cc_customer *into,
                     struct cc_customer *from, void *arg);
    void (*on_split)(struct cc_identity *id, struct cc_customer *from,
                     struct cc_customer *fresh, void *arg);
    void *arg;
};

int cc_identity_init(struct cc_identity *id,
                     const struct cc_identity_config *cfg);
void cc_identity_fini(struct cc_identity *id);

/* The node of an already normalised identifier, or NULL. */
struct cc_idnode *cc_identity_find(const struct cc_identity *id,
                                   enum cc_ident_kind kind, struct cc_str norm);

/* The hash an identifier is filed under: compute it once, then prefetch
 * with it and pass it to the _hashed calls. */
uint64_t cc_identity_hash(const struct cc_identity *id, enum cc_ident_kind kind,
                          struct cc_str norm);
struct cc_idnode *cc_identity_find_hashed(const struct cc_identity *id,
                                          enum cc_ident_kind kind,
                                          struct cc_str norm, uint64_t h);

/* Start loading what a lookup of hash h reads: its first line of slots,
 * then (once that is in cache) the identifiers whose slots carry the hash's
 * bits; almost always one or none. */
static inline void
cc_identity_prefetch_slots(const struct cc_identity *id, uint64_t h) {
    __builtin_prefetch(&id->slots[h & id->mask]);
}
/* Once an identifier is in cache: start loading its first link, the one
 * cc_identity_resolve() checks first. */
static inline void
cc_identity_prefetch_links(const struct cc_idnode *n) {
    if (n->links != NULL)
        __builtin_prefetch(n->links);
}
static inline void
cc_identity_prefetch_node(const struct cc_identity *id, uint64_t h) {
    uint64_t i = h & id->mask, s;

    while ((s = id->slots[i]) != 0) {
        if (CC_IDSLOT_MATCH(s, h))
            __builtin_prefetch(cc_idslot_node(s));
        i = (i + 1) & id->mask;
    }
}

/* What cc_identity_resolve() did. */
struct cc_idresult {
    struct cc_customer *cust; /* the customer the identifiers belong to */
    uint32_t created;         /* identifiers seen for the first time */
    uint32_t merged;          /* customers merged into cust */
    bool conflict;            /* a merge was refused: too many identifiers */
    uint32_t conflict_size;   /* the size the merge would have made */
};

/*
 * Resolves a set of normalised identifiers seen together in one event:
 * creates unknown ones, links them all (one link per new pair) and merges
 * the customers they belonged to. A merge that would give one customer
 * more than max_identifiers is refused: the identifiers stay apart,
 * res->conflict is set, and res->cust is the customer of the first
 * identifier. Returns 0, or CC_ENOMEM / CC_ELIMIT (max_total) with nothing
 * changed.
 */
int cc_identity_resolve(struct cc_identity *id, const uint8_t *kinds,
                        const struct cc_str *norm, uint32_t n,
                        struct cc_str event, int64_t ts,
                        struct cc_idresult *res);

/* The same with each identifier's hash from cc_identity_hash(). */
int cc_identity_resolve_hashed(struct cc_identity *id, const uint8_t *kinds,
                               const struct cc_str *norm, const uint64_t *h,
                               uint32_t n, struct cc_str event, int64_t ts,
                               struct cc_idresult *res);

/*
 * Removes the direct links between the named identifiers (all pairs among
 * them). Customers split where no path of other links remains. Returns the
 * number of links removed; *splits counts the customers created.
 */
uint32_t cc_identity_unlink(struct cc_identity *id, const uint8_t *kinds,
                            const struct cc_str *norm, uint32_t n,
                            struct cc_str event, int64_t ts, uint32_t *splits);

/* Memory held by the identity store, in bytes. */
uint64_t cc_identity_bytes(const struct cc_identity *id);

/*
 * Snapshot support: a store rebuilt piece by piece, every piece counted as
 * the calls above count it. Each returns CC_ENOMEM with nothing changed.
 *
 * A customer numbered cid (next_customer is the caller's to set).
 */
int cc_identity_restore_customer(struct cc_identity *id, uint64_t cid,
                                 struct cc_customer **out);
/* The customer's ring of merges and splits, zeroed. */
int cc_identity_restore_hist(struct cc_identity *id, struct cc_customer *c);
/* An identifier (normalised already) made a member of c, at the head of
 * its members. CC_EEXIST when the store holds it already, CC_ELIMIT when it
 * holds max_total identifiers. */
int cc_identity_restore_node(struct cc_identity *id, struct cc_customer *c,
                             enum cc_ident_kind kind, struct cc_str norm,
                             struct cc_idnode **out);
/* A link from a to b made by event at ts, at the head of both lists. */
int cc_identity_restore_link(struct cc_identity *id, struct cc_idnode *a,
                             struct cc_idnode *b, struct cc_str event,
                             int64_t ts, struct cc_idlink **out);

#endif
