/*
 * The journal and its checksum: CRC-32C vectors and the two paths agreeing;
 * records written across many segments read back in order and continued
 * after a reopen; a torn tail at every byte of the last record told apart
 * from corruption and cut by open(); every flipped bit of a segment caught;
 * lengths that claim gigabytes refused without allocating; unknown
 * versions, gaps and repair; and writes that fail (a file size limit, a
 * full tmpfs) keeping every record exactly once.
 */
#include <criterion/criterion.h>

#include "crc32c.h"
#include "journal.h"
#include "mem.h"
#include "testutil.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- Helpers ---------------------------------------------------------- */

#define MAXSEG 4096

static char root[64];
static char jdir[128];

static void
setup(void) {
    snprintf(root, sizeof(root), "/tmp/journal_test.XXXXXX");
    cr_assert_not_null(mkdtemp(root));
    snprintf(jdir, sizeof(jdir), "%s/j", root);
}

static void
teardown(void) {
    char mnt[96];

    /* The tmpfs test's mount, if a failed assertion left it there. */
    snprintf(mnt, sizeof(mnt), "%s/mnt", root);
    umount2(mnt, MNT_DETACH);
    remove_tree(root);
}

TestSuite(journal, .init = setup, .fini = teardown);
TestSuite(crc32c);

/* A payload that says which record it is: its length and bytes depend on
 * the sequence number, so that a record read at the wrong place shows. */
static size_t
payload(uint64_t seq, unsigned char *out) {
    size_t n = 9 + (size_t)((seq * 37) % 120), k;

    memcpy(out, &seq, 8);
    for (k = 8; k < n; k++)
        out[k] = (unsigned char)(seq * 131 + k);
    return n;
}

static void
check_payload(uint64_t seq, const void *p, size_t n) {
    unsigned char want[256];
    size_t wn = payload(seq, want);

    cr_assert_eq(n, wn, "record %" PRIu64 ": %zu bytes, want %zu", seq, n, wn);
    cr_assert(memcmp(p, want, n) == 0, "record %" PRIu64 ": wrong bytes", seq);
}

static struct cc_journal *
jopen(const char *dir, uint64_t segment_size) {
    struct cc_journal_opts o = {.segment_size = segment_size};
    struct cc_journal *j;
    char err[512];
    int rc;

    rc = cc_journal_open(&j, dir, &o, err, sizeof(err));
    cr_assert_eq(rc, 0, "open: %s", err);
    return j;
}

static uint64_t
append_one(struct cc_journal *j) {
    unsigned char b[256];
    uint64_t seq = cc_journal_next_seq(j);
    size_t n = payload(seq, b);

    cr_assert_eq(cc_journal_append(j, b, n), seq);
    return seq;
}

/* Writes everything, syncing whenever rotation waits for it. */
static void
flush(struct cc_journal *j) {
    int rc;

    while ((rc = cc_journal_write(j)) == 1)
        cr_assert_eq(cc_journal_sync(j), 0, "%s", cc_journal_sync_error(j));
    cr_assert_eq(rc, 0, "write: %s", cc_journal_error(j));
    cr_assert_eq(cc_journal_sync(j), 0, "%s", cc_journal_sync_error(j));
    cr_assert_eq(cc_journal_buffered(j), 0);
    cr_assert_eq(cc_journal_written_seq(j), cc_journal_next_seq(j));
}

/* Reads from from_seq to the end; every record must be the one its
 * sequence number says, in order. Returns the reader's final code and the
 * count; the fault goes to *fault when not NULL. */
static int
read_all(const char *dir, uint64_t from_seq, uint64_t *first, uint64_t *count,
         struct cc_journal_fault *fault) {
    struct cc_journal_reader *r;
    const void *p;
    uint64_t seq, expect = 0;
    char err[512];
    size_t n;
    int rc;

    *count = 0;
    rc = cc_journal_reader_open(&r, dir, from_seq, err, sizeof(err));
    cr_assert_eq(rc, 0, "reader open: %s", err);
    while ((rc = cc_journal_read(r, &seq, &p, &n)) == 1) {
        if (*count == 0) {
            *first = seq;
            if (from_seq != 0)
                cr_assert_eq(seq, from_seq);
        } else {
            cr_assert_eq(seq, expect, "record %" PRIu64 " after %" PRIu64, seq,
                         expect - 1);
        }
        check_payload(seq, p, n);
        expect = seq + 1;
        ++*count;
    }
    if (fault != NULL)
        *fault = *cc_journal_reader_fault(r);
    if (rc == 0)
        cr_assert_eq(cc_journal_reader_fault(r)->kind, CC_JOURNAL_FAULT_NONE);
    else
        cr_assert_neq(cc_journal_reader_error(r)[0], '\0');
    cc_journal_reader_close(r);
    return rc;
}

static int
cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The segment files of dir, sorted (names into names[i], 32 bytes). */
static size_t
segments(const char *dir, char names[][32], size_t max) {
    char *ptr[MAXSEG];
    char tmp[MAXSEG][32];
    struct dirent *de;
    size_t n = 0, i;
    DIR *d = opendir(dir);

    cr_assert_not_null(d);
    while ((de = readdir(d)) != NULL) {
        size_t l = strlen(de->d_name);
        if (l == 24 && strcmp(de->d_name + 20, ".seg") == 0) {
            cr_assert_lt(n, max);
            memcpy(tmp[n], de->d_name, 25);
            ptr[n] = tmp[n];
            n++;
        }
    }
    closedir(d);
    qsort(ptr, n, sizeof(ptr[0]), cmp_str);
    for (i = 0; i < n; i++)
        snprintf(names[i], 32, "%s", ptr[i]);
    return n;
}

static void
spit(const char *path, const void *b, size_t len) {
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);

    cr_assert_geq(fd, 0, "%s: %s", path, strerror(errno));
    cr_assert_eq(write(fd, b, len), (ssize_t)len);
    close(fd);
}

static uint32_t
le32(const unsigned char *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
           (uint32_t)p[3] << 24;
}

