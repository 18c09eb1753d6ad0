"""Fixtures for the evals tests: a tiny shop database, uploaded as an ``evals`` file.

The eval builders and the scripted engine are in tests/support/evals.py."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import openai
import pytest


def build_shop(path: Path) -> Path:
    conn = sqlite3.connect(path)
    conn.executescript(
        """
        CREATE TABLE products (id INTEGER PRIMARY KEY, name TEXT, category TEXT, price REAL);
        INSERT INTO products VALUES (1, 'Street deck', 'deck', 59.0), (2, 'Cruiser wheels', 'wheels', 35.0),
                                    (3, 'Park deck', 'deck', 64.0), (4, 'Bearings', 'bearings', 19.5);
        """
    )
    conn.commit()
    conn.close()
    return path


@pytest.fixture
def shop_db(tmp_path: Path) -> Path:
    return build_shop(tmp_path / "shop.sqlite")


@pytest.fixture
def db_file_id(client: openai.OpenAI, shop_db: Path) -> str:
    return client.files.create(file=("shop.sqlite", shop_db.read_bytes()), purpose="evals").id
