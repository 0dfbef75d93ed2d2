/* list.c - a sorted singly linked list of records on the xmm_* API,
 * checked against a sorted array over random inserts, deletes and lookups.
 *
 * Each record and its name are XMM blocks (xmm_malloc, xmm_strconcat); the
 * list is walked into an xmm_slice for the comparison. */
#include <stdlib.h>
#include <string.h>

#include "example.h"

struct record {
    int key;
    char *name; /* "record-<key>" */
    struct record *next;
};

static char *name_of(int key)
{
    char digits[16];
    snprintf(digits, sizeof(digits), "%d", key);
    return xmm_strconcat("record-", digits);
}

/* The link that points at the first record with a key >= `key`. */
static struct record **position(struct record **head, int key)
{
    struct record **link = head;
    while (*link && (*link)->key < key)
        link = &(*link)->next;
    return link;
}

/* Inserts `key` unless present. Returns 1 if inserted, 0 if present, -1
 * if out of memory. */
static int list_insert(struct record **head, int key)
{
    struct record **link = position(head, key);
    if (*link && (*link)->key == key)
        return 0;
    struct record *record = xmm_malloc(sizeof(*record));
    char *name = name_of(key);
    if (!record || !name) {
        xmm_free(record);
        xmm_string_free(name);
        return -1;
    }
    *record = (struct record){key, name, *link};
    *link = record;
    return 1;
}

static int list_delete(struct record **head, int key)
{
    struct record **link = position(head, key);
    struct record *record = *link;
    if (!record || record->key != key)
        return 0;
    *link = record->next;
    xmm_string_free(record->name);
    xmm_free(record);
    return 1;
}

static const struct record *list_find(struct record *head, int key)
{
    struct record **link = position(&head, key);
    return *link && (*link)->key == key ? *link : NULL;
}

static void list_free(struct record *head)
{
    while (head) {
        struct record *next = head->next;
        xmm_string_free(head->name);
        xmm_free(head);
        head = next;
    }
}

/* ---- the reference: a sorted array of keys ------------------------------ */

struct sorted {
    int *keys;
    size_t count;
};

static size_t lower_bound(const struct sorted *set, int key)
{
    size_t low = 0, high = set->count;
    while (low < high) {
        size_t middle = (low + high) / 2;
        if (set->keys[middle] < key)
            low = middle + 1;
        else
            high = middle;
    }
    return low;
}

static int sorted_insert(struct sorted *set, int key)
{
    size_t at = lower_bound(set, key);
    if (at < set->count && set->keys[at] == key)
        return 0;
    memmove(&set->keys[at + 1], &set->keys[at], (set->count - at) * sizeof(int));
    set->keys[at] = key;
    set->count++;
    return 1;
}

static int sorted_delete(struct sorted *set, int key)
{
    size_t at = lower_bound(set, key);
    if (at == set->count || set->keys[at] != key)
        return 0;
    memmove(&set->keys[at], &set->keys[at + 1], (set->count - at - 1) * sizeof(int));
    set->count--;
    return 1;
}

static int sorted_contains(const struct sorted *set, int key)
{
    size_t at = lower_bound(set, key);
    return at < set->count && set->keys[at] == key;
}

/* ---- the comparison -------------------------------------------------------- */

static void compare_whole(struct record *head, const struct sorted *reference)
{
    struct xmm_slice keys;
    if (xmm_slice_init(&keys, sizeof(int), 0, 0) != 0) {
        EXPECT(0, "no memory for the walk");
        return;
    }
    for (struct record *record = head; record; record = record->next)
        xmm_slice_append(&keys, &record->key, 1);
    EXPECT(keys.length == reference->count, "list has %zu records, reference %zu", keys.length,
           reference->count);
    if (keys.length == reference->count)
        EXPECT(!memcmp(keys.data, reference->keys, keys.length * sizeof(int)),
               "list and reference hold different keys");
    xmm_slice_free(&keys);
}

int main(void)
{
    enum { KEY_SPACE = 3000, OPERATIONS = 60000 };
    int64_t live_before = example_live_blocks();
    struct sorted reference = {malloc(KEY_SPACE * sizeof(int)), 0};
    struct record *head = NULL;
    uint64_t random = 7;
    for (int step = 0; step < OPERATIONS; step++) {
        int key = (int)(example_random(&random) % KEY_SPACE);
        switch (example_random(&random) % 3) {
        case 0:
            EXPECT(list_insert(&head, key) == sorted_insert(&reference, key), "insert %d", key);
            break;
        case 1:
            EXPECT(list_delete(&head, key) == sorted_delete(&reference, key), "delete %d", key);
            break;
        default: {
            const struct record *found = list_find(head, key);
            EXPECT((found != NULL) == sorted_contains(&reference, key), "find %d", key);
            if (found) {
                char *expected = name_of(key);
                EXPECT(!strcmp(found->name, expected), "name of %d: %s", key, found->name);
                xmm_string_free(expected);
            }
        }
        }
        if (step % 1000 == 0)
            compare_whole(head, &reference);
    }
    compare_whole(head, &reference);
    size_t final_count = reference.count;
    list_free(head);
    free(reference.keys);
    EXPECT(example_live_blocks() == live_before, "%lld XMM blocks leaked",
           (long long)(example_live_blocks() - live_before));
    printf("list: %d operations, %zu records at the end, %d mismatches\n", OPERATIONS,
           final_count, example_failures);
    return example_failures ? 1 : 0;
}