static void
setle32(unsigned char *p, uint32_t v) {
    p[0] = (unsigned char)v;
    p[1] = (unsigned char)(v >> 8);
    p[2] = (unsigned char)(v >> 16);
    p[3] = (unsigned char)(v >> 24);
}

/* Offsets of the records of a segment image (walking the lengths). */
static size_t
record_offsets(const unsigned char *b, size_t len, size_t *off, size_t max) {
    size_t pos = CC_JOURNAL_HEADER_SIZE, n = 0;

    while (pos + 8 <= len) {
        cr_assert_lt(n, max);
        off[n++] = pos;
        pos += 8 + le32(b + pos);
    }
    cr_assert_eq(pos, len);
    return n;
}

/* A journal of count records in segments of segment_size; returns the
 * number of segment files. */
static size_t
build(const char *dir, uint64_t segment_size, int count) {
    char names[MAXSEG][32];
    struct cc_journal *j = jopen(dir, segment_size);
    int i;

    for (i = 0; i < count; i++)
        append_one(j);
    flush(j);
    cc_journal_close(j);
    return segments(dir, names, MAXSEG);
}

/* ---- CRC-32C ---------------------------------------------------------- */

Test(crc32c, known_vectors_on_both_paths) {
    unsigned char z[32], f[32];
    const char *s = "123456789";
    size_t i;

    memset(z, 0, sizeof(z));
    memset(f, 0xff, sizeof(f));
    cr_assert_eq(cc_crc32c(0, s, 9), 0xE3069283u);
    cr_assert_eq(cc_crc32c(0, z, 32), 0x8A9136AAu);
    cr_assert_eq(cc_crc32c(0, f, 32), 0x62A8AB43u);
    cr_assert_eq(cc_crc32c(0, s, 0), 0);
    cr_assert_eq(cc_crc32c_sw(0, s, 9), 0xE3069283u);
    cr_assert_eq(cc_crc32c_sw(0, z, 32), 0x8A9136AAu);
    cr_assert_eq(cc_crc32c_sw(0, f, 32), 0x62A8AB43u);
    if (cc_crc32c_hw_available()) {
        cr_assert_eq(cc_crc32c_hw(0, s, 9), 0xE3069283u);
        cr_assert_eq(cc_crc32c_hw(0, z, 32), 0x8A9136AAu);
        cr_assert_eq(cc_crc32c_hw(0, f, 32), 0x62A8AB43u);
    } else {
        cr_log_warn("no SSE4.2 on this CPU: the hardware path is untested");
    }
    /* Chaining: any split gives the CRC of the whole. */
    for (i = 0; i <= 9; i++)
        cr_assert_eq(cc_crc32c(cc_crc32c(0, s, i), s + i, 9 - i), 0xE3069283u,
                     "split at %zu", i);
}

Test(crc32c, software_and_hardware_agree_on_every_length_and_alignment) {
    unsigned char buf[1024 + 16];
    uint64_t x = 0x9e3779b97f4a7c15ULL;
    size_t i, len, mis;
    uint32_t seed;

    if (!cc_crc32c_hw_available())
        cr_skip_test("no SSE4.2 on this CPU: nothing to compare");
    for (i = 0; i < sizeof(buf); i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        buf[i] = (unsigned char)x;
    }
    for (len = 0; len <= 1024; len++) {
        for (mis = 0; mis < 8; mis++) {
            seed = (uint32_t)(len * 2654435761u + mis);
            cr_assert_eq(cc_crc32c_sw(0, buf + mis, len),
                         cc_crc32c_hw(0, buf + mis, len), "len %zu mis %zu",
                         len, mis);
            cr_assert_eq(cc_crc32c_sw(seed, buf + mis, len),
                         cc_crc32c_hw(seed, buf + mis, len),
                         "len %zu mis %zu seeded", len, mis);
            cr_assert_eq(cc_crc32c(0, buf + mis, len),
                         cc_crc32c_sw(0, buf + mis, len));
        }
    }
}

/* ---- Round trip ------------------------------------------------------- */

Test(journal, round_trip_across_segments_and_reopen) {
    char names[MAXSEG][32], path[256];
    struct cc_journal *j;
    uint64_t first, count, seq;
    size_t nseg, i;
    int k, batch;

    j = jopen(jdir, 512);
    cr_assert_eq(cc_journal_next_seq(j), 1);
    /* Batches of 1 to 37 records: group commits of different sizes, some
     * spanning several segments. */
    for (k = 0, batch = 1; k < 500; batch = batch % 37 + 1) {
        int b;
        for (b = 0; b < batch && k < 500; b++, k++)
            cr_assert_eq(append_one(j), (uint64_t)k + 1);
        flush(j);
    }
    cc_journal_close(j);

    nseg = segments(jdir, names, MAXSEG);
    cr_assert_gt(nseg, 20, "%zu segments", nseg);
    /* Each segment is named after its first record, and every one but the
     * last reached the segment size (rotation waits until then). */
    seq = 1;
    for (i = 0; i < nseg; i++) {
        cr_assert_lt(
            (size_t)snprintf(path, sizeof(path), "%s/%s", jdir, names[i]),
            sizeof(path));
        cr_assert_eq(strtoull(names[i], NULL, 10), seq, "%s", names[i]);
        if (i + 1 < nseg) {
            cr_assert_geq(file_size(path), 512, "%s", names[i]);
            seq = strtoull(names[i + 1], NULL, 10);
        }
    }

    cr_assert_eq(read_all(jdir, 0, &first, &count, NULL), 0);
    cr_assert_eq(first, 1);
    cr_assert_eq(count, 500);

    /* Reopen: the sequence continues, and so does the last segment. */
    j = jopen(jdir, 512);
    cr_assert_eq(cc_journal_next_seq(j), 501);
    cr_assert_eq(cc_journal_written_seq(j), 501);
    for (k = 0; k < 100; k++)
        cr_assert_eq(append_one(j), 501 + (uint64_t)k);
    flush(j);
    cc_journal_close(j);
    cr_assert_eq(read_all(jdir, 0, &first, &count, NULL), 0);
    cr_assert_eq(count, 600);

    /* From the middle, and past the end. */
    cr_assert_eq(read_all(jdir, 250, &first, &count, NULL), 0);
    cr_assert_eq(count, 351);
    cr_assert_eq(read_all(jdir, 601, &first, &count, NULL), 0);
    cr_assert_eq(count, 0);
}

