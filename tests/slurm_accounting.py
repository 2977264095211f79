"""The test cluster's accounting (tests/slurm_cluster.py): a MariaDB of its own and slurmdbd
on it, so that sacct and the SLURM executor plugin's efficiency report answer as on a real
cluster."""

from __future__ import annotations

import subprocess
from pathlib import Path

from slurm_daemons import MARK, record_daemon, wait_for

ACCOUNTING_PACKAGES = ("slurmdbd", "mariadb-server")
ACCOUNTING_TOOLS = ("slurmdbd", "mariadbd", "mariadb-install-db", "mariadb", "sacctmgr")
DBD_CONF = Path("/etc/slurm/slurmdbd.conf")
DB_PORT = 13306  # the cluster's own MariaDB, on 127.0.0.1 only
DB_PASSWORD = "sppo-test"  # a throwaway database of test jobs, reachable from this host only
ACCOUNT = "sppo-test"


def start_database(folder: Path, pids: dict[str, int]) -> None:
    """A MariaDB of the cluster's own in its ``folder``, for slurmdbd, on 127.0.0.1 only; its
    pid recorded in ``pids``."""
    data, socket_path = folder / "db", folder / "db.sock"
    subprocess.run(
        ["mariadb-install-db", "--user=root", f"--datadir={data}", "--skip-test-db",
         "--auth-root-authentication-method=socket"],
        check=True, capture_output=True,
    )  # fmt: skip
    server = subprocess.Popen(
        ["mariadbd", "--user=root", f"--datadir={data}", f"--socket={socket_path}",
         f"--port={DB_PORT}", "--bind-address=127.0.0.1", "--skip-log-bin",
         f"--pid-file={folder / 'db.pid'}", f"--log-error={folder / 'db.log'}",
         "--innodb-buffer-pool-size=32M"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    pids["mariadbd"] = server.pid

    def sql(statement: str) -> subprocess.CompletedProcess:
        return subprocess.run(["mariadb", "-S", str(socket_path), "-e", statement],
                              capture_output=True, text=True, check=False)  # fmt: skip

    wait_for(lambda: sql("SELECT 1").returncode == 0, 300, "MariaDB", folder / "db.log")
    made = sql(
        f"CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY '{DB_PASSWORD}';"
        " GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';"
    )
    if made.returncode != 0:
        raise RuntimeError(f"MariaDB refused the slurm user: {made.stderr.strip()}")


def start_slurmdbd(folder: Path, pids: dict[str, int]) -> None:
    """slurmdbd on the database, and the cluster, account and user registered in it."""
    DBD_CONF.write_text(
        f"{MARK}\nAuthType=auth/munge\nDbdHost=localhost\nSlurmUser=root\n"
        f"PidFile={folder}/slurmdbd.pid\nLogFile={folder}/slurmdbd.log\n"
        f"StorageType=accounting_storage/mysql\nStorageHost=127.0.0.1\nStoragePort={DB_PORT}\n"
        f"StorageUser=slurm\nStoragePass={DB_PASSWORD}\nStorageLoc=slurm_acct_db\n"
    )
    DBD_CONF.chmod(0o600)  # slurmdbd refuses a config others can read (it holds a password)
    subprocess.run(["slurmdbd"], check=True)
    record_daemon(pids, "slurmdbd", folder / "slurmdbd.pid", folder / "slurmdbd.log")

    def sacctmgr(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["sacctmgr", "-i", *args], capture_output=True, text=True)

    wait_for(lambda: sacctmgr("list", "cluster").returncode == 0, 300, "slurmdbd to answer",
              folder / "slurmdbd.log")  # fmt: skip
    for command in (
        ("add", "cluster", "sppotest"),
        ("add", "account", ACCOUNT),
        ("add", "user", "root", f"account={ACCOUNT}", f"defaultaccount={ACCOUNT}"),
    ):
        done = sacctmgr(*command)
        if done.returncode != 0 and "Nothing new added" not in done.stdout + done.stderr:
            raise RuntimeError(f"sacctmgr {' '.join(command)}: {done.stdout}{done.stderr}")
