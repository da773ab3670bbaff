/* HPROF heap dumps: a resumable scanner over a dump's bytes, in two passes, and the
 * id -> reference table that joins them.
 *
 * The format (JDK 8 to 25 write it): "JAVA PROFILE 1.0.2\0", the identifier size (4 or
 * 8), a timestamp, then records: tag u1, time u4, length u4, body. HEAP DUMP (0x0C) and
 * HEAP DUMP SEGMENT (0x1C) records hold sub-records (roots, CLASS DUMP, INSTANCE DUMP,
 * OBJECT ARRAY DUMP, PRIMITIVE ARRAY DUMP). Every number is big-endian.
 *
 * heapalias/hprof/ feeds the file through ha_hprof_scan one buffer at a time, twice:
 * - the index pass records strings, classes, roots and one row per object, and skips
 *   the bodies of objects;
 * - the fill pass, once the objects are allocated in a heap, writes each object's
 *   references (translated through the table) and primitive bytes into it.
 * The scanner stops where the buffer ends (HA_HPROF_MORE: how many bytes the next item
 * needs), where an output table is full (HA_HPROF_FULL: which one), or at the first
 * byte that cannot be right, with the offset and tag of the record at fault. It never
 * reads past the buffer nor writes past a table or the heap. */
#include "object_model.h"

#include <string.h>

enum {
    TAG_STRING = 0x01, TAG_LOAD_CLASS = 0x02, TAG_HEAP_DUMP = 0x0C,
    TAG_HEAP_DUMP_SEGMENT = 0x1C, TAG_HEAP_DUMP_END = 0x2C,
    SUB_ROOT_UNKNOWN = 0xFF, SUB_ROOT_JNI_GLOBAL = 0x01, SUB_ROOT_JNI_LOCAL = 0x02,
    SUB_ROOT_JAVA_FRAME = 0x03, SUB_ROOT_NATIVE_STACK = 0x04, SUB_ROOT_STICKY_CLASS = 0x05,
    SUB_ROOT_THREAD_BLOCK = 0x06, SUB_ROOT_MONITOR_USED = 0x07, SUB_ROOT_THREAD_OBJECT = 0x08,
    SUB_CLASS_DUMP = 0x20, SUB_INSTANCE = 0x21, SUB_OBJECT_ARRAY = 0x22,
    SUB_PRIMITIVE_ARRAY = 0x23,
    TYPE_OBJECT = 2,
    RECORD_HEADER = 9, /* tag, time, length */
};

#define MAX_ARRAY_LENGTH 0x7fffffffULL /* a Java array's length is an int */

static inline uint64_t be(const uint8_t *p, unsigned n)
{
    uint64_t value = 0;
    for (unsigned i = 0; i < n; i++)
        value = value << 8 | p[i];
    return value;
}

/* Bytes of a value of basic type `type`; 0 for a type HPROF does not define. */
static inline unsigned type_size(uint32_t type, uint32_t id_size)
{
    static const uint8_t sizes[12] = {0, 0, 0, 0, 1, 2, 4, 8, 1, 2, 4, 8};
    if (type == TYPE_OBJECT)
        return id_size;
    return type < 12 ? sizes[type] : 0;
}

/* The table id -> reference: open addressing with linear probing over `capacity`
 * (key, value) pairs, key 0 empty. An id's home slot is its hash scaled to the
 * capacity, which need not be a power of two. */
static inline uint64_t home_of(const ha_hprof_table *t, uint64_t id)
{
    return (uint64_t)(((unsigned __int128)(id * 0x9E3779B97F4A7C15ULL) * t->capacity) >> 64);
}

static inline void table_prefetch(const ha_hprof_table *t, uint64_t id)
{
    __builtin_prefetch(&t->slots[2 * home_of(t, id)]);
}

static inline uint64_t table_get(const ha_hprof_table *t, uint64_t id)
{
    for (uint64_t i = home_of(t, id);;) {
        uint64_t key = t->slots[2 * i];
        if (key == id)
            return t->slots[2 * i + 1];
        if (key == 0)
            return 0;
        if (++i == t->capacity)
            i = 0;
    }
}