Test(journal, rotation_waits_for_a_sync_unless_sync_is_off) {
    struct cc_journal_opts o = {.segment_size = 200};
    char names[MAXSEG][32], err[256];
    struct cc_journal *j;
    uint64_t first, count;
    int i, rc;

    cr_assert_eq(cc_journal_open(&j, jdir, &o, err, sizeof(err)), 0, "%s", err);
    for (i = 0; i < 20; i++)
        append_one(j);
    /* The first segment fills; the rest waits for its sync. */
    cr_assert_eq(cc_journal_write(j), 1);
    cr_assert_gt(cc_journal_buffered(j), 0);
    cr_assert_gt(cc_journal_written_seq(j), 1);
    cr_assert_lt(cc_journal_written_seq(j), 21);
    cr_assert_eq(segments(jdir, names, MAXSEG), 1);
    cr_assert_eq(cc_journal_write(j), 1, "no progress without a sync");
    cr_assert_eq(cc_journal_sync(j), 0);
    rc = cc_journal_write(j);
    cr_assert_geq(rc, 0);
    cr_assert_eq(segments(jdir, names, MAXSEG), 2);
    flush(j);
    cc_journal_close(j);

    /* sync_off: all in one call, however many segments. */
    o.sync_off = true;
    cr_assert_eq(cc_journal_open(&j, jdir, &o, err, sizeof(err)), 0, "%s", err);
    for (i = 0; i < 40; i++)
        append_one(j);
    cr_assert_eq(cc_journal_write(j), 0);
    cr_assert_eq(cc_journal_buffered(j), 0);
    cc_journal_close(j);
    cr_assert_gt(segments(jdir, names, MAXSEG), 5);
    cr_assert_eq(read_all(jdir, 0, &first, &count, NULL), 0);
    cr_assert_eq(count, 60);
}

Test(journal, append_refuses_empty_and_oversized_payloads) {
    struct cc_journal *j = jopen(jdir, 0);
    unsigned char b[4] = {1, 2, 3, 4};

    cr_assert_eq(cc_journal_append(j, b, 0), 0);
    /* The size is checked before the bytes are read. */
    cr_assert_eq(cc_journal_append(j, b, (size_t)CC_JOURNAL_MAX_PAYLOAD + 1),
                 0);
    cr_assert_eq(cc_journal_next_seq(j), 1);
    cr_assert_eq(cc_journal_append(j, b, 4), 1);
    cc_journal_close(j);
}

Test(journal, a_second_writer_is_refused) {
    struct cc_journal *j = jopen(jdir, 0), *k;
    char err[256], report[1024];

    cr_assert_eq(cc_journal_open(&k, jdir, NULL, err, sizeof(err)), CC_ESTATE);
    cr_assert(strstr(err, "in use") != NULL, "%s", err);
    cr_assert_eq(cc_journal_repair(jdir, report, sizeof(report)), CC_ESTATE);
    cc_journal_close(j);
    k = jopen(jdir, 0);
    cc_journal_close(k);
}

/* ---- Torn tails ------------------------------------------------------- */

/* The journal is cut at every byte of its last record (and, the other way
 * a crash can leave it, zero-filled from every byte of it): the reader
 * calls it torn, open() cuts it off with the records before it intact,
 * and appending continues from there. */
Test(journal, torn_tail_at_every_offset_of_the_last_record) {
    char names[MAXSEG][32], path[256], err[512];
    size_t nseg, len, offs[256], nrec, start, end, cut;
    struct cc_journal_fault f;
    struct cc_journal *j;
    uint64_t first, count, last_seq;
    unsigned char *orig, *img;
    int zero_fill, rc;

    nseg = build(jdir, 2048, 40);
    cr_assert_geq(nseg, 2);
    segments(jdir, names, MAXSEG);
    snprintf(path, sizeof(path), "%s/%s", jdir, names[nseg - 1]);
    orig = (unsigned char *)read_file(path, &len);
    img = malloc(len);
    nrec = record_offsets(orig, len, offs, 256);
    cr_assert_geq(nrec, 2);
    start = offs[nrec - 1];
    end = len;
    last_seq = 40;

    for (zero_fill = 0; zero_fill < 2; zero_fill++) {
        for (cut = start + (zero_fill ? 0 : 1); cut < end; cut++) {
            memcpy(img, orig, len);
            if (zero_fill)
                memset(img + cut, 0, len - cut);
            spit(path, img, zero_fill ? len : cut);

            rc = read_all(jdir, 0, &first, &count, &f);
            cr_assert_eq(rc, CC_EPROTO, "cut %zu", cut);
            cr_assert_eq(f.kind, CC_JOURNAL_FAULT_TORN,
                         "cut %zu zero %d: %s (%s)", cut, zero_fill,
                         cc_journal_fault_name(f.kind), f.reason);
            cr_assert_eq(f.offset, start);
            cr_assert_eq(f.seq, last_seq);
            cr_assert(strstr(f.file, names[nseg - 1]) != NULL);
            cr_assert_eq(count, last_seq - 1);

            /* open() cuts the tail and continues with the same number. */
            rc = cc_journal_open(
                &j, jdir, &(struct cc_journal_opts){.segment_size = 2048}, err,
                sizeof(err));
            cr_assert_eq(rc, 0, "cut %zu: %s", cut, err);
            cr_assert_eq(cc_journal_next_seq(j), last_seq);
            cr_assert_eq(file_size(path), start);
            append_one(j);
            append_one(j);
            flush(j);
            cc_journal_close(j);
            cr_assert_eq(read_all(jdir, 0, &first, &count, NULL), 0);
            cr_assert_eq(count, last_seq + 1);
            cr_assert_eq(segments(jdir, names, MAXSEG), nseg,
                         "the test expects no rotation here");
        }
    }
    /* The untouched journal is clean, and so is one cut at a record
     * boundary. */
    spit(path, orig, start);
    cr_assert_eq(read_all(jdir, 0, &first, &count, NULL), 0);
    cr_assert_eq(count, last_seq - 1);
    free(img);
    free(orig);
}

