"""Bit-for-bit reruns: the .test config run a second time, in another folder and with every
job on 1 core instead of 2, writes the same bytes to every output; and each output records
what made it, readable from DuckDB."""

from pathlib import Path

import pytest

from helpers import DATABASE, output_hashes, snakemake, tiny_workdir
from sppoflow.report.exports import query


@pytest.fixture(scope="module")
def second_run(tiny_run, tiny_model_dir, tmp_path_factory):
    folder = tiny_workdir(tmp_path_factory.mktemp("second-run"), tiny_model_dir)
    run = snakemake(folder, "--cores", "1")
    assert run.returncode == 0, run.stderr[-5000:]
    return folder


def test_a_rerun_on_fewer_cores_writes_the_same_bytes(tiny_run, second_run):
    first, _ = tiny_run
    ours, theirs = output_hashes(first), output_hashes(second_run)
    # the first run's folder may also hold what other tests added (a report): compare what
    # the second, fresh run wrote
    print(f"\n{len(theirs)} outputs compared (sha256, first 16 digits):")
    for name, digest in theirs.items():
        mark = "same" if ours.get(name) == digest else "DIFFERENT"
        print(f"  {digest[:16]}  {mark:9}  {name}")
    assert len(theirs) > 40 and (second_run / "results/iter2/model/model.safetensors").is_file()
    different = [name for name, digest in theirs.items() if ours.get(name) != digest]
    assert not different, different


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
