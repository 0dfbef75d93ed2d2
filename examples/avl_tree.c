/* avl_tree.c - an AVL tree of records on the xmm_* API, checked against a
 * sorted array over random inserts, deletes and lookups, with its balance
 * invariants verified as it changes.
 *
 * Nodes are XMM blocks (xmm_malloc) holding a name (xmm_strdup); the
 * in-order walk goes into an xmm_slice; the reference is plain malloc. */
#include <stdlib.h>
#include <string.h>

#include "example.h"

struct node {
    long key;
    char *name;
    int height; /* of the subtree: 1 for a leaf */
    struct node *left, *right;
};

static int height(const struct node *node)
{
    return node ? node->height : 0;
}

static void update(struct node *node)
{
    int left = height(node->left), right = height(node->right);
    node->height = 1 + (left > right ? left : right);
}

static int balance(const struct node *node)
{
    return height(node->left) - height(node->right);
}

static struct node *rotate_right(struct node *top)
{
    struct node *pivot = top->left;
    top->left = pivot->right;
    pivot->right = top;
    update(top);
    update(pivot);
    return pivot;
}

static struct node *rotate_left(struct node *top)
{
    struct node *pivot = top->right;
    top->right = pivot->left;
    pivot->left = top;
    update(top);
    update(pivot);
    return pivot;
}

/* Restores |balance| <= 1 at `node` after one of its subtrees changed
 * height by one. */
static struct node *rebalance(struct node *node)
{
    update(node);
    if (balance(node) > 1) {
        if (balance(node->left) < 0)
            node->left = rotate_left(node->left);
        return rotate_right(node);
    }
    if (balance(node) < -1) {
        if (balance(node->right) > 0)
            node->right = rotate_right(node->right);
        return rotate_left(node);
    }
    return node;
}

static char *name_of(long key)
{
    char text[32];
    snprintf(text, sizeof(text), "node %ld", key);
    return xmm_strdup(text);
}

/* Inserts `key`; *added is 1 if it was new, 0 if present, -1 if out of
 * memory (the tree is then unchanged). */
static struct node *insert(struct node *node, long key, int *added)
{
    if (!node) {
        struct node *fresh = xmm_malloc(sizeof(*fresh));
        char *name = name_of(key);
        if (!fresh || !name) {
            xmm_free(fresh);
            xmm_string_free(name);
            *added = -1;
            return NULL;
        }
        *fresh = (struct node){key, name, 1, NULL, NULL};
        *added = 1;
        return fresh;
    }
    if (key == node->key) {
        *added = 0;
        return node;
    }
    if (key < node->key)
        node->left = insert(node->left, key, added);
    else
        node->right = insert(node->right, key, added);
    return *added == 1 ? rebalance(node) : node;
}

/* Unlinks the smallest node of the subtree into *smallest. */
static struct node *detach_smallest(struct node *node, struct node **smallest)
{
    if (!node->left) {
        *smallest = node;
        return node->right;
    }
    node->left = detach_smallest(node->left, smallest);
    return rebalance(node);
}

static struct node *delete(struct node *node, long key, int *removed)
{
    if (!node) {
        *removed = 0;
        return NULL;
    }
    if (key < node->key) {
        node->left = delete(node->left, key, removed);
    } else if (key > node->key) {
        node->right = delete(node->right, key, removed);
    } else {
        struct node *replacement = node->left;
        if (node->right) {
            struct node *right = detach_smallest(node->right, &replacement);
            replacement->left = node->left;
            replacement->right = right;
        }
        xmm_string_free(node->name);
        xmm_free(node);
        *removed = 1;
        return replacement ? rebalance(replacement) : NULL;
    }
    return *removed ? rebalance(node) : node;
}

static const struct node *find(const struct node *node, long key)
{
    while (node && node->key != key)
        node = key < node->key ? node->left : node->right;
    return node;
}

static void free_tree(struct node *node)
{
    if (!node)
        return;
    free_tree(node->left);
    free_tree(node->right);
    xmm_string_free(node->name);
    xmm_free(node);
}

