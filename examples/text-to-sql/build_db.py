"""Build ``shop.sqlite``: a small skateboard shop (products, customers, orders). Deterministic.

python examples/text-to-sql/build_db.py            # writes examples/text-to-sql/shop.sqlite
"""

from __future__ import annotations

import sqlite3
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

SCHEMA = """\
CREATE TABLE products (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    category TEXT NOT NULL,      -- deck, wheels, trucks, bearings, helmet, shoes
    brand TEXT NOT NULL,
    price REAL NOT NULL,         -- euros
    stock INTEGER NOT NULL
);
CREATE TABLE customers (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    city TEXT NOT NULL,
    country TEXT NOT NULL,
    joined_year INTEGER NOT NULL
);
CREATE TABLE orders (
    id INTEGER PRIMARY KEY,
    customer_id INTEGER NOT NULL REFERENCES customers(id),
    product_id INTEGER NOT NULL REFERENCES products(id),
    quantity INTEGER NOT NULL,
    order_date TEXT NOT NULL,    -- YYYY-MM-DD
    status TEXT NOT NULL         -- shipped, pending, returned
);"""

PRODUCTS = [
    (1, "Street Pro Deck", "deck", "Baker", 59.0, 12),
    (2, "Park Deck 8.25", "deck", "Element", 64.0, 7),
    (3, "Cruiser Deck", "deck", "Santa Cruz", 72.5, 0),
    (4, "Mini Deck 7.5", "deck", "Element", 45.0, 4),
    (5, "Longboard Deck", "deck", "Santa Cruz", 89.0, 3),
    (6, "Street Wheels 52mm", "wheels", "Spitfire", 35.0, 20),
    (7, "Soft Cruiser Wheels 60mm", "wheels", "OJ", 42.0, 9),
    (8, "Park Wheels 54mm", "wheels", "Spitfire", 38.0, 0),
    (9, "Longboard Wheels 70mm", "wheels", "OJ", 55.0, 5),
    (10, "Standard Trucks 139", "trucks", "Independent", 58.0, 10),
    (11, "Hollow Trucks 144", "trucks", "Thunder", 68.0, 6),
    (12, "Low Trucks 129", "trucks", "Venture", 52.0, 2),
    (13, "Speed Bearings", "bearings", "Bones", 19.5, 30),
    (14, "Ceramic Bearings", "bearings", "Bones", 49.0, 8),
    (15, "Swiss Bearings", "bearings", "Bronson", 39.0, 0),
    (16, "Classic Helmet", "helmet", "Triple Eight", 45.0, 11),
    (17, "Certified Helmet", "helmet", "Pro-Tec", 65.0, 5),
    (18, "Suede Skate Shoes", "shoes", "Vans", 70.0, 14),
    (19, "Canvas Skate Shoes", "shoes", "Vans", 55.0, 0),
    (20, "Pro Skate Shoes", "shoes", "Nike SB", 95.0, 6),
]

CUSTOMERS = [
    (1, "Ana Lopez", "Barcelona", "Spain", 2021),
    (2, "Ben Carter", "London", "UK", 2022),
    (3, "Chloe Martin", "Lyon", "France", 2020),
    (4, "Diego Ruiz", "Madrid", "Spain", 2023),
    (5, "Emma Schulz", "Berlin", "Germany", 2021),
    (6, "Felix Braun", "Berlin", "Germany", 2024),
    (7, "Grace Lee", "London", "UK", 2020),
    (8, "Hugo Silva", "Lisbon", "Portugal", 2022),
    (9, "Ines Costa", "Porto", "Portugal", 2023),
    (10, "Jonas Weber", "Munich", "Germany", 2022),
    (11, "Karin Berg", "Stockholm", "Sweden", 2024),
    (12, "Leo Rossi", "Milan", "Italy", 2021),
    (13, "Mia Dubois", "Paris", "France", 2023),
    (14, "Noah Smith", "Manchester", "UK", 2024),
    (15, "Olga Novak", "Prague", "Czechia", 2022),
]

ORDERS = [
    (1, 1, 1, 1, "2024-01-05", "shipped"),
    (2, 1, 13, 2, "2024-01-05", "shipped"),
    (3, 2, 6, 1, "2024-01-12", "shipped"),
    (4, 3, 2, 1, "2024-01-20", "returned"),
    (5, 4, 18, 1, "2024-02-02", "shipped"),
    (6, 5, 10, 2, "2024-02-10", "shipped"),
    (7, 5, 14, 1, "2024-02-10", "shipped"),
    (8, 6, 16, 1, "2024-02-18", "pending"),
    (9, 7, 5, 1, "2024-03-01", "shipped"),
    (10, 7, 9, 4, "2024-03-01", "shipped"),
    (11, 8, 7, 4, "2024-03-09", "shipped"),
    (12, 9, 20, 1, "2024-03-15", "returned"),
    (13, 10, 11, 2, "2024-03-22", "shipped"),
    (14, 11, 3, 1, "2024-04-03", "shipped"),
    (15, 12, 17, 1, "2024-04-11", "shipped"),
    (16, 13, 19, 2, "2024-04-19", "shipped"),
    (17, 14, 4, 1, "2024-05-02", "pending"),
    (18, 15, 12, 2, "2024-05-08", "shipped"),
    (19, 1, 7, 4, "2024-05-20", "shipped"),
    (20, 2, 13, 3, "2024-06-01", "shipped"),
    (21, 3, 8, 4, "2024-06-07", "shipped"),
    (22, 4, 1, 1, "2024-06-15", "returned"),
    (23, 5, 18, 1, "2024-06-28", "shipped"),
    (24, 6, 6, 4, "2024-07-04", "shipped"),
    (25, 7, 15, 1, "2024-07-12", "pending"),
    (26, 8, 2, 1, "2024-07-19", "shipped"),
    (27, 9, 13, 2, "2024-08-01", "shipped"),
    (28, 10, 20, 1, "2024-08-09", "shipped"),
    (29, 11, 10, 2, "2024-08-16", "shipped"),
    (30, 12, 5, 1, "2024-08-30", "shipped"),
    (31, 13, 16, 1, "2024-09-06", "returned"),
    (32, 14, 9, 4, "2024-09-14", "shipped"),
    (33, 15, 14, 1, "2024-09-21", "pending"),
    (34, 1, 17, 1, "2024-10-03", "shipped"),
    (35, 2, 11, 2, "2024-10-11", "shipped"),
    (36, 4, 6, 4, "2024-10-19", "shipped"),
    (37, 5, 3, 1, "2024-11-02", "pending"),
    (38, 7, 18, 2, "2024-11-15", "shipped"),
    (39, 10, 1, 1, "2024-12-01", "shipped"),
    (40, 12, 13, 4, "2024-12-12", "pending"),
]


def build(path: Path) -> Path:
    path.unlink(missing_ok=True)
    conn = sqlite3.connect(path)
    conn.executescript(SCHEMA)
    conn.executemany("INSERT INTO products VALUES (?, ?, ?, ?, ?, ?)", PRODUCTS)
    conn.executemany("INSERT INTO customers VALUES (?, ?, ?, ?, ?)", CUSTOMERS)
    conn.executemany("INSERT INTO orders VALUES (?, ?, ?, ?, ?, ?)", ORDERS)
    conn.commit()
    conn.close()
    return path


if __name__ == "__main__":
    out = build(Path(sys.argv[1]) if len(sys.argv) > 1 else HERE / "shop.sqlite")
    print(f"wrote {out}")
