"""Write the fine-tuning file and the eval items from the question files; check every reference SQL.

    python examples/text-to-sql/prepare.py

- ``shop.sqlite``: the database (``build_db.py``);
- ``train.jsonl``: 60 chat examples (system prompt with the schema, question, SQL) for fine-tuning;
- ``heldout.jsonl``: 20 eval items ``{"item": {"question", "sql"}}`` the model never sees in training.
"""

from __future__ import annotations

import json
import sqlite3

from build_db import HERE, build

SYSTEM = (
    "You translate questions about a skateboard shop's SQLite database into one SQL query. "
    "Answer with the SQL query only.\n"
    "Tables:\n"
    "products(id, name, category, brand, price, stock) -- category is deck, wheels, trucks, bearings, "
    "helmet or shoes; price in euros\n"
    "customers(id, name, city, country, joined_year)\n"
    "orders(id, customer_id, product_id, quantity, order_date, status) -- order_date is 'YYYY-MM-DD'; "
    "status is shipped, pending or returned"
)


def read(name: str) -> list[dict[str, str]]:
    return [json.loads(line) for line in (HERE / name).read_text().splitlines() if line.strip()]


def main() -> None:
    db = build(HERE / "shop.sqlite")
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    train, heldout = read("questions_train.jsonl"), read("questions_heldout.jsonl")
    for q in train + heldout:
        rows = conn.execute(q["sql"]).fetchall()
        assert rows and rows != [(None,)], f"no rows: {q}"
    conn.close()
    with open(HERE / "train.jsonl", "w") as f:
        for q in train:
            messages = [
                {"role": "system", "content": SYSTEM},
                {"role": "user", "content": q["question"]},
                {"role": "assistant", "content": q["sql"]},
            ]
            f.write(json.dumps({"messages": messages}) + "\n")
    with open(HERE / "heldout.jsonl", "w") as f:
        for q in heldout:
            f.write(json.dumps({"item": q}) + "\n")
    print(f"wrote {db.name}, train.jsonl ({len(train)} examples), heldout.jsonl ({len(heldout)} items)")


if __name__ == "__main__":
    main()