int ha_hprof_table_add(ha_hprof_table *t, const uint64_t *ids, const uint64_t *values,
                       uint64_t n, uint64_t *at_fault)
{
    if (n >= t->capacity - t->count) /* an empty slot must end every probe */
        return HA_HPROF_ARGUMENT;
    for (uint64_t k = 0; k < n; k++) {
        uint64_t id = ids[k];
        *at_fault = k;
        if (id == 0)
            return HA_HPROF_NULL_ID;
        uint64_t i = home_of(t, id);
        while (t->slots[2 * i] != 0) {
            if (t->slots[2 * i] == id)
                return HA_HPROF_DUPLICATE;
            if (++i == t->capacity)
                i = 0;
        }
        t->slots[2 * i] = id;
        t->slots[2 * i + 1] = values[k];
        t->count++;
    }
    return HA_HPROF_OK;
}

uint64_t ha_hprof_lookup(const ha_hprof_table *t, const uint64_t *ids, uint64_t n,
                         uint64_t *out)
{
    uint64_t missing = 0;
    for (uint64_t k = 0; k < n; k++) {
        if (k + 8 < n)
            table_prefetch(t, ids[k + 8]);
        uint64_t ref = ids[k] ? table_get(t, ids[k]) : 0;
        missing += ids[k] != 0 && ref == 0;
        out[k] = ref;
    }
    return missing;
}

/* ---- the scanner ---- */

typedef struct scan {
    ha_hprof_cursor *c;
    const uint8_t *buf;
    uint64_t base, len;
    ha_hprof_index *ix;
    ha_hprof_fill *fill;
} scan;

/* Stop: the item being read needs `need` bytes from c->offset on. */
static int more(scan *s, uint64_t need)
{
    s->c->need = need;
    return HA_HPROF_MORE;
}

static int fail(scan *s, int error, uint64_t offset, uint32_t tag, uint64_t value)
{
    ha_hprof_cursor *c = s->c;
    c->error_offset = offset;
    c->error_tag = tag;
    c->error_record = c->in_heap ? c->record_tag : tag;
    c->error_value = value;
    return error;
}

static int full(scan *s, uint32_t table)
{
    s->c->full = table;
    return HA_HPROF_FULL;
}

/* Room for `rows` more rows in table `which` of the index; HA_HPROF_FULL otherwise. */
#define ROOM(s, which, rows) do { \
        if ((s)->ix->counts[which] + (rows) > (s)->ix->capacities[which]) \
            return full(s, which); \
    } while (0)

/* Reading one item: `at` is its file offset, `pos` the offset being read. Each read is
 * checked against the end of the enclosing record (the item overruns it: corrupt) and
 * then against the end of the buffer (the item is incomplete here: more). */
typedef struct item {
    uint64_t at, pos, limit; /* limit: the end of the enclosing record */
    uint32_t tag;
} item;

#define NEED(s, it, n) do { \
        if ((it)->pos + (n) > (it)->limit) \
            return fail(s, HA_HPROF_OVERRUN, (it)->at, (it)->tag, (it)->limit); \
        if ((it)->pos + (n) > (s)->base + (s)->len) \
            return more(s, (it)->pos + (n) - (it)->at); \
    } while (0)

static inline const uint8_t *here(const scan *s, const item *it)
{
    return s->buf + (it->pos - s->base);
}

static inline uint64_t take(const scan *s, item *it, unsigned n)
{
    uint64_t value = be(here(s, it), n);
    it->pos += n;
    return value;
}

/* A basic type a value may have; the item is corrupt otherwise. */
#define TYPE_OK(s, it, type, allow_object) do { \
        if (type_size(type, (s)->c->id_size) == 0 || (!(allow_object) && (type) == TYPE_OBJECT)) \
            return fail(s, HA_HPROF_BAD_TYPE, (it)->at, (it)->tag, type); \
    } while (0)

/* The top-level tags the format defines. */
static int top_level_known(uint32_t tag)
{
    return (tag >= 0x01 && tag <= 0x0E && tag != 0x08 && tag != 0x09) ||
           tag == TAG_HEAP_DUMP_SEGMENT || tag == TAG_HEAP_DUMP_END;
}

