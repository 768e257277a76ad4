"""Several files as one source: a glob `source.path` reads every matching CSV or Parquet file
(name order, confined like one file), concatenates them, can record each row's file, and names a
file whose columns differ."""

from __future__ import annotations

import pandas as pd

from conftest import last_run, run_cli, write_example_spec
from modelmill.config.settings import Settings


def test_monthly_exports_are_read_as_one_table(example_project, capsys):
    root, spec, data = example_project
    folder = root / "pipelines" / "data" / "exports"
    folder.mkdir()
    parts = [data.iloc[i::3] for i in range(3)]
    parts[0].to_csv(folder / "cells-2024-01.csv", index=False)
    parts[1].to_csv(folder / "cells-2024-02.csv", index=False)
    parts[2].to_parquet(folder / "cells-2024-03.parquet", index=False)
    source = {"path": "data/exports/cells-2024-0[12].csv", "format": "csv", "file_column": "export"}
    suite_path = root / "expectations" / "my_cells.json"
    suite_path.write_text(suite_path.read_text().replace('"diagnosis"]', '"diagnosis", "export"]'))
    write_example_spec(root, spec, source=source)
    code, out, err = run_cli(capsys, "run", "my_cells")
    assert code == 0, out + err
    run = last_run(Settings(), "my_cells")
    assert int(run.data.params["data.rows"]) == len(parts[0]) + len(parts[1])
    snapshot = pd.read_parquet(run.data.tags["modelmill.snapshot"])
    assert snapshot["export"].value_counts().to_dict() == {
        "data/exports/cells-2024-01.csv": len(parts[0]),
        "data/exports/cells-2024-02.csv": len(parts[1]),
    }
    assert {"data.source.cells-2024-01.csv", "data.source.cells-2024-02.csv"} <= set(run.data.params)

    parts[1].drop(columns=["worst_area"]).to_csv(folder / "cells-2024-02.csv", index=False)
    code, out, err = run_cli(capsys, "run", "my_cells")
    assert (
        code == 1
        and "data/exports/cells-2024-02.csv does not have the columns of data/exports/cells-2024-01.csv (extra [], missing ['worst_area'])"
        in err
    )

    write_example_spec(root, spec, source={"path": "data/exports/*.parquet", "format": "parquet"})
    suite_path.write_text(suite_path.read_text().replace(', "export"]', "]"))
    code, out, err = run_cli(capsys, "run", "my_cells")
    assert code == 0, out + err  # a pattern may match a single file too
    write_example_spec(root, spec, source={"path": "/etc/host*", "format": "csv"})
    code, out, err = run_cli(capsys, "run", "my_cells")
    assert code == 1 and "outside the folders a spec may read" in err
