/*
 * Time zones from the IANA tz database as installed (Debian's tzdata, in
 * /usr/share/zoneinfo): a compiled zone file (TZif, RFC 8536) is read once
 * into memory, and offsets are then answered without a system call or the
 * process-wide TZ variable, so that any number of zones can be used side
 * by side. Times beyond the file's last transition follow the POSIX TZ
 * rule in its footer, so daylight saving time stays right past 2037 and
 * with "slim" zone files. Times are seconds since the epoch, UTC; "local"
 * times are the same count for the local wall clock (as if it were UTC).
 */
#ifndef CC_TZ_H
#define CC_TZ_H

#include "cc.h"

#define CC_TZ_NAME_MAX 64

struct cc_tz;

/*
 * Loads zone `name` (e.g. "America/New_York", "UTC") from the directory
 * dir (NULL: /usr/share/zoneinfo). Names are checked before any file is
 * opened: letters, digits, '_', '+', '-', '.' and '/' between components,
 * no empty, "." or ".." component, no leading '/'. Zones counting leap
 * seconds ("right/...") are refused: times here are POSIX times. CC_EINVAL (bad
 * name or file), CC_EIO (cannot be read) or CC_ENOMEM, with the reason in err.
 */
int cc_tz_load(struct cc_tz **out, const char *dir, const char *name, char *err,
               size_t errlen);
/* The same from the bytes of a zone file; every count in it is checked
 * against the bytes given. */
int cc_tz_parse(struct cc_tz **out, const char *name, const void *buf,
                size_t len, char *err, size_t errlen);
void cc_tz_free(struct cc_tz *z);
const char *cc_tz_name(const struct cc_tz *z);

/* Seconds east of UTC in force at UTC time t. */
int32_t cc_tz_offset(const struct cc_tz *z, int64_t t);
/*
 * The UTC time of local wall-clock time `local`. A local time that occurs
 * twice (clocks going back) gives the first; one that does not occur
 * (clocks going forward) gives the instant the clocks jumped, the first
 * moment after the gap.
 */
int64_t cc_tz_to_utc(const struct cc_tz *z, int64_t local);

/* Days since 1970-01-01 of a proleptic Gregorian date, and back. */
int64_t cc_days_from_civil(int64_t y, unsigned m, unsigned d);
void cc_civil_from_days(int64_t days, int64_t *y, unsigned *m, unsigned *d);

#endif