/* ---- checks -------------------------------------------------------------- */

/* Verifies heights and balance factors; returns the real height. */
static int check_balanced(const struct node *node)
{
    if (!node)
        return 0;
    int left = check_balanced(node->left), right = check_balanced(node->right);
    int real = 1 + (left > right ? left : right);
    EXPECT(node->height == real, "node %ld: height %d, real %d", node->key, node->height, real);
    EXPECT(left - right >= -1 && left - right <= 1, "node %ld: balance %d", node->key,
           left - right);
    return real;
}

static void walk_in_order(const struct node *node, struct xmm_slice *keys)
{
    if (!node)
        return;
    walk_in_order(node->left, keys);
    EXPECT(xmm_slice_append(keys, &node->key, 1) == 0, "no memory for the walk");
    walk_in_order(node->right, keys);
}

struct sorted {
    long *keys;
    size_t count;
};

static size_t lower_bound(const struct sorted *set, long key)
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

/* The walk is the reference (so keys are ordered and complete), and the
 * height is within AVL's bound of 1.44 log2(n + 2). */
static void compare_whole(const struct node *root, const struct sorted *reference)
{
    int tree_height = check_balanced(root);
    struct xmm_slice keys;
    xmm_slice_init(&keys, sizeof(long), 0, reference->count);
    walk_in_order(root, &keys);
    EXPECT(keys.length == reference->count && (keys.length == 0 ||
           !memcmp(keys.data, reference->keys, keys.length * sizeof(long))),
           "in-order walk of %zu keys differs from the reference of %zu", keys.length,
           reference->count);
    int bound = 1;
    for (size_t n = reference->count + 2; n > 1; n /= 2)
        bound++;
    EXPECT(tree_height <= bound * 3 / 2, "height %d for %zu keys", tree_height,
           reference->count);
    xmm_slice_free(&keys);
}

/* ---- the run -------------------------------------------------------------------- */

static void one_operation(struct node **root, struct sorted *reference, uint64_t *random)
{
    enum { KEY_SPACE = 50000 };
    long key = (long)(example_random(random) % KEY_SPACE) - KEY_SPACE / 2;
    size_t at = lower_bound(reference, key);
    int present = at < reference->count && reference->keys[at] == key;
    int result;
    switch (example_random(random) % 3) {
    case 0:
        *root = insert(*root, key, &result);
        EXPECT(result == !present, "insert %ld: %d", key, result);
        if (!present) {
            memmove(&reference->keys[at + 1], &reference->keys[at],
                    (reference->count - at) * sizeof(long));
            reference->keys[at] = key;
            reference->count++;
        }
        break;
    case 1:
        *root = delete(*root, key, &result);
        EXPECT(result == present, "delete %ld: %d", key, result);
        if (present) {
            memmove(&reference->keys[at], &reference->keys[at + 1],
                    (reference->count - at - 1) * sizeof(long));
            reference->count--;
        }
        break;
    default: {
        const struct node *node = find(*root, key);
        EXPECT((node != NULL) == present, "find %ld", key);
        char expected[32];
        snprintf(expected, sizeof(expected), "node %ld", key);
        EXPECT(!node || !strcmp(node->name, expected), "name of %ld", key);
    }
    }
}

int main(void)
{
    enum { OPERATIONS = 300000 };
    int64_t live_before = example_live_blocks();
    struct sorted reference = {malloc(50000 * sizeof(long)), 0};
    struct node *root = NULL;
    uint64_t random = 13;
    for (int step = 0; step < OPERATIONS; step++) {
        one_operation(&root, &reference, &random);
        if (step % 10000 == 0)
            compare_whole(root, &reference);
    }
    compare_whole(root, &reference);
    printf("avl_tree: %d operations, %zu records, height %d, %d mismatches\n", OPERATIONS,
           reference.count, height(root), example_failures);
    free_tree(root);
    free(reference.keys);
    EXPECT(example_live_blocks() == live_before, "%lld XMM blocks leaked",
           (long long)(example_live_blocks() - live_before));
    return example_failures ? 1 : 0;
}