/* A segment created just before the crash: its header is short or zero.
 * No record was in it; open() writes the header again. */
Test(journal, torn_segment_header_is_rewritten) {
    char names[MAXSEG][32], path[256], next[32];
    unsigned char zeros[4096];
    struct cc_journal_fault f;
    struct cc_journal *j;
    uint64_t first, count;
    size_t nseg;
    int variant;

    nseg = build(jdir, 0, 10);
    cr_assert_eq(nseg, 1);
    snprintf(next, sizeof(next), "%020d.seg", 11);
    snprintf(path, sizeof(path), "%s/%s", jdir, next);
    memset(zeros, 0, sizeof(zeros));
    for (variant = 0; variant < 3; variant++) {
        /* 10 header bytes written, none, or a zero-filled page. */
        if (variant == 0) {
            unsigned char h[32];
            memcpy(h, "CCJOURNL\x01\x00", 10);
            spit(path, h, 10);
        } else {
            spit(path, zeros, variant == 1 ? 0 : sizeof(zeros));
        }
        cr_assert_eq(read_all(jdir, 0, &first, &count, &f), CC_EPROTO);
        cr_assert_eq(f.kind, CC_JOURNAL_FAULT_TORN, "%s", f.reason);
        cr_assert_eq(count, 10);
        j = jopen(jdir, 0);
        cr_assert_eq(cc_journal_next_seq(j), 11);
        append_one(j);
        flush(j);
        cc_journal_close(j);
        cr_assert_eq(segments(jdir, names, MAXSEG), 2);
        cr_assert_eq(file_size(path),
                     CC_JOURNAL_HEADER_SIZE + 8 + 9 + (11 * 37) % 120);
        cr_assert_eq(read_all(jdir, 0, &first, &count, NULL), 0);
        cr_assert_eq(count, 11);
    }
}

/* ---- Corruption ------------------------------------------------------- */

/* Every bit of a small segment flipped in turn, the segment being the
 * journal's last and then one before the last: the reader never returns a
 * record that differs from what was written (read_all checks each), and
 * always stops with a fault; before the last segment, never "torn". */
Test(journal, every_flipped_bit_is_detected) {
    char names[MAXSEG][32], path[256], err[512];
    struct cc_journal_fault f;
    struct cc_journal *j;
    uint64_t first, count;
    unsigned char *orig, *img;
    size_t nseg, len, bit, target;
    int variant, rc;

    for (variant = 0; variant < 2; variant++) {
        teardown();
        setup();
        /* Variant 0: one segment of 4 records. Variant 1: the first of two
         * segments. */
        nseg = build(jdir, variant == 0 ? 0 : 200, variant == 0 ? 4 : 5);
        cr_assert_eq(nseg, variant == 0 ? 1 : 2);
        segments(jdir, names, MAXSEG);
        target = 0;
        cr_assert_lt(
            (size_t)snprintf(path, sizeof(path), "%s/%s", jdir, names[target]),
            sizeof(path));
        orig = (unsigned char *)read_file(path, &len);
        img = malloc(len);
        for (bit = 0; bit < len * 8; bit++) {
            memcpy(img, orig, len);
            img[bit / 8] ^= (unsigned char)(1u << (bit % 8));
            spit(path, img, len);
            rc = read_all(jdir, 0, &first, &count, &f);
            cr_assert_lt(rc, 0, "bit %zu of %s read as valid", bit,
                         names[target]);
            cr_assert_neq(f.kind, CC_JOURNAL_FAULT_NONE);
            if (variant == 1)
                cr_assert(f.kind == CC_JOURNAL_FAULT_CORRUPT ||
                              f.kind == CC_JOURNAL_FAULT_VERSION,
                          "bit %zu: %s", bit, cc_journal_fault_name(f.kind));
            if (f.kind == CC_JOURNAL_FAULT_CORRUPT ||
                f.kind == CC_JOURNAL_FAULT_VERSION) {
                if (variant == 0) {
                    /* The writer refuses to open over it. */
                    rc = cc_journal_open(&j, jdir, NULL, err, sizeof(err));
                    cr_assert_eq(rc, CC_EPROTO, "bit %zu", bit);
                    cr_assert(strstr(err, names[target]) != NULL, "%s", err);
                }
            }
        }
        spit(path, orig, len);
        cr_assert_eq(read_all(jdir, 0, &first, &count, NULL), 0);
        free(img);
        free(orig);
    }
}

/* A bad record with good ones after it in the last segment is corruption,
 * and the writer refuses to open over it, naming the file and offset. */
Test(journal, damage_before_the_end_of_the_last_segment_is_corruption) {
    char names[MAXSEG][32], path[256], err[512], want[64];
    size_t len, offs[64], nrec;
    struct cc_journal_fault f;
    struct cc_journal *j;
    uint64_t first, count;
    unsigned char *b;

    cr_assert_eq(build(jdir, 0, 6), 1);
    segments(jdir, names, MAXSEG);
    snprintf(path, sizeof(path), "%s/%s", jdir, names[0]);
    b = (unsigned char *)read_file(path, &len);
    nrec = record_offsets(b, len, offs, 64);
    cr_assert_eq(nrec, 6);
    b[offs[2] + 12] ^= 0x40;
    spit(path, b, len);
    cr_assert_eq(read_all(jdir, 0, &first, &count, &f), CC_EPROTO);
    cr_assert_eq(f.kind, CC_JOURNAL_FAULT_CORRUPT);
    cr_assert_eq(f.offset, offs[2]);
    cr_assert_eq(f.seq, 3);
    cr_assert_eq(count, 2);
    cr_assert(strstr(f.reason, "checksum") != NULL, "%s", f.reason);
    cr_assert_eq(cc_journal_open(&j, jdir, NULL, err, sizeof(err)), CC_EPROTO);
    snprintf(want, sizeof(want), "offset %zu", offs[2]);
    cr_assert(strstr(err, names[0]) != NULL && strstr(err, want) != NULL, "%s",
              err);
    cr_assert(strstr(err, "corruption") != NULL, "%s", err);
    free(b);
}

