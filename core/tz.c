/*
 * Time zones: TZif files (RFC 8536) and the POSIX TZ rule of their footer.
 * See tz.h.
 */
#include "tz.h"

#include "mem.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#define TZ_MAX_FILE (256 * 1024) /* the largest zone is about 4 KiB */
#define TZ_MAX_TIMES 4096
#define TZ_MAX_TYPES 256
#define DAY 86400

/* A date rule of the POSIX TZ string: Jn, n or Mm.w.d, and a time. */
struct tz_date {
    char kind; /* 'J' (1..365, no leap day), 'N' (0..365), 'M' */
    int n, m, w, d;
    int32_t time; /* seconds after local midnight, may be negative */
};

struct tz_rule {
    bool present, has_dst;
    int32_t std_off, dst_off; /* seconds east of UTC */
    struct tz_date start, end;
};

struct cc_tz {
    char name[CC_TZ_NAME_MAX];
    uint32_t ntimes;
    int64_t *times; /* transitions, ascending */
    int32_t *offs;  /* offset in force from times[i] on */
    int32_t first;  /* before the first transition */
    struct tz_rule rule;
};

int64_t
cc_days_from_civil(int64_t y, unsigned m, unsigned d) {
    int64_t era;
    unsigned yoe, doy, doe;

    y -= m <= 2;
    era = (y >= 0 ? y : y - 399) / 400;
    yoe = (unsigned)(y - era * 400);
    doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
    doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (int64_t)doe - 719468;
}

void
cc_civil_from_days(int64_t z, int64_t *y, unsigned *m, unsigned *d) {
    int64_t era;
    unsigned doe, yoe, doy, mp;

    z += 719468;
    era = (z >= 0 ? z : z - 146096) / 146097;
    doe = (unsigned)(z - era * 146097);
    yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    mp = (5 * doy + 2) / 153;
    *d = doy - (153 * mp + 2) / 5 + 1;
    *m = mp < 10 ? mp + 3 : mp - 9;
    *y = (int64_t)yoe + era * 400 + (*m <= 2);
}