static int top_level(scan *s)
{
    ha_hprof_cursor *c = s->c;
    item it = {c->offset, c->offset, UINT64_MAX, 0};
    c->item_at = it.at;
    c->item_tag = 0;
    NEED(s, &it, RECORD_HEADER);
    it.tag = c->item_tag = (uint32_t)take(s, &it, 1);
    it.pos += 4; /* time */
    uint64_t length = take(s, &it, 4);
    uint32_t id = c->id_size;
    if (!top_level_known(it.tag))
        return fail(s, HA_HPROF_BAD_TAG, it.at, it.tag, it.tag);
    it.limit = it.pos + length;
    c->record_tag = it.tag;
    switch (it.tag) {
    case TAG_HEAP_DUMP:
    case TAG_HEAP_DUMP_SEGMENT:
        c->in_heap = 1;
        c->record_end = it.limit;
        c->heap_records++;
        c->segments += it.tag == TAG_HEAP_DUMP_SEGMENT;
        c->offset = it.pos;
        return HA_HPROF_OK;
    case TAG_HEAP_DUMP_END:
        if (length != 0)
            return fail(s, HA_HPROF_BAD_LENGTH, it.at, it.tag, length);
        c->ended = 1;
        c->offset = it.pos;
        return HA_HPROF_OK;
    case TAG_STRING:
        if (length < id)
            return fail(s, HA_HPROF_BAD_LENGTH, it.at, it.tag, length);
        if (c->pass == HA_HPROF_PASS_INDEX) {
            NEED(s, &it, length);
            uint64_t text = length - id;
            ROOM(s, HA_HPROF_STRINGS, 1);
            ROOM(s, HA_HPROF_TEXT, text);
            ha_hprof_string *row = (ha_hprof_string *)s->ix->rows[HA_HPROF_STRINGS] +
                                   s->ix->counts[HA_HPROF_STRINGS]++;
            row->id = take(s, &it, id);
            row->at = s->ix->counts[HA_HPROF_TEXT];
            row->length = text;
            memcpy((uint8_t *)s->ix->rows[HA_HPROF_TEXT] + row->at, here(s, &it), text);
            s->ix->counts[HA_HPROF_TEXT] += text;
            c->offset = it.limit;
            return HA_HPROF_OK;
        }
        break;
    case TAG_LOAD_CLASS:
        if (length != 8 + 2ULL * id)
            return fail(s, HA_HPROF_BAD_LENGTH, it.at, it.tag, length);
        if (c->pass == HA_HPROF_PASS_INDEX) {
            NEED(s, &it, length);
            ROOM(s, HA_HPROF_LOADS, 1);
            ha_hprof_load *row = (ha_hprof_load *)s->ix->rows[HA_HPROF_LOADS] +
                                 s->ix->counts[HA_HPROF_LOADS]++;
            row->serial = (uint32_t)take(s, &it, 4);
            row->class_id = take(s, &it, id);
            it.pos += 4; /* stack trace serial */
            row->name_id = take(s, &it, id);
            c->offset = it.limit;
            return HA_HPROF_OK;
        }
        break;
    }
    c->skip = length; /* a record this pass does not read */
    c->offset = it.pos;
    return HA_HPROF_OK;
}

