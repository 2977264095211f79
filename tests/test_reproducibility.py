"""Bit-for-bit reruns: the .test config run a second time, in another folder and with every
job on 1 core instead of 2, writes the same bytes to every output; and each output records
what made it, readable from DuckDB."""

import hashlib
from pathlib import Path

import pytest

from conftest import snakemake, test_workdir
from sppoflow.exports import query

# Files under results/ that record when or how fast, not what: left out of the comparison.
TIMING = ("/logs/", "/benchmarks/", "results/tracking/")
DATABASE = "results/sppo.duckdb"


def output_hashes(folder: Path) -> dict[str, str]:
    """sha256 of every output under ``folder``/results but the timing records; the DuckDB
    database by the rows of its views (DuckDB writes different bytes on every write)."""
    hashes = {}
    for path in sorted((folder / "results").rglob("*")):
        name = path.relative_to(folder).as_posix()
        if not path.is_file() or any(part in f"/{name}" for part in TIMING):
            continue
        if name == DATABASE:
            hashes[name] = database_hash(path)
        else:
            hashes[name] = hashlib.sha256(path.read_bytes()).hexdigest()
    return hashes


def database_hash(database: Path) -> str:
    """sha256 of every view's rows, in a fixed order (read from the run's folder, where the
    views' relative paths resolve)."""
    digest = hashlib.sha256()
    views = query(database, "SELECT view_name FROM duckdb_views() WHERE NOT internal")
    for view in sorted(views["view_name"]):
        rows = query(database, f'SELECT * FROM "{view}"')
        rows = rows.sort_values(list(rows.columns)).astype(str).to_csv(index=False)
        digest.update(f"{view}\n{rows}".encode())
    return digest.hexdigest()


@pytest.fixture(scope="module")
def second_run(tiny_run, tiny_model_dir, tmp_path_factory):
    folder = test_workdir(tmp_path_factory.mktemp("second-run"), tiny_model_dir)
    run = snakemake(folder, "--cores", "1")
    assert run.returncode == 0, run.stderr[-5000:]
    return folder


@pytest.mark.slow
def test_a_rerun_on_fewer_cores_writes_the_same_bytes(tiny_run, second_run, monkeypatch):
    first, _ = tiny_run
    monkeypatch.chdir(first)
    ours = output_hashes(first)
    monkeypatch.chdir(second_run)
    theirs = output_hashes(second_run)
    # the first run's folder may also hold what other tests added (a report): compare what
    # the second, fresh run wrote
    print(f"\n{len(theirs)} outputs compared (sha256, first 16 digits):")
    for name, digest in theirs.items():
        mark = "same" if ours.get(name) == digest else "DIFFERENT"
        print(f"  {digest[:16]}  {mark:9}  {name}")
    assert len(theirs) > 40 and (second_run / "results/iter2/model/model.safetensors").is_file()
    different = [name for name, digest in theirs.items() if ours.get(name) != digest]
    assert not different, different


@pytest.mark.slow
def test_each_output_records_what_made_it_in_duckdb(tiny_run, monkeypatch):
    folder, config = tiny_run
    monkeypatch.chdir(folder)
    records = query(
        Path(DATABASE),
        "SELECT file, round, stage, config_sha256, git_commit, arguments->>'seed' AS seed, "
        "config->>'cpu_threads' AS cpu_threads, arguments->>'threads' AS threads, "
        "versions->>'torch' AS torch FROM provenance",
    ).set_index("file")
    for it in (1, 2):
        for name in ("samples", "preferences", "response_win_rates", "pairs", "aggregate_stats"):
            assert f"results/iter{it}/{name}.parquet" in records.index
        assert f"results/iter{it}/model/provenance.json" in records.index
    assert records["config_sha256"].nunique() == 1 and len(records["config_sha256"].iat[0]) == 64
    assert records["cpu_threads"].eq(str(config["cpu_threads"])).all()
    assert records["threads"].isna().all()  # the cores a job got never change a result
    assert records["torch"].notna().all()
    seeds = records["seed"]
    assert seeds["results/iter1/samples.parquet"] != seeds["results/iter2/samples.parquet"]
    assert records.loc["results/iter2/model/provenance.json", "stage"] == "train"
    assert records["git_commit"].nunique(dropna=False) == 1  # the checkout's commit (or null)
