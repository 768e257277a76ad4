"""A SQL source: the rows of a query against a database whose SQLAlchemy URL is in the
environment — SQLite here, and a real PostgreSQL started by the test — with the password kept
out of the logs and lineage, and one-line errors for a missing URL or a failing query."""

from __future__ import annotations

import sqlite3

from conftest import last_run, run_cli, write_example_spec
from modelmill.config.settings import Settings

QUERY = "SELECT mean_radius, mean_texture, mean_smoothness, worst_area, worst_concavity, diagnosis FROM lab.cells WHERE mean_radius > 0"


def test_a_query_against_sqlite_is_the_data(example_project, capsys, monkeypatch, tmp_path):
    root, spec, data = example_project
    db = tmp_path / "lab.db"
    with sqlite3.connect(db) as conn:
        data.to_sql("cells", conn, index=False)
    monkeypatch.setenv("LAB_DB", f"sqlite:///{db}")
    write_example_spec(root, spec, source={"sql": {"url_env": "LAB_DB", "query": QUERY.replace("lab.cells", "cells")}})
    code, out, err = run_cli(capsys, "run", "my_cells")
    assert code == 0, out + err
    run = last_run(Settings(), "my_cells")
    assert int(run.data.params["data.rows"]) == len(data)
    assert run.data.params["data.source.sql"].startswith(f"sqlite:///{db}#query-")

    write_example_spec(root, spec, source={"sql": {"url_env": "LAB_DB", "query": "SELECT * FROM no_such_table"}})
    code, out, err = run_cli(capsys, "run", "my_cells")
    assert code == 1 and "source.sql failed on sqlite:///" in err and "no such table: no_such_table" in err
    monkeypatch.delenv("LAB_DB")
    code, out, err = run_cli(capsys, "run", "my_cells")
    assert code == 1 and "source.sql reads its database URL from LAB_DB, which is not set" in err


def test_a_query_against_a_real_postgresql(example_project, capsys, monkeypatch, postgres):
    import sqlalchemy

    root, spec, data = example_project
    url = f"postgresql+psycopg2://mlflow:mlflow-secret@127.0.0.1:{postgres}/mlflow"
    engine = sqlalchemy.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sqlalchemy.text("CREATE SCHEMA lab"))
    data.to_sql("cells", engine, schema="lab", index=False)
    engine.dispose()
    monkeypatch.setenv("MODELMILL_SQL_URL", url)
    write_example_spec(root, spec, source={"sql": {"query": QUERY}})
    code, out, err = run_cli(capsys, "run", "my_cells")
    assert code == 0, out + err
    run = last_run(Settings(), "my_cells")
    assert int(run.data.params["data.rows"]) == len(data)
    assert "mlflow-secret" not in out + err and "mlflow-secret" not in str(run.data.params)
    assert run.data.params["data.source.sql"].startswith(
        f"postgresql+psycopg2://mlflow:***@127.0.0.1:{postgres}/mlflow#query-"
    )