/* CLASS DUMP: in the index pass, its row, fields and static and constant values. */
static int class_dump(scan *s, item *it)
{
    uint32_t id = s->c->id_size;
    int index = s->c->pass == HA_HPROF_PASS_INDEX;
    NEED(s, it, 7ULL * id + 4 + 4 + 2);
    ha_hprof_class row;
    row.id = take(s, it, id);
    it->pos += 4; /* stack trace serial */
    row.super_id = take(s, it, id);
    row.loader = take(s, it, id);
    row.signers = take(s, it, id);
    row.domain = take(s, it, id);
    it->pos += 2ULL * id; /* reserved */
    row.instance_size = (uint32_t)take(s, it, 4);
    row.offset = it->at;
    uint64_t values = index ? s->ix->counts[HA_HPROF_VALUES] : 0;
    uint64_t fields = index ? s->ix->counts[HA_HPROF_FIELDS] : 0;
    ha_hprof_value *value_rows = index ? s->ix->rows[HA_HPROF_VALUES] : NULL;
    ha_hprof_field *field_rows = index ? s->ix->rows[HA_HPROF_FIELDS] : NULL;
    row.values = values;
    /* The constant pool (index, type, value), then statics (name, type, value). */
    for (int statics = 0; statics < 2; statics++) {
        NEED(s, it, 2);
        uint64_t count = take(s, it, 2);
        for (uint64_t k = 0; k < count; k++) {
            unsigned head = statics ? id : 2;
            NEED(s, it, head + 1);
            uint64_t name = take(s, it, head);
            uint32_t type = (uint32_t)take(s, it, 1);
            TYPE_OK(s, it, type, 1);
            unsigned size = type_size(type, id);
            NEED(s, it, size);
            uint64_t value = take(s, it, size);
            if (index) {
                if (values + 1 > s->ix->capacities[HA_HPROF_VALUES])
                    return full(s, HA_HPROF_VALUES);
                value_rows[values++] = (ha_hprof_value){name, value, type, (uint32_t)statics};
            }
        }
    }
    NEED(s, it, 2);
    uint64_t count = take(s, it, 2);
    for (uint64_t k = 0; k < count; k++) {
        NEED(s, it, id + 1ULL);
        uint64_t name = take(s, it, id);
        uint32_t type = (uint32_t)take(s, it, 1);
        TYPE_OK(s, it, type, 1);
        if (index) {
            if (fields + 1 > s->ix->capacities[HA_HPROF_FIELDS])
                return full(s, HA_HPROF_FIELDS);
            field_rows[fields++] = (ha_hprof_field){name, type, 0};
        }
    }
    if (index) {
        ROOM(s, HA_HPROF_CLASSES, 1);
        row.nvalues = (uint32_t)(values - row.values);
        row.fields = s->ix->counts[HA_HPROF_FIELDS];
        row.nfields = (uint32_t)count;
        ((ha_hprof_class *)s->ix->rows[HA_HPROF_CLASSES])[s->ix->counts[HA_HPROF_CLASSES]++] = row;
        s->ix->counts[HA_HPROF_VALUES] = values;
        s->ix->counts[HA_HPROF_FIELDS] = fields;
    }
    return HA_HPROF_OK;
}

/* The index pass's record of this object, checked in the fill pass: the file must not
 * have changed between the passes. */
static int same_object(scan *s, const item *it, uint64_t object_id, uint64_t klass,
                       uint64_t length)
{
    ha_hprof_fill *f = s->fill;
    uint64_t k = f->next;
    if (k >= f->nobjects || f->ids[k] != object_id || f->lengths[k] != length ||
        f->kinds[k] != it->tag)
        return fail(s, HA_HPROF_CHANGED, it->at, it->tag, object_id);
    int32_t c = f->klass[k];
    int same = it->tag == SUB_PRIMITIVE_ARRAY ? c == -(int64_t)klass
               : c < 0 || ((uint64_t)c < f->nclasses && f->class_ids[c] == klass);
    if (!same)
        return fail(s, HA_HPROF_CHANGED, it->at, it->tag, object_id);
    return HA_HPROF_OK;
}

/* Append one object's columns in the index pass. */
static int index_object(scan *s, const item *it, uint64_t object_id, uint64_t klass,
                        uint64_t length)
{
    static const uint32_t columns[] = {HA_HPROF_OBJECT_IDS, HA_HPROF_OBJECT_CLASSES,
                                       HA_HPROF_OBJECT_OFFSETS, HA_HPROF_OBJECT_LENGTHS,
                                       HA_HPROF_OBJECT_KINDS};
    ha_hprof_index *ix = s->ix;
    for (unsigned i = 0; i < sizeof columns / sizeof *columns; i++)
        ROOM(s, columns[i], 1);
    uint64_t k = ix->counts[HA_HPROF_OBJECT_IDS];
    ((uint64_t *)ix->rows[HA_HPROF_OBJECT_IDS])[k] = object_id;
    ((uint64_t *)ix->rows[HA_HPROF_OBJECT_CLASSES])[k] = klass;
    ((uint64_t *)ix->rows[HA_HPROF_OBJECT_OFFSETS])[k] = it->at;
    ((uint32_t *)ix->rows[HA_HPROF_OBJECT_LENGTHS])[k] = (uint32_t)length;
    ((uint8_t *)ix->rows[HA_HPROF_OBJECT_KINDS])[k] = (uint8_t)it->tag;
    for (unsigned i = 0; i < sizeof columns / sizeof *columns; i++)
        ix->counts[columns[i]]++;
    return HA_HPROF_OK;
}