/* A record that moved (here: two records of equal length swapped) fails
 * its check, because the CRC covers the sequence number. */
Test(journal, a_record_at_the_wrong_place_fails_its_check) {
    char names[MAXSEG][32], path[256];
    struct cc_journal *j;
    struct cc_journal_fault f;
    unsigned char b8[16], *b;
    size_t len, offs[8];
    int i;

    j = jopen(jdir, 0);
    for (i = 0; i < 4; i++) {
        memset(b8, 'x', sizeof(b8));
        cr_assert_eq(cc_journal_append(j, b8, sizeof(b8)), (uint64_t)i + 1);
    }
    flush(j);
    cc_journal_close(j);
    segments(jdir, names, MAXSEG);
    snprintf(path, sizeof(path), "%s/%s", jdir, names[0]);
    b = (unsigned char *)read_file(path, &len);
    cr_assert_eq(record_offsets(b, len, offs, 8), 4);
    /* Same payload, so only the sequence number differs: swap records 1
     * and 2 (the 24-byte frames). */
    {
        unsigned char t[24];
        memcpy(t, b + offs[1], 24);
        memcpy(b + offs[1], b + offs[2], 24);
        memcpy(b + offs[2], t, 24);
    }
    spit(path, b, len);
    {
        struct cc_journal_reader *r;
        const void *p;
        uint64_t seq;
        size_t n;
        char err[256];
        cr_assert_eq(cc_journal_reader_open(&r, jdir, 0, err, sizeof(err)), 0);
        cr_assert_eq(cc_journal_read(r, &seq, &p, &n), 1);
        cr_assert_eq(seq, 1);
        cr_assert_eq(cc_journal_read(r, &seq, &p, &n), CC_EPROTO);
        f = *cc_journal_reader_fault(r);
        cr_assert_eq(f.kind, CC_JOURNAL_FAULT_CORRUPT);
        cr_assert_eq(f.offset, offs[1]);
        cr_assert_eq(cc_journal_read(r, &seq, &p, &n), CC_EPROTO,
                     "errors are final");
        cc_journal_reader_close(r);
    }
    free(b);
}

/* A length field claiming 4 GB (or anything over the maximum) is
 * corruption, wherever it is, and nothing that size is allocated. */
Test(journal, a_record_declaring_4gb_is_corruption_without_allocation) {
    char names[MAXSEG][32], path[256], err[512];
    struct cc_mem_stats before, after;
    struct cc_journal_fault f;
    struct cc_journal *j;
    uint64_t first, count;
    size_t len, offs[16], which;
    unsigned char *orig, *b;
    static const uint32_t lens[] = {0xFFFFFFFFu, CC_JOURNAL_MAX_PAYLOAD + 1};
    size_t li;

    cr_assert_eq(build(jdir, 0, 5), 1);
    segments(jdir, names, MAXSEG);
    snprintf(path, sizeof(path), "%s/%s", jdir, names[0]);
    orig = (unsigned char *)read_file(path, &len);
    b = malloc(len);
    cr_assert_eq(record_offsets(orig, len, offs, 16), 5);
    for (li = 0; li < 2; li++) {
        /* A middle record, then the last one (which is not called torn:
         * a crash does not write a length over the maximum). */
        for (which = 2; which <= 4; which += 2) {
            memcpy(b, orig, len);
            setle32(b + offs[which], lens[li]);
            spit(path, b, len);
            cc_mem_stats(&before);
            cr_assert_eq(read_all(jdir, 0, &first, &count, &f), CC_EPROTO);
            cc_mem_stats(&after);
            cr_assert_eq(f.kind, CC_JOURNAL_FAULT_CORRUPT, "%s", f.reason);
            cr_assert_eq(f.offset, offs[which]);
            cr_assert(strstr(f.reason, "declares") != NULL, "%s", f.reason);
            cr_assert_eq(count, which);
            cr_assert_lt(after.bytes_live, before.bytes_live + (1u << 20));
            cr_assert_eq(cc_journal_open(&j, jdir, NULL, err, sizeof(err)),
                         CC_EPROTO);
        }
    }
    /* The largest allowed length, past the end of the file: torn in the
     * last segment (the file ends inside it), and no 64 MiB buffer. */
    memcpy(b, orig, len);
    setle32(b + offs[4], CC_JOURNAL_MAX_PAYLOAD);
    spit(path, b, len);
    cc_mem_stats(&before);
    cr_assert_eq(read_all(jdir, 0, &first, &count, &f), CC_EPROTO);
    cc_mem_stats(&after);
    cr_assert_eq(f.kind, CC_JOURNAL_FAULT_TORN, "%s", f.reason);
    cr_assert_lt(after.bytes_live, before.bytes_live + (1u << 20));
    free(b);
    free(orig);
}

static void
write_header_version(const char *path, uint32_t version) {
    unsigned char *b;
    size_t len;
    uint32_t crc;

    b = (unsigned char *)read_file(path, &len);
    setle32(b + 8, version);
    /* A well-formed header of that version: the checksum matches. */
    crc = cc_crc32c(cc_crc32c(0, b, 12), b + 16, 16);
    setle32(b + 12, crc);
    spit(path, b, len);
    free(b);
}

