"""Workers that start together on a new database all get a connection."""
import sqlite3
import threading

from proxy.log import db


def test_connect_waits_while_another_connection_writes_to_a_new_database(tmp_path):
    """SQLite refuses the switch to WAL at once (no busy wait) while another
    connection holds a write lock on a database still in rollback mode: what a
    worker meets when another one is creating the database at the same moment."""
    path = str(tmp_path / "new.db")
    first = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    first.execute("CREATE TABLE t (x)")
    first.execute("BEGIN IMMEDIATE")
    first.execute("INSERT INTO t VALUES (1)")
    threading.Timer(0.3, lambda: first.execute("COMMIT")).start()
    conn = db.connect(path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()
    first.close()