static int object_at(scan *s, uint64_t w, uint64_t *words, uint64_t *nrefs);

/* The next arraylet chunk, whose header is at heap word `w`: its slots. */
static int next_chunk(scan *s, uint64_t w)
{
    uint64_t words, nrefs;
    if (object_at(s, w, &words, &nrefs))
        return HA_HPROF_ARGUMENT;
    s->c->slot = w + 1;
    s->c->slot_end = w + 1 + nrefs;
    return HA_HPROF_OK;
}

/* The next reference of the object being filled, translated through the table into
 * its slot: null for id 0 and for an id no object has (a dump that is not live). */
static inline int store_ref(scan *s, uint64_t id)
{
    ha_hprof_fill *f = s->fill;
    ha_hprof_cursor *c = s->c;
    uint64_t ref = id ? table_get(f->table, id) : 0;
    if (id == 0)
        c->nulls++;
    else if (ref == 0)
        c->missing++;
    else {
        c->refs++;
        c->edges++;
    }
    if (c->slot >= c->slot_end && !(c->chunked && next_chunk(s, c->slot_end) == HA_HPROF_OK))
        return HA_HPROF_ARGUMENT;
    f->heap[c->slot++] = ref;
    return HA_HPROF_OK;
}

/* Primitive bytes of the object being filled, into its payload. */
static inline int store_bytes(scan *s, const uint8_t *from, uint64_t n)
{
    ha_hprof_cursor *c = s->c;
    if (n > c->payload_end - c->payload)
        return HA_HPROF_ARGUMENT;
    memcpy((uint8_t *)s->fill->heap + c->payload, from, n);
    c->payload += n;
    return HA_HPROF_OK;
}

/* The object header at heap word `w`, checked: the slots and payload the fill pass
 * writes are the ones it claims, within the heap. HA_HPROF_ARGUMENT if it is none. */
static int object_at(scan *s, uint64_t w, uint64_t *words, uint64_t *nrefs)
{
    ha_hprof_fill *f = s->fill;
    if (w == 0 || w >= f->heap_words || !ha_header_ok(f->heap[w], w * 8, f->heap_words * 8))
        return HA_HPROF_ARGUMENT;
    *words = ha_words(f->heap[w]);
    *nrefs = ha_nrefs(f->heap[w]);
    return HA_HPROF_OK;
}

/* Start filling object f->next: its slots and payload, from its header. An arraylet's
 * spine holds only its chunks (which the caller links); the elements go to the chunks
 * that follow it, each an object of its own. */
static int begin_object(scan *s, int chunked)
{
    ha_hprof_fill *f = s->fill;
    ha_hprof_cursor *c = s->c;
    uint64_t ref = table_get(f->table, f->ids[f->next]), words, nrefs;
    uint64_t w = (ref - f->ref_add) / 8;
    if (ref == 0 || object_at(s, w, &words, &nrefs))
        return HA_HPROF_ARGUMENT;
    c->payload = (w + 1 + nrefs) * 8;
    c->payload_end = (w + words) * 8;
    c->chunked = chunked;
    c->edges = 0;
    if (chunked)
        return next_chunk(s, w + words);
    c->slot = w + 1;
    c->slot_end = w + 1 + nrefs;
    return HA_HPROF_OK;
}

static void end_object(scan *s)
{
    ha_hprof_fill *f = s->fill;
    f->edges[f->next++] = (uint32_t)s->c->edges;
}