Test(journal, an_unknown_version_stops_with_a_clear_message) {
    char names[MAXSEG][32], path[256], err[512], report[2048];
    struct cc_journal_fault f;
    struct cc_journal *j;
    uint64_t first, count;

    cr_assert_eq(build(jdir, 0, 3), 1);
    segments(jdir, names, MAXSEG);
    snprintf(path, sizeof(path), "%s/%s", jdir, names[0]);
    write_header_version(path, 2);
    cr_assert_eq(read_all(jdir, 0, &first, &count, &f), CC_EPROTO);
    cr_assert_eq(f.kind, CC_JOURNAL_FAULT_VERSION);
    cr_assert_eq(count, 0);
    cr_assert(strstr(f.reason, "newer or unknown format version 2") != NULL,
              "%s", f.reason);
    cr_assert(strstr(f.reason, "damaged") == NULL, "%s", f.reason);
    cr_assert_eq(cc_journal_open(&j, jdir, NULL, err, sizeof(err)), CC_EPROTO);
    cr_assert(strstr(err, "newer or unknown format version 2") != NULL, "%s",
              err);
    /* Repair does not touch a journal it does not understand. */
    cr_assert_eq(cc_journal_repair(jdir, report, sizeof(report)), CC_EPROTO);
    cr_assert(strstr(report, "newer or unknown format version 2") != NULL, "%s",
              report);
    cr_assert_gt(file_size(path), CC_JOURNAL_HEADER_SIZE);
    /* Version 1 again: all there. */
    write_header_version(path, 1);
    cr_assert_eq(read_all(jdir, 0, &first, &count, NULL), 0);
    cr_assert_eq(count, 3);
}

Test(journal, a_gap_between_segments_is_corruption) {
    char names[MAXSEG][32], path[256];
    struct cc_journal_fault f;
    uint64_t first, count, missing_from, missing_to;
    size_t nseg;

    nseg = build(jdir, 300, 40);
    cr_assert_geq(nseg, 4);
    segments(jdir, names, MAXSEG);
    missing_from = strtoull(names[1], NULL, 10);
    missing_to = strtoull(names[2], NULL, 10);
    snprintf(path, sizeof(path), "%s/%s", jdir, names[1]);
    cr_assert_eq(unlink(path), 0);
    cr_assert_eq(read_all(jdir, 0, &first, &count, &f), CC_EPROTO);
    cr_assert_eq(f.kind, CC_JOURNAL_FAULT_CORRUPT);
    cr_assert_eq(count, missing_from - 1);
    cr_assert(strstr(f.reason, "gap") != NULL, "%s", f.reason);
    cr_assert(strstr(f.file, names[2]) != NULL, "%s", f.file);
    cr_assert_eq(f.offset, 0);
    /* Starting after the gap is fine: the segments before are not read. */
    cr_assert_eq(read_all(jdir, missing_to, &first, &count, NULL), 0);
    cr_assert_eq(count, 40 - missing_to + 1);
}

/* ---- Repair and removal ----------------------------------------------- */

Test(journal, repair_truncates_at_the_first_bad_record_and_reports) {
    char names[MAXSEG][32], path[256], report[4096], want[256];
    size_t nseg, len, offs[64], nrec, i;
    struct cc_journal *j;
    uint64_t first, count, bad_seq, seg_first;
    unsigned char *b;
    int rc;

    nseg = build(jdir, 400, 60);
    cr_assert_geq(nseg, 4);
    segments(jdir, names, MAXSEG);
    /* A bad checksum in the middle of the second segment. */
    snprintf(path, sizeof(path), "%s/%s", jdir, names[1]);
    b = (unsigned char *)read_file(path, &len);
    nrec = record_offsets(b, len, offs, 64);
    cr_assert_geq(nrec, 3);
    seg_first = strtoull(names[1], NULL, 10);
    bad_seq = seg_first + 1;
    b[offs[1] + 9] ^= 1;
    spit(path, b, len);

    rc = cc_journal_repair(jdir, report, sizeof(report));
    cr_assert_eq(rc, 1, "%s", report);
    cr_log_info("repair report:\n%s", report);
    snprintf(want, sizeof(want), "%s: offset %zu", names[1], offs[1]);
    cr_assert(strstr(report, want) != NULL, "%s", report);
    snprintf(want, sizeof(want), "records %" PRIu64 "..%" PRIu64, bad_seq,
             (uint64_t)strtoull(names[2], NULL, 10) - 1);
    cr_assert(strstr(report, want) != NULL, "%s", report);
    for (i = 2; i < nseg; i++) {
        snprintf(want, sizeof(want), "removing %s/%s", jdir, names[i]);
        cr_assert(strstr(report, want) != NULL, "%s", report);
    }
    snprintf(want, sizeof(want), "at least %" PRIu64 " record(s)",
             (uint64_t)60 - bad_seq + 1);
    cr_assert(strstr(report, want) != NULL, "%s", report);

    cr_assert_eq(segments(jdir, names, MAXSEG), 2);
    cr_assert_eq(file_size(path), offs[1]);
    cr_assert_eq(read_all(jdir, 0, &first, &count, NULL), 0);
    cr_assert_eq(count, bad_seq - 1);
    /* The writer continues where the good part ends. */
    j = jopen(jdir, 400);
    cr_assert_eq(cc_journal_next_seq(j), bad_seq);
    for (i = 0; i < 30; i++)
        append_one(j);
    flush(j);
    cc_journal_close(j);
    cr_assert_eq(read_all(jdir, 0, &first, &count, NULL), 0);
    cr_assert_eq(count, bad_seq - 1 + 30);

    /* A clean journal is left alone. */
    cr_assert_eq(cc_journal_repair(jdir, report, sizeof(report)), 0);
    cr_assert(strstr(report, "clean") != NULL, "%s", report);
    free(b);
}

Test(journal, repair_removes_a_segment_with_a_bad_header) {
    char names[MAXSEG][32], path[256], report[4096], want[128];
    uint64_t first, count;
    size_t nseg;
    unsigned char *b;
    size_t len;

    nseg = build(jdir, 300, 40);
    cr_assert_geq(nseg, 3);
    segments(jdir, names, MAXSEG);
    snprintf(path, sizeof(path), "%s/%s", jdir, names[1]);
    b = (unsigned char *)read_file(path, &len);
    b[0] = 'X';
    spit(path, b, len);
    free(b);
    cr_assert_eq(cc_journal_repair(jdir, report, sizeof(report)), 1, "%s",
                 report);
    cr_assert(strstr(report, "bad magic") != NULL, "%s", report);
    /* The records of the removed segment, counted from the names. */
    snprintf(want, sizeof(want), "records %" PRIu64 "..%" PRIu64,
             (uint64_t)strtoull(names[1], NULL, 10),
             (uint64_t)strtoull(names[2], NULL, 10) - 1);
    cr_assert(strstr(report, want) != NULL, "%s\nwant %s", report, want);
    snprintf(want, sizeof(want), "at least %" PRIu64 " record(s)",
             (uint64_t)(40 - strtoull(names[1], NULL, 10) + 1));
    cr_assert(strstr(report, want) != NULL, "%s\nwant %s", report, want);
    cr_assert_eq(segments(jdir, names, MAXSEG), 1);
    cr_assert_eq(read_all(jdir, 0, &first, &count, NULL), 0);
    cr_assert_lt(count, 40);
    cr_assert_gt(count, 0);
}

