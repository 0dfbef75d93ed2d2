/* hash_table.c - a chained hash table of string keys on the xmm_* API,
 * growing and shrinking with its load, checked against a brute-force
 * array over random puts, gets and deletes.
 *
 * Entries and keys are XMM blocks (xmm_malloc, xmm_strdup); the bucket
 * array is xmm_calloc'd. A resize that runs out of memory keeps the old
 * array: the table is never left half rehashed. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "example.h"

struct entry {
    char *key;
    uint64_t hash;  /* kept, so a resize does not rehash the strings */
    uint64_t value;
    struct entry *next;
};

struct table {
    struct entry **buckets;
    size_t bucket_count; /* a power of two */
    size_t count;
    unsigned grows, shrinks;
};

#define MIN_BUCKETS 16

static uint64_t hash_of(const char *key)
{
    uint64_t hash = 0xcbf29ce484222325ull; /* FNV-1a */
    for (; *key; key++)
        hash = (hash ^ (unsigned char)*key) * 0x100000001b3ull;
    return hash;
}

static int table_init(struct table *table)
{
    *table = (struct table){xmm_calloc(MIN_BUCKETS, sizeof(struct entry *)), MIN_BUCKETS, 0, 0, 0};
    return table->buckets ? 0 : -1;
}

/* Moves every entry into a new array of `bucket_count` buckets. */
static int table_resize(struct table *table, size_t bucket_count)
{
    struct entry **buckets = xmm_calloc(bucket_count, sizeof(*buckets));
    if (!buckets)
        return -1; /* the old array stays in use */
    for (size_t i = 0; i < table->bucket_count; i++) {
        struct entry *entry = table->buckets[i];
        while (entry) {
            struct entry *next = entry->next;
            struct entry **bucket = &buckets[entry->hash & (bucket_count - 1)];
            entry->next = *bucket;
            *bucket = entry;
            entry = next;
        }
    }
    xmm_free(table->buckets);
    table->buckets = buckets;
    table->bucket_count = bucket_count;
    return 0;
}

/* The link that points at `key`'s entry, or at the end of its chain. */
static struct entry **find_link(const struct table *table, const char *key, uint64_t hash)
{
    struct entry **link = &table->buckets[hash & (table->bucket_count - 1)];
    while (*link && ((*link)->hash != hash || strcmp((*link)->key, key)))
        link = &(*link)->next;
    return link;
}

/* Sets `key` to `value`. Returns 1 if the key is new, 0 if it was updated,
 * -1 if out of memory. Grows at a load of 3/4. */
static int table_put(struct table *table, const char *key, uint64_t value)
{
    uint64_t hash = hash_of(key);
    struct entry **link = find_link(table, key, hash);
    if (*link) {
        (*link)->value = value;
        return 0;
    }
    struct entry *entry = xmm_malloc(sizeof(*entry));
    char *copy = xmm_strdup(key);
    if (!entry || !copy) {
        xmm_free(entry);
        xmm_string_free(copy);
        return -1;
    }
    *entry = (struct entry){copy, hash, value, NULL};
    *link = entry;
    table->count++;
    if (table->count > table->bucket_count / 4 * 3 && table_resize(table, table->bucket_count * 2) == 0)
        table->grows++;
    return 1;
}

static const struct entry *table_get(const struct table *table, const char *key)
{
    return *find_link(table, key, hash_of(key));
}

/* Removes `key`. Returns 1 if it was there. Shrinks below a load of 1/8. */
static int table_delete(struct table *table, const char *key)
{
    struct entry **link = find_link(table, key, hash_of(key));
    struct entry *entry = *link;
    if (!entry)
        return 0;
    *link = entry->next;
    xmm_string_free(entry->key);
    xmm_free(entry);
    table->count--;
    if (table->bucket_count > MIN_BUCKETS && table->count < table->bucket_count / 8 &&
        table_resize(table, table->bucket_count / 2) == 0)
        table->shrinks++;
    return 1;
}

static void table_free(struct table *table)
{
    for (size_t i = 0; i < table->bucket_count; i++) {
        struct entry *entry = table->buckets[i];
        while (entry) {
            struct entry *next = entry->next;
            xmm_string_free(entry->key);
            xmm_free(entry);
            entry = next;
        }
    }
    xmm_free(table->buckets);
}