static int instance(scan *s, item *it)
{
    ha_hprof_cursor *c = s->c;
    uint32_t id = c->id_size;
    NEED(s, it, 2ULL * id + 8);
    uint64_t object_id = take(s, it, id);
    it->pos += 4;
    uint64_t klass = take(s, it, id);
    uint64_t length = take(s, it, 4);
    if (c->pass == HA_HPROF_PASS_INDEX) {
        if (it->pos + length > it->limit)
            return fail(s, HA_HPROF_OVERRUN, it->at, it->tag, it->limit);
        int rc = index_object(s, it, object_id, klass, length);
        if (rc == HA_HPROF_OK)
            c->skip = length;
        return rc;
    }
    NEED(s, it, length);
    int rc = same_object(s, it, object_id, klass, length);
    if (rc)
        return rc;
    ha_hprof_fill *f = s->fill;
    int32_t k = f->klass[f->next];
    if (k < 0) /* same_object checked the others against class_ids */
        return fail(s, HA_HPROF_UNKNOWN_CLASS, it->at, it->tag, klass);
    const uint8_t *types = f->layout + f->layout_start[k];
    uint64_t ntypes = f->layout_start[k + 1] - f->layout_start[k];
    if (begin_object(s, 0))
        return fail(s, HA_HPROF_ARGUMENT, it->at, it->tag, object_id);
    uint64_t used = 0;
    for (uint64_t i = 0; i < ntypes && used + id <= length; i++) { /* overlap the misses */
        if (types[i] == TYPE_OBJECT)
            table_prefetch(f->table, be(here(s, it) + used, id));
        used += type_size(types[i], id);
    }
    used = 0;
    for (uint64_t i = 0; i < ntypes; i++) {
        unsigned size = type_size(types[i], id);
        if (used + size > length)
            return fail(s, HA_HPROF_BAD_FIELDS, it->at, it->tag, length);
        const uint8_t *p = here(s, it) + used;
        rc = types[i] == TYPE_OBJECT ? store_ref(s, be(p, id)) : store_bytes(s, p, size);
        if (rc)
            return fail(s, rc, it->at, it->tag, object_id);
        used += size;
    }
    if (used != length)
        return fail(s, HA_HPROF_BAD_FIELDS, it->at, it->tag, length);
    end_object(s);
    it->pos += length;
    return HA_HPROF_OK;
}

/* OBJECT ARRAY DUMP and PRIMITIVE ARRAY DUMP: the header here; the elements stream
 * through array_elements, as many as each buffer holds. */
static int array(scan *s, item *it)
{
    ha_hprof_cursor *c = s->c;
    uint32_t id = c->id_size;
    int objects = it->tag == SUB_OBJECT_ARRAY;
    NEED(s, it, id + 8ULL + (objects ? id : 1));
    uint64_t object_id = take(s, it, id);
    it->pos += 4;
    uint64_t length = take(s, it, 4);
    uint64_t klass = objects ? take(s, it, id) : take(s, it, 1);
    if (!objects)
        TYPE_OK(s, it, (uint32_t)klass, 0);
    if (length > MAX_ARRAY_LENGTH)
        return fail(s, HA_HPROF_BAD_ARRAY, it->at, it->tag, length);
    uint64_t element = objects ? id : type_size((uint32_t)klass, id);
    if (it->pos + length * element > it->limit)
        return fail(s, HA_HPROF_OVERRUN, it->at, it->tag, it->limit);
    if (c->pass == HA_HPROF_PASS_INDEX) {
        int rc = index_object(s, it, object_id, klass, length);
        if (rc == HA_HPROF_OK)
            c->skip = length * element;
        return rc;
    }
    int rc = same_object(s, it, object_id, klass, length);
    if (rc)
        return rc;
    if (begin_object(s, objects && length > s->fill->chunk_refs))
        return fail(s, HA_HPROF_ARGUMENT, it->at, it->tag, object_id);
    c->array_left = length;
    c->element = (uint32_t)element;
    c->array_refs = (uint32_t)objects;
    if (length == 0)
        end_object(s);
    return HA_HPROF_OK;
}