Test(journal, remove_before_deletes_only_covered_segments) {
    char names[MAXSEG][32], before[MAXSEG][32], err[256];
    struct cc_journal_reader *r;
    struct cc_journal *j;
    uint64_t first, count, cover;
    size_t nseg, n2, i;
    int removed, k;

    j = jopen(jdir, 300);
    for (k = 0; k < 80; k++)
        append_one(j);
    flush(j);
    nseg = segments(jdir, before, MAXSEG);
    cr_assert_geq(nseg, 6);
    /* Cover up to the middle of the fourth segment. */
    cover = strtoull(before[3], NULL, 10) + 1;
    removed = cc_journal_remove_before(j, cover);
    cr_assert_eq(removed, 3, "%s", cc_journal_error(j));
    n2 = segments(jdir, names, MAXSEG);
    cr_assert_eq(n2, nseg - 3);
    for (i = 0; i < n2; i++)
        cr_assert_str_eq(names[i], before[i + 3]);
    /* Reading from the covered point still works; from before it, the
     * records are gone and the reader says so. */
    cr_assert_eq(read_all(jdir, cover, &first, &count, NULL), 0);
    cr_assert_eq(count, 80 - cover + 1);
    cr_assert_eq(cc_journal_reader_open(&r, jdir, 1, err, sizeof(err)),
                 CC_ENOENT);
    cr_assert(strstr(err, "gone") != NULL, "%s", err);
    cr_assert_eq(read_all(jdir, 0, &first, &count, NULL), 0);
    cr_assert_eq(first, cover - 1);
    /* Everything covered: the current segment stays. */
    removed = cc_journal_remove_before(j, UINT64_MAX);
    cr_assert_geq(removed, 0);
    cr_assert_eq(segments(jdir, names, MAXSEG), 1);
    append_one(j);
    flush(j);
    cc_journal_close(j);
    j = jopen(jdir, 300);
    cr_assert_eq(cc_journal_next_seq(j), 82);
    cc_journal_close(j);
}

/* A snapshot covers records the journal lost (written before their sync,
 * then a crash): opened to continue at the snapshot's seq, a journal that
 * ends before it is emptied and starts there; one that reaches it keeps
 * its segments and continues where it ends. */