/* ---- the reference: one slot per possible key ------------------------------ */

enum { KEY_SPACE = 20000, OPERATIONS = 300000 };

struct reference {
    unsigned char present[KEY_SPACE];
    uint64_t value[KEY_SPACE];
    size_t count;
};

static void format_key(char *text, size_t size, unsigned number)
{
    snprintf(text, size, "key-%u", number);
}

/* Every entry is the reference's, in the bucket its hash names, and the
 * counts agree: nothing missing, nothing extra. */
static void compare_whole(const struct table *table, const struct reference *reference)
{
    size_t seen = 0;
    for (size_t i = 0; i < table->bucket_count; i++) {
        for (const struct entry *entry = table->buckets[i]; entry; entry = entry->next) {
            unsigned number = (unsigned)strtoul(entry->key + 4, NULL, 10);
            EXPECT(number < KEY_SPACE && reference->present[number] &&
                       reference->value[number] == entry->value,
                   "entry %s=%llu", entry->key, (unsigned long long)entry->value);
            EXPECT((entry->hash & (table->bucket_count - 1)) == i && entry->hash == hash_of(entry->key),
                   "entry %s in bucket %zu", entry->key, i);
            seen++;
        }
    }
    EXPECT(seen == reference->count && table->count == reference->count,
           "%zu entries seen, count %zu, reference %zu", seen, table->count, reference->count);
}

enum operation { PUT, DELETE, GET };

/* Puts dominate for a while (80%), then deletes (80%), so the table grows
 * and shrinks several times. */
static enum operation choose(int step, uint64_t *random)
{
    int put_phase = (step / (OPERATIONS / 6)) % 2 == 0;
    uint64_t roll = example_random(random) % 100;
    if (roll < 80)
        return put_phase ? PUT : DELETE;
    if (roll < 90)
        return put_phase ? DELETE : PUT;
    return GET;
}

static void one_operation(struct table *table, struct reference *reference, int step,
                          uint64_t *random)
{
    unsigned number = (unsigned)(example_random(random) % KEY_SPACE);
    char key[32];
    format_key(key, sizeof(key), number);
    enum operation operation = choose(step, random);
    if (operation == PUT) {
        uint64_t value = example_random(random);
        int added = table_put(table, key, value);
        EXPECT(added == !reference->present[number], "put %s returned %d", key, added);
        reference->count += !reference->present[number];
        reference->present[number] = 1;
        reference->value[number] = value;
    } else if (operation == DELETE) {
        int removed = table_delete(table, key);
        EXPECT(removed == reference->present[number], "delete %s returned %d", key, removed);
        reference->count -= reference->present[number];
        reference->present[number] = 0;
    } else {
        const struct entry *entry = table_get(table, key);
        EXPECT((entry != NULL) == reference->present[number], "get %s", key);
        if (entry)
            EXPECT(entry->value == reference->value[number], "value of %s", key);
    }
}

int main(void)
{
    int64_t live_before = example_live_blocks();
    struct reference *reference = calloc(1, sizeof(*reference));
    struct table table;
    if (table_init(&table) != 0) {
        perror("table_init");
        return 1;
    }
    uint64_t random = 11;
    size_t largest = 0;
    for (int step = 0; step < OPERATIONS; step++) {
        one_operation(&table, reference, step, &random);
        if (table.bucket_count > largest)
            largest = table.bucket_count;
        if (step % 5000 == 0)
            compare_whole(&table, reference);
    }
    compare_whole(&table, reference);
    EXPECT(table.grows > 0 && table.shrinks > 0, "resizes: %u grows, %u shrinks", table.grows,
           table.shrinks);
    printf("hash_table: %d operations, %zu entries at the end, %u grows and %u shrinks "
           "(up to %zu buckets), %d mismatches\n",
           OPERATIONS, table.count, table.grows, table.shrinks, largest, example_failures);
    table_free(&table);
    free(reference);
    EXPECT(example_live_blocks() == live_before, "%lld XMM blocks leaked",
           (long long)(example_live_blocks() - live_before));
    return example_failures ? 1 : 0;
}
