"""SUBSCRIBE from psycopg 3, the three ways a Python program follows a view's changes:
DECLARE … CURSOR FOR SUBSCRIBE with FETCH (polling, with a timeout), cursor.stream() over
SUBSCRIBE (rows pushed as they come, stopped by cancel()), and COPY (SUBSCRIBE …) TO STDOUT.
Changes are made by writing a table from a second connection, so every expected op is known.
Usage: subscribe_clients.py PORT. Exits non-zero on the first failure."""

import sys
import threading
import time

import psycopg

PORT = int(sys.argv[1])
DSN = f"postgresql://weir@127.0.0.1:{PORT}/weir"


def check(what, cond, detail=""):
    if not cond:
        print(f"FAIL subscribe: {what} {detail}")
        sys.exit(1)
    print(f"ok   subscribe: {what}")


def fetch_until(cur, cursor, want, timeout=20.0):
    """FETCH ALL from `cursor` until `want` rows (op, values…) have come; returns them all."""
    rows = []
    deadline = time.monotonic() + timeout
    while len(rows) < want and time.monotonic() < deadline:
        cur.execute(f"FETCH ALL {cursor} WITH (timeout = '1s')")
        rows.extend(r for r in cur.fetchall() if r[0] != "progress")
    return rows


def main():
    writer = psycopg.connect(DSN, autocommit=True)
    writer.execute("CREATE TABLE sub_orders (id BIGINT PRIMARY KEY, customer TEXT, amount BIGINT)")
    writer.execute("CREATE MATERIALIZED VIEW sub_spend AS SELECT customer, sum(amount) AS spent FROM sub_orders GROUP BY customer")
    writer.execute("INSERT INTO sub_orders VALUES (1, 'ann', 10), (2, 'bob', 5)")
    for _ in range(100):
        if writer.execute("SELECT count(*) FROM sub_spend").fetchone()[0] == 2:
            break
        time.sleep(0.05)

    # 1. A cursor: the snapshot, then each change with its op.
    with psycopg.connect(DSN) as conn:  # autocommit off: psycopg opens the transaction
        cur = conn.cursor()
        cur.execute("DECLARE c CURSOR FOR SUBSCRIBE TO sub_spend")
        cols = None
        snapshot = fetch_until(cur, "c", 2)
        cols = [d.name for d in cur.description]
        check("columns: op, watermark, then the view's", cols == ["weir_op", "weir_watermark", "customer", "spent"], cols)
        check("snapshot as inserts", sorted((r[0], r[2], r[3]) for r in snapshot) == [("insert", "ann", 10), ("insert", "bob", 5)], snapshot)
        writer.execute("INSERT INTO sub_orders VALUES (3, 'ann', 7)")
        changes = fetch_until(cur, "c", 2)
        check("an update as a before/after pair", [(r[0], r[2], r[3]) for r in changes] == [("update_before", "ann", 10), ("update_after", "ann", 17)], changes)
        writer.execute("DELETE FROM sub_orders WHERE id = 2")
        changes = fetch_until(cur, "c", 1)
        check("a group that empties is deleted", [(r[0], r[2], r[3]) for r in changes] == [("delete", "bob", 5)], changes)
        started = time.monotonic()
        cur.execute("FETCH ALL c WITH (timeout = '300ms')")
        waited = time.monotonic() - started
        check("FETCH with a timeout returns nothing when nothing changed", cur.fetchall() == [] and 0.25 < waited < 5, waited)
        cur.execute("FETCH 1 c WITH (timeout = '0s')")
        check("FETCH with timeout 0 does not wait", cur.fetchall() == [])
        conn.commit()
        try:
            cur.execute("FETCH ALL c")
            check("a cursor closes with its transaction", False)
        except psycopg.errors.InvalidCursorName:
            check("a cursor closes with its transaction (34000)", True)
        conn.rollback()

    # 2. cursor.stream(): rows pushed as the view changes; cancel() stops it, the connection lives on.
    with psycopg.connect(DSN, autocommit=True) as conn:
        got = []
        seen_two = threading.Event()

        def follow():
            try:
                for row in conn.cursor().stream("SUBSCRIBE TO sub_orders WITH (snapshot = false)"):
                    got.append(row)
                    if len(got) >= 2:
                        seen_two.set()
            except psycopg.errors.QueryCanceled:
                got.append("canceled")

        t = threading.Thread(target=follow)
        t.start()
        time.sleep(0.5)
        writer.execute("INSERT INTO sub_orders VALUES (10, 'cy', 1)")
        writer.execute("UPDATE sub_orders SET amount = 2 WHERE id = 10")
        check("stream() sees changes as they are made", seen_two.wait(20), got)
        conn.cancel()
        t.join(20)
        check("cancel() ends the subscription with 57014", not t.is_alive() and got[-1] == "canceled", got)
        rows = [(r[0], r[2], r[4]) for r in got[:-1]]
        check("stream(): insert, then the update as a pair",
              rows == [("insert", 10, 1), ("update_before", 10, 1), ("update_after", 10, 2)], rows)
        check("the connection serves after a cancelled subscription", conn.execute("SELECT 1").fetchone()[0] == 1)

    # 3. COPY (SUBSCRIBE …) TO STDOUT.
    with psycopg.connect(DSN, autocommit=True) as conn:
        lines = []

        def copy_out():
            try:
                with conn.cursor().copy("COPY (SUBSCRIBE TO sub_spend) TO STDOUT") as copy:
                    for row in copy.rows():
                        lines.append(row)
            except psycopg.errors.QueryCanceled:
                lines.append("canceled")

        t = threading.Thread(target=copy_out)
        t.start()
        deadline = time.monotonic() + 20
        while len(lines) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        conn.cancel()
        t.join(20)
        snapshot = sorted(tuple(r[i] for i in (0, 2, 3)) for r in lines if r != "canceled")
        check("COPY (SUBSCRIBE) sends the snapshot as text lines", snapshot == [("insert", "ann", "17"), ("insert", "cy", "2")], lines)

    # 4. A subscribed view that is dropped ends the subscription with an error, not a hang.
    with psycopg.connect(DSN) as conn:
        cur = conn.cursor()
        cur.execute("DECLARE d CURSOR FOR SUBSCRIBE TO sub_spend WITH (snapshot = false)")
        writer.execute("DROP MATERIALIZED VIEW sub_spend")
        try:
            cur.execute("FETCH ALL d WITH (timeout = '10s')")
            check("FETCH after DROP fails", False, cur.fetchall())
        except psycopg.Error as e:
            check("FETCH after DROP says the view stopped", "stopped" in str(e), e)
    writer.close()
    print("all subscribe checks passed")


if __name__ == "__main__":
    main()
