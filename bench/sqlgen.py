#!/usr/bin/env python3
"""Writes the SQL script of the sqlite3 benchmark.

usage: sqlgen.py ROWS OUTPUT.sql

The script builds a small shop database of about ROWS rows in all
(customers, products, orders), adds indexes, then runs joins, group-bys, a
window function, string-heavy updates, deletes and a VACUUM: the work of an
embedded SQL engine, whose parser, page cache and sorter all allocate
through malloc. The data is pseudo-random from a fixed seed, so every run
and every allocator executes exactly the same statements.
"""
import random
import sys

ROWS_PER_INSERT = 500  # multi-row INSERTs keep the script small to parse
SYLLABLES = ["ka", "lo", "mi", "ne", "ru", "sa", "ti", "vo", "ze", "ha", "do", "pe"]
CITIES = ["Aberdeen", "Bergen", "Cadiz", "Dresden", "Essen", "Faro", "Genoa",
          "Hamburg", "Izmir", "Jena", "Kiel", "Lyon", "Malmo", "Nantes", "Oslo",
          "Porto", "Riga", "Split", "Turku", "Utrecht"]
CATEGORIES = ["books", "garden", "kitchen", "music", "sport", "tools", "toys", "travel"]

SCHEMA = """\
PRAGMA cache_size = -65536;
CREATE TABLE customers(id INTEGER PRIMARY KEY, name TEXT, city TEXT, email TEXT, joined INTEGER);
CREATE TABLE products(id INTEGER PRIMARY KEY, title TEXT, category TEXT, price REAL);
CREATE TABLE orders(id INTEGER PRIMARY KEY, customer_id INTEGER, product_id INTEGER,
                    quantity INTEGER, note TEXT, placed INTEGER);
"""

QUERIES = """\
CREATE INDEX orders_by_customer ON orders(customer_id);
CREATE INDEX orders_by_product ON orders(product_id);
CREATE INDEX customers_by_city ON customers(city, name);
SELECT c.city, count(*), sum(o.quantity * p.price)
  FROM orders o JOIN customers c ON c.id = o.customer_id JOIN products p ON p.id = o.product_id
  GROUP BY c.city ORDER BY 3 DESC;
SELECT p.category, avg(p.price), count(DISTINCT o.customer_id)
  FROM orders o JOIN products p ON p.id = o.product_id GROUP BY p.category;
SELECT c.id, c.name, group_concat(p.title, ', '), sum(o.quantity)
  FROM customers c JOIN orders o ON o.customer_id = c.id JOIN products p ON p.id = o.product_id
  GROUP BY c.id ORDER BY 4 DESC LIMIT 100;
SELECT customer_id, placed, sum(quantity) OVER (PARTITION BY customer_id ORDER BY placed)
  FROM orders ORDER BY 3 DESC LIMIT 100;
UPDATE orders SET note = upper(note) || ' / checked ' || printf('%08d', id) WHERE quantity > 5;
DELETE FROM orders WHERE id % 7 = 0;
CREATE TABLE city_report AS
  SELECT c.city, p.category, count(*) AS orders, total(o.quantity * p.price) AS revenue,
         group_concat(DISTINCT c.name) AS buyers
  FROM orders o JOIN customers c ON c.id = o.customer_id JOIN products p ON p.id = o.product_id
  GROUP BY c.city, p.category;
SELECT city, max(revenue), length(group_concat(buyers)) FROM city_report GROUP BY city;
SELECT count(*) FROM (SELECT DISTINCT note FROM orders);
VACUUM;
SELECT count(*), sum(length(note)) FROM orders;
"""


def word(rng, syllables):
    return "".join(rng.choice(SYLLABLES) for _ in range(syllables))


def customer_row(rng, row_id):
    name = f"{word(rng, 2).title()} {word(rng, 3).title()}"
    email = f"{name.replace(' ', '.').lower()}{row_id}@example.org"
    return f"({row_id},'{name}','{rng.choice(CITIES)}','{email}',{rng.randrange(10**9)})"


def product_row(rng, row_id):
    title = f"{word(rng, 3)} {word(rng, 2)}"
    price = rng.randrange(100, 100000) / 100
    return f"({row_id},'{title}','{rng.choice(CATEGORIES)}',{price})"


def order_maker(customers, products):
    def order_row(rng, row_id):
        note = " ".join(word(rng, 2) for _ in range(rng.randrange(1, 8)))
        return (f"({row_id},{rng.randrange(1, customers + 1)},{rng.randrange(1, products + 1)},"
                f"{rng.randrange(1, 10)},'{note}',{rng.randrange(10**9)})")
    return order_row


def insert_statements(rng, table, count, make_row):
    """Multi-row INSERTs in one transaction, ROWS_PER_INSERT rows each."""
    lines = ["BEGIN;"]
    for first in range(1, count + 1, ROWS_PER_INSERT):
        last = min(first + ROWS_PER_INSERT, count + 1)
        rows = ",".join(make_row(rng, row_id) for row_id in range(first, last))
        lines.append(f"INSERT INTO {table} VALUES {rows};")
    lines.append("COMMIT;")
    return "\n".join(lines) + "\n"


def generate(total_rows):
    rng = random.Random(20240101)
    customers = max(total_rows // 10, 1)
    products = max(total_rows // 40, 1)
    orders = max(total_rows - customers - products, 1)
    return (SCHEMA
            + insert_statements(rng, "customers", customers, customer_row)
            + insert_statements(rng, "products", products, product_row)
            + insert_statements(rng, "orders", orders, order_maker(customers, products))
            + QUERIES)


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: sqlgen.py ROWS OUTPUT.sql")
    with open(sys.argv[2], "w") as output:
        output.write(generate(int(sys.argv[1])))


if __name__ == "__main__":
    main()