static bool
leap(int64_t y) {
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

/* ---- the POSIX TZ string ------------------------------------------- */

/* A zone abbreviation: three or more letters, or <...>. */
static const char *
parse_abbr(const char *p) {
    const char *s = p;
    if (*p == '<') {
        while (*++p != '>')
            if (*p == '\0')
                return NULL;
        return p - s >= 4 ? p + 1 : NULL;
    }
    while ((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z'))
        p++;
    return p - s >= 3 ? p : NULL;
}

static const char *
parse_num(const char *p, int lo, int hi, int *out) {
    int v = 0, digits = 0;
    while (*p >= '0' && *p <= '9' && digits < 4) {
        v = v * 10 + (*p++ - '0');
        digits++;
    }
    if (digits == 0 || v < lo || v > hi)
        return NULL;
    *out = v;
    return p;
}

/* [+-]hh[:mm[:ss]], hours up to 167 (RFC 8536's extension). */
static const char *
parse_hms(const char *p, int32_t *out) {
    int sign = 1, h, m = 0, s = 0;
    if (*p == '+' || *p == '-')
        sign = *p++ == '-' ? -1 : 1;
    if ((p = parse_num(p, 0, 167, &h)) == NULL)
        return NULL;
    if (*p == ':' && (p = parse_num(p + 1, 0, 59, &m)) != NULL && *p == ':')
        p = parse_num(p + 1, 0, 59, &s);
    if (p == NULL)
        return NULL;
    *out = sign * (h * 3600 + m * 60 + s);
    return p;
}

static const char *
parse_date(const char *p, struct tz_date *r) {
    memset(r, 0, sizeof(*r));
    if (*p == 'J') {
        r->kind = 'J';
        p = parse_num(p + 1, 1, 365, &r->n);
    } else if (*p == 'M') {
        r->kind = 'M';
        if ((p = parse_num(p + 1, 1, 12, &r->m)) == NULL || *p++ != '.' ||
            (p = parse_num(p, 1, 5, &r->w)) == NULL || *p++ != '.')
            return NULL;
        p = parse_num(p, 0, 6, &r->d);
    } else {
        r->kind = 'N';
        p = parse_num(p, 0, 365, &r->n);
    }
    r->time = 2 * 3600;
    if (p != NULL && *p == '/')
        p = parse_hms(p + 1, &r->time);
    return p;
}

static int
parse_rule(const char *s, struct tz_rule *r) {
    const char *p = parse_abbr(s);
    int32_t off;

    memset(r, 0, sizeof(*r));
    if (p == NULL || (p = parse_hms(p, &off)) == NULL)
        return -1;
    r->std_off = r->dst_off = -off; /* POSIX counts west of UTC */
    r->present = true;
    if (*p == '\0')
        return 0;
    if ((p = parse_abbr(p)) == NULL)
        return -1;
    r->has_dst = true;
    r->dst_off = r->std_off + 3600;
    if (*p != ',' && *p != '\0') {
        if ((p = parse_hms(p, &off)) == NULL)
            return -1;
        r->dst_off = -off;
    }
    /* A DST name with no rule: POSIX leaves it to the implementation;
     * zone files always give one. */
    if (*p++ != ',' || (p = parse_date(p, &r->start)) == NULL || *p++ != ',' ||
        (p = parse_date(p, &r->end)) == NULL || *p != '\0')
        return -1;
    return 0;
}

/* Local seconds since the epoch at which rule date r falls in year y. */
static int64_t
rule_local(const struct tz_date *r, int64_t y) {
    int64_t days = cc_days_from_civil(y, 1, 1);

    if (r->kind == 'J')
        days += r->n - 1 + (leap(y) && r->n >= 60);
    else if (r->kind == 'N')
        days += r->n;
    else {
        /* Day d of week w (5: the last) of month m. 1970-01-01 was a
         * Thursday (4). */
        int64_t first = cc_days_from_civil(y, (unsigned)r->m, 1);
        int wd = (int)(((first + 4) % 7 + 7) % 7);
        int64_t day = first + (r->d - wd + 7) % 7 + 7 * (r->w - 1);
        static const int mdays[] = {31, 28, 31, 30, 31, 30,
                                    31, 31, 30, 31, 30, 31};
        int64_t len = mdays[r->m - 1] + (r->m == 2 && leap(y));
        while (day >= first + len)
            day -= 7;
        days = day;
    }
    return days * DAY + r->time;
}

static int32_t
rule_offset(const struct tz_rule *r, int64_t t) {
    int64_t y, s, e;
    unsigned m, d;

    if (!r->has_dst)
        return r->std_off;
    cc_civil_from_days((t + r->std_off) / DAY - ((t + r->std_off) % DAY < 0),
                       &y, &m, &d);
    /* The start is given in standard time, the end in daylight time. */
    s = rule_local(&r->start, y) - r->std_off;
    e = rule_local(&r->end, y) - r->dst_off;
    if (s < e)
        return t >= s && t < e ? r->dst_off : r->std_off;
    /* Southern hemisphere: daylight time spans the new year. */
    return t >= e && t < s ? r->std_off : r->dst_off;
}

/* ---- TZif ------------------------------------------------------------ */

static uint32_t
be32(const unsigned char *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 |
           p[3];
}

static int64_t
be64(const unsigned char *p) {
    return (int64_t)((uint64_t)be32(p) << 32 | be32(p + 4));
}

struct tzif_counts {
    uint32_t isut, isstd, leap, time, type, chr;
};

/* Reads a header at p (44 bytes checked by the caller); returns the size
 * of the data block that follows for times of `tsize` bytes, or 0 when a
 * count is out of bounds. */
static size_t
read_header(const unsigned char *p, struct tzif_counts *c, size_t tsize) {
    c->isut = be32(p + 20);
    c->isstd = be32(p + 24);
    c->leap = be32(p + 28);
    c->time = be32(p + 32);
    c->type = be32(p + 36);
    c->chr = be32(p + 40);
    if (c->time > TZ_MAX_TIMES || c->type == 0 || c->type > TZ_MAX_TYPES ||
        c->chr == 0 || c->chr > 4096 || c->leap > 1024 ||
        (c->isut != 0 && c->isut != c->type) ||
        (c->isstd != 0 && c->isstd != c->type))
        return 0;
    return c->time * (tsize + 1) + c->type * 6 + c->chr +
           c->leap * (tsize + 4) + c->isstd + c->isut;
}

int
cc_tz_parse(struct cc_tz **out, const char *name, const void *buf, size_t len,
            char *err, size_t errlen) {
    const unsigned char *p = buf, *q, *end = p + len;
    struct tzif_counts c;
    size_t block, tsize = 4;
    struct cc_tz *z;
    uint32_t i;
    int32_t offs[TZ_MAX_TYPES];

    *out = NULL;
    if (len < 44 || memcmp(p, "TZif", 4) != 0)
        return cc_errf(err, errlen, CC_EINVAL, "%s: not a TZif zone file",
                       name);
    if ((block = read_header(p, &c, 4)) == 0 || block > len - 44)
        return cc_errf(err, errlen, CC_EINVAL,
                       "%s: zone file counts exceed its size", name);
    q = p + 44;
    if (p[4] >= '2') {
        /* Skip the 32-bit block: the 64-bit one follows with the same
         * data over a wider range. */
        q += block;
        if ((size_t)(end - q) < 44 || memcmp(q, "TZif", 4) != 0)
            return cc_errf(err, errlen, CC_EINVAL,
                           "%s: zone file's second header missing", name);
        tsize = 8;
        if ((block = read_header(q, &c, 8)) == 0 ||
            block > (size_t)(end - q) - 44)
            return cc_errf(err, errlen, CC_EINVAL,
                           "%s: zone file counts exceed its size", name);
        q += 44;
    }
    /* The "right/" zones count leap seconds in their times: everything
     * here is POSIX time, which does not. */
    if (c.leap != 0)
        return cc_errf(err, errlen, CC_EINVAL,
                       "%s: a zone with leap seconds (use the zone without "
                       "\"right/\")",
                       name);
    z = cc_calloc(1, sizeof(*z));
    if (z == NULL)
        return cc_errf(err, errlen, CC_ENOMEM, "out of memory");
    snprintf(z->name, sizeof(z->name), "%s", name);
    z->ntimes = c.time;
    z->times = cc_calloc(c.time ? c.time : 1, sizeof(*z->times));
    z->offs = cc_calloc(c.time ? c.time : 1, sizeof(*z->offs));
    if (z->times == NULL || z->offs == NULL) {
        cc_tz_free(z);
        return cc_errf(err, errlen, CC_ENOMEM, "out of memory");
    }
    for (i = 0; i < c.type; i++) {
        const unsigned char *t = q + c.time * (tsize + 1) + i * 6;
        int32_t off = (int32_t)be32(t);
        if (off < -25 * 3600 || off > 26 * 3600 || t[4] > 1 || t[5] >= c.chr) {
            cc_tz_free(z);
            return cc_errf(err, errlen, CC_EINVAL,
                           "%s: zone file has a bad local time type", name);
        }
        offs[i] = off;
    }
    z->first = offs[0];
    for (i = 0; i < c.time; i++) {
        unsigned idx = q[c.time * tsize + i];
        z->times[i] = tsize == 8 ? be64(q + i * 8) : (int32_t)be32(q + i * 4);
        if (idx >= c.type || (i > 0 && z->times[i] <= z->times[i - 1])) {
            cc_tz_free(z);
            return cc_errf(err, errlen, CC_EINVAL,
                           "%s: zone file transitions out of order", name);
        }
        z->offs[i] = offs[idx];
    }
    q += block;
    if (tsize == 8 && q < end && *q == '\n') {
        /* The footer: a POSIX TZ string between newlines. */
        const unsigned char *nl = memchr(q + 1, '\n', (size_t)(end - q - 1));
        char s[128];
        size_t n = nl ? (size_t)(nl - q - 1) : 0;
        if (nl == NULL || n >= sizeof(s)) {
            cc_tz_free(z);
            return cc_errf(err, errlen, CC_EINVAL,
                           "%s: zone file footer unterminated", name);
        }
        memcpy(s, q + 1, n);
        s[n] = '\0';
        if (n != 0 && parse_rule(s, &z->rule) != 0) {
            cc_tz_free(z);
            return cc_errf(err, errlen, CC_EINVAL,
                           "%s: zone file footer \"%s\" is not a TZ rule", name,
                           s);
        }
    }
    *out = z;
    return 0;
}

static bool
name_ok(const char *name) {
    const char *p = name, *comp = name;

    if (*name == '\0' || strlen(name) >= CC_TZ_NAME_MAX)
        return false;
    for (;; p++) {
        if (*p == '/' || *p == '\0') {
            size_t n = (size_t)(p - comp);
            if (n == 0 || (n == 1 && comp[0] == '.') ||
                (n == 2 && comp[0] == '.' && comp[1] == '.'))
                return false;
            if (*p == '\0')
                return true;
            comp = p + 1;
        } else if (!((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') ||
                     (*p >= '0' && *p <= '9') || *p == '_' || *p == '+' ||
                     *p == '-' || *p == '.')) {
            return false;
        }
    }
}

int
cc_tz_load(struct cc_tz **out, const char *dir, const char *name, char *err,
           size_t errlen) {
    char path[512];
    unsigned char *buf;
    size_t n;
    FILE *f;
    int rc;

    *out = NULL;
    if (!name_ok(name))
        return cc_errf(err, errlen, CC_EINVAL, "bad time zone name \"%s\"",
                       name);
    if (dir == NULL)
        dir = "/usr/share/zoneinfo";
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    if ((f = fopen(path, "rb")) == NULL)
        return cc_errf(err, errlen, errno == ENOENT ? CC_EINVAL : CC_EIO,
                       "unknown time zone \"%s\" (%s: %s)", name, path,
                       strerror(errno));
    buf = cc_malloc(TZ_MAX_FILE);
    if (buf == NULL) {
        fclose(f);
        return cc_errf(err, errlen, CC_ENOMEM, "out of memory");
    }
    n = fread(buf, 1, TZ_MAX_FILE, f);
    rc = ferror(f) ? (errno == EISDIR ? CC_EINVAL : CC_EIO) : 0;
    fclose(f);
    if (rc == CC_EINVAL)
        rc = cc_errf(err, errlen, rc,
                     "unknown time zone \"%s\" (%s is a directory of zones)",
                     name, path);
    else if (rc != 0)
        rc = cc_errf(err, errlen, rc, "%s: read error", path);
    else if (n == TZ_MAX_FILE)
        rc = cc_errf(err, errlen, CC_EINVAL, "%s: too large for a zone file",
                     path);
    else
        rc = cc_tz_parse(out, name, buf, n, err, errlen);
    cc_free(buf, TZ_MAX_FILE);
    return rc;
}

void
cc_tz_free(struct cc_tz *z) {
    if (z == NULL)
        return;
    cc_free(z->times, (z->ntimes ? z->ntimes : 1) * sizeof(*z->times));
    cc_free(z->offs, (z->ntimes ? z->ntimes : 1) * sizeof(*z->offs));
    cc_free(z, sizeof(*z));
}

const char *
cc_tz_name(const struct cc_tz *z) {
    return z->name;
}

int32_t
cc_tz_offset(const struct cc_tz *z, int64_t t) {
    uint32_t lo = 0, hi = z->ntimes;

    if (z->ntimes == 0 || t < z->times[0])
        return z->ntimes == 0 && z->rule.present ? rule_offset(&z->rule, t)
                                                 : z->first;
    if (t >= z->times[z->ntimes - 1] && z->rule.present)
        return rule_offset(&z->rule, t);
    /* The last transition at or before t. */
    while (hi - lo > 1) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (z->times[mid] <= t)
            lo = mid;
        else
            hi = mid;
    }
    return z->offs[lo];
}

int64_t
cc_tz_to_utc(const struct cc_tz *z, int64_t local) {
    /* Offsets a day either side: zones change at most once within two
     * days, so these are the offsets before and after any change near
     * local. */
    int32_t before = cc_tz_offset(z, local - DAY);
    int32_t after = cc_tz_offset(z, local + DAY);
    int64_t u1 = local - before, u2 = local - after, lo, hi;

    if (cc_tz_offset(z, u1) == before) {
        if (cc_tz_offset(z, u2) == after && u2 < u1)
            return u2;
        return u1;
    }
    if (cc_tz_offset(z, u2) == after)
        return u2;
    /* A gap: the clocks jumped from before to after at some instant in
     * (u2, u1]; find it. */
    lo = u2;
    hi = u1;
    while (hi - lo > 1) {
        int64_t mid = lo + (hi - lo) / 2;
        if (cc_tz_offset(z, mid) == after)
            hi = mid;
        else
            lo = mid;
    }
    return hi;
}