Test(journal, a_journal_behind_its_snapshot_starts_over_at_it) {
    struct cc_journal_opts o = {.segment_size = 300};
    char names[MAXSEG][32], err[512] = "";
    struct cc_journal *j;
    uint64_t first, count;
    int k;

    j = jopen(jdir, 300);
    for (k = 0; k < 30; k++)
        append_one(j);
    flush(j);
    cc_journal_close(j);
    cr_assert_geq(segments(jdir, names, MAXSEG), 2);

    /* Reaching the snapshot: nothing changes. */
    o.first_seq = 31;
    cr_assert_eq(cc_journal_open(&j, jdir, &o, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(cc_journal_next_seq(j), 31);
    cc_journal_close(j);
    cr_assert_eq(read_all(jdir, 0, &first, &count, NULL), 0);
    cr_assert_eq(count, 30);

    /* Behind it: every segment goes, and the journal starts at 40. */
    o.first_seq = 40;
    cr_assert_eq(cc_journal_open(&j, jdir, &o, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(cc_journal_next_seq(j), 40);
    cr_assert_eq(segments(jdir, names, MAXSEG), 1);
    cr_assert_str_eq(names[0], "00000000000000000040.seg");
    append_one(j);
    flush(j);
    cc_journal_close(j);
    cr_assert_eq(read_all(jdir, 40, &first, &count, NULL), 0);
    cr_assert_eq(first, 40);
    cr_assert_eq(count, 1);
}

/* ---- Write failures --------------------------------------------------- */

/* After the writes failed and then succeeded, the journal holds 1..total,
 * each exactly once (read_all checks order and content). */
static void
check_exactly_once(const char *dir, uint64_t total) {
    uint64_t first, count;

    cr_assert_eq(read_all(dir, 0, &first, &count, NULL), 0);
    cr_assert_eq(first, 1);
    cr_assert_eq(count, total);
}

/* A file size limit makes pwrite stop part-way and then fail with EFBIG:
 * the records stay buffered, and raising the limit lets the same call
 * finish, nothing lost or repeated. Needs no privilege. */
Test(journal, failed_writes_keep_records_until_they_succeed) {
    struct rlimit old, lim;
    struct cc_journal *j;
    uint64_t written;
    size_t buffered;
    int k, round, rc;

    signal(SIGXFSZ, SIG_IGN);
    cr_assert_eq(getrlimit(RLIMIT_FSIZE, &old), 0);
    j = jopen(jdir, 1 << 20);
    for (k = 0; k < 10; k++)
        append_one(j);
    flush(j);
    lim = old;
    lim.rlim_cur = 3000;
    cr_assert_eq(setrlimit(RLIMIT_FSIZE, &lim), 0);
    for (round = 0; round < 3; round++) {
        for (k = 0; k < 40; k++)
            append_one(j);
        rc = cc_journal_write(j);
        cr_assert_eq(rc, CC_EIO);
        cr_assert(strstr(cc_journal_error(j), "File too large") != NULL, "%s",
                  cc_journal_error(j));
        buffered = cc_journal_buffered(j);
        written = cc_journal_written_seq(j);
        cr_assert_gt(buffered, 0);
        cr_assert_lt(written, cc_journal_next_seq(j));
        /* A second try fails too, and changes nothing. */
        cr_assert_eq(cc_journal_write(j), CC_EIO);
        cr_assert_eq(cc_journal_buffered(j), buffered);
        cr_assert_eq(cc_journal_written_seq(j), written);
        /* A little more room: some progress (part of a record, perhaps),
         * still an error. */
        lim.rlim_cur += 700;
        cr_assert_eq(setrlimit(RLIMIT_FSIZE, &lim), 0);
        cr_assert_eq(cc_journal_write(j), CC_EIO);
        cr_assert_lt(cc_journal_buffered(j), buffered);
    }
    cr_assert_eq(setrlimit(RLIMIT_FSIZE, &old), 0);
    flush(j);
    cc_journal_close(j);
    check_exactly_once(jdir, 130);
}

/* A new segment whose header cannot be written: the write fails, no
 * header-less file is left behind, and the retry starts the segment. */
Test(journal, a_segment_that_cannot_be_created_is_retried) {
    char names[MAXSEG][32], path[256];
    struct rlimit old, lim;
    struct cc_journal *j;
    size_t nseg;
    uint64_t total = 0;

    signal(SIGXFSZ, SIG_IGN);
    cr_assert_eq(getrlimit(RLIMIT_FSIZE, &old), 0);
    j = jopen(jdir, 200);
    /* Fill the first segment to its size, synced: the next record needs
     * a new one. */
    do {
        append_one(j);
        total++;
        flush(j);
        nseg = segments(jdir, names, MAXSEG);
        snprintf(path, sizeof(path), "%s/%s", jdir, names[nseg - 1]);
    } while (file_size(path) < 200);
    cr_assert_eq(nseg, 1);
    lim = old;
    lim.rlim_cur = 16;
    cr_assert_eq(setrlimit(RLIMIT_FSIZE, &lim), 0);
    append_one(j);
    append_one(j);
    total += 2;
    cr_assert_eq(cc_journal_write(j), CC_EIO);
    cr_assert(strstr(cc_journal_error(j), "header") != NULL, "%s",
              cc_journal_error(j));
    cr_assert_eq(segments(jdir, names, MAXSEG), 1);
    cr_assert_eq(cc_journal_written_seq(j), total - 1);
    cr_assert_eq(setrlimit(RLIMIT_FSIZE, &old), 0);
    flush(j);
    cr_assert_eq(segments(jdir, names, MAXSEG), 2);
    cc_journal_close(j);
    check_exactly_once(jdir, total);
}

/* The real thing: a tmpfs of 64 KiB, filled. Needs root and a kernel
 * that lets this process mount. */
Test(journal, disk_full_on_tmpfs_keeps_records_until_space_returns) {
    char mnt[128], dir[160], filler[160];
    struct cc_journal *j;
    unsigned char chunk[4096];
    size_t buffered;
    int fd, k, rc, fails = 0;

    snprintf(mnt, sizeof(mnt), "%s/mnt", root);
    cr_assert_eq(mkdir(mnt, 0755), 0);
    if (mount("tmpfs", mnt, "tmpfs", 0, "size=64k") != 0)
        cr_skip_test("cannot mount a tmpfs to fill up (%s): needs root and "
                     "CAP_SYS_ADMIN; the EFBIG test covers the same paths",
                     strerror(errno));
    snprintf(dir, sizeof(dir), "%s/j", mnt);
    snprintf(filler, sizeof(filler), "%s/filler", mnt);
    j = jopen(dir, 12000);
    for (k = 0; k < 20; k++)
        append_one(j);
    flush(j);

    /* Fill the file system. */
    memset(chunk, 'f', sizeof(chunk));
    fd = open(filler, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    cr_assert_geq(fd, 0);
    while (write(fd, chunk, sizeof(chunk)) > 0)
        ;
    close(fd);

    /* Enough records to need two more segments: writes and segment
     * creation both fail. */
    for (k = 0; k < 300; k++)
        append_one(j);
    for (k = 0; k < 5; k++) {
        rc = cc_journal_write(j);
        if (rc == 1) {
            cr_assert_eq(cc_journal_sync(j), 0);
            continue;
        }
        cr_assert_eq(rc, CC_EIO);
        fails++;
    }
    cr_assert_gt(fails, 0);
    cr_assert(strstr(cc_journal_error(j), "No space left") != NULL, "%s",
              cc_journal_error(j));
    buffered = cc_journal_buffered(j);
    cr_assert_gt(buffered, 0);
    cr_assert_lt(cc_journal_written_seq(j), cc_journal_next_seq(j));

    cr_log_info("tmpfs full: %d failed writes, %zu bytes buffered (%s)", fails,
                buffered, cc_journal_error(j));
    /* Space returns. */
    cr_assert_eq(unlink(filler), 0);
    flush(j);
    cc_journal_close(j);
    check_exactly_once(dir, 320);
}

/* The documented split: a sync may run on another thread while the loop
 * thread appends. (A TSan build checks the claim; here it must at least
 * not lose or mangle a record.) */
struct sync_arg {
    struct cc_journal *j;
    int rc;
};

static void *
sync_thread(void *p) {
    struct sync_arg *a = p;
    int i;

    a->rc = 0;
    for (i = 0; i < 20 && a->rc == 0; i++)
        a->rc = cc_journal_sync(a->j);
    return NULL;
}

Test(journal, appends_while_a_sync_runs) {
    struct sync_arg a;
    struct cc_journal *j = jopen(jdir, 0);
    pthread_t t;
    int round, k;

    for (round = 0; round < 20; round++) {
        cr_assert_eq(cc_journal_write(j), 0);
        a.j = j;
        cr_assert_eq(pthread_create(&t, NULL, sync_thread, &a), 0);
        for (k = 0; k < 500; k++)
            append_one(j);
        pthread_join(t, NULL);
        cr_assert_eq(a.rc, 0);
    }
    flush(j);
    cc_journal_close(j);
    check_exactly_once(jdir, 10000);
}