/* As many elements of the array being filled as the buffer holds. */
static int array_elements(scan *s)
{
    ha_hprof_cursor *c = s->c;
    uint64_t available = (s->base + s->len - c->offset) / c->element;
    uint64_t n = available < c->array_left ? available : c->array_left;
    const uint8_t *p = s->buf + (c->offset - s->base);
    int rc = HA_HPROF_OK;
    if (c->array_refs) {
        for (uint64_t i = 0; i < n && !rc; i++) {
            if (i + 8 < n) /* the table is far bigger than the caches: overlap the misses */
                table_prefetch(s->fill->table, be(p + (i + 8) * c->element, c->element));
            rc = store_ref(s, be(p + i * c->element, c->element));
        }
    } else {
        rc = store_bytes(s, p, n * c->element);
    }
    if (rc)
        return fail(s, rc, c->item_at, c->item_tag, c->array_left);
    c->offset += n * c->element;
    c->array_left -= n;
    if (c->array_left)
        return more(s, c->element); /* the rest is in the next buffer */
    end_object(s);
    return HA_HPROF_OK;
}

/* Bytes after the tag of a root sub-record, or 0 if `tag` names no root. */
static unsigned root_size(uint32_t tag, uint32_t id)
{
    switch (tag) {
    case SUB_ROOT_UNKNOWN:
    case SUB_ROOT_STICKY_CLASS:
    case SUB_ROOT_MONITOR_USED:
        return id;
    case SUB_ROOT_JNI_GLOBAL:
        return 2 * id;
    case SUB_ROOT_NATIVE_STACK:
    case SUB_ROOT_THREAD_BLOCK:
        return id + 4;
    case SUB_ROOT_JNI_LOCAL:
    case SUB_ROOT_JAVA_FRAME:
    case SUB_ROOT_THREAD_OBJECT:
        return id + 8;
    }
    return 0;
}

static int sub_record(scan *s)
{
    ha_hprof_cursor *c = s->c;
    item it = {c->offset, c->offset, c->record_end, 0};
    c->item_at = it.at;
    c->item_tag = 0;
    NEED(s, &it, 1);
    it.tag = c->item_tag = (uint32_t)take(s, &it, 1);
    int rc;
    unsigned size = root_size(it.tag, c->id_size);
    if (size) {
        NEED(s, &it, size);
        if (c->pass == HA_HPROF_PASS_INDEX) {
            ROOM(s, HA_HPROF_ROOTS, 1);
            ha_hprof_root *row = (ha_hprof_root *)s->ix->rows[HA_HPROF_ROOTS] +
                                 s->ix->counts[HA_HPROF_ROOTS]++;
            row->id = be(here(s, &it), c->id_size);
            row->kind = it.tag;
            row->offset = it.at;
        }
        it.pos += size;
        rc = HA_HPROF_OK;
    } else if (it.tag == SUB_CLASS_DUMP) {
        rc = class_dump(s, &it);
    } else if (it.tag == SUB_INSTANCE) {
        rc = instance(s, &it);
    } else if (it.tag == SUB_OBJECT_ARRAY || it.tag == SUB_PRIMITIVE_ARRAY) {
        rc = array(s, &it);
    } else {
        return fail(s, HA_HPROF_BAD_TAG, it.at, it.tag, it.tag);
    }
    if (rc == HA_HPROF_OK)
        c->offset = it.pos;
    return rc;
}

int ha_hprof_scan(ha_hprof_cursor *c, const uint8_t *buf, uint64_t base, uint64_t len,
                  ha_hprof_index *ix, ha_hprof_fill *fill)
{
    if ((c->id_size != 4 && c->id_size != 8) || c->offset < base || c->offset > base + len ||
        (c->pass == HA_HPROF_PASS_INDEX ? ix == NULL : fill == NULL))
        return HA_HPROF_ARGUMENT;
    scan s = {c, buf, base, len, ix, fill};
    c->need = 0;
    for (;;) {
        uint64_t left = base + len - c->offset;
        int rc;
        if (c->skip) {
            uint64_t n = c->skip < left ? c->skip : left;
            c->offset += n;
            c->skip -= n;
            if (c->skip)
                return more(&s, 1);
            continue;
        }
        if (c->array_left) {
            rc = array_elements(&s);
        } else if (c->in_heap && c->offset == c->record_end) {
            c->in_heap = 0;
            continue;
        } else if (left == 0) {
            return HA_HPROF_OK;
        } else {
            rc = c->in_heap ? sub_record(&s) : top_level(&s);
        }
        if (rc != HA_HPROF_OK)
            return rc;
    }
}
