"""Makes sure what `make test` needs outside Python is there, installing it where it can.

Chromium comes from Debian's packages (Playwright's own browser download cannot work here).
PostgreSQL must be reachable at AI_ASSETS_TEST_PG_URL; a local Debian cluster is started if
it is installed but stopped. Anything still missing is a hard failure, never a skip.
"""

import os
import shutil
import subprocess
import sys
import time

CHROMIUM = os.environ.get("AI_ASSETS_CHROMIUM", "/usr/bin/chromium")
PG_URL = os.environ.get("AI_ASSETS_TEST_PG_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres")


def ensure_chromium() -> None:
    if os.path.exists(CHROMIUM):
        return
    if os.geteuid() == 0 and shutil.which("apt-get"):
        print("installing Debian's chromium for the browser tests ...", flush=True)
        subprocess.run(["apt-get", "update", "-qq"], check=True)
        subprocess.run(["apt-get", "install", "-y", "-qq", "chromium"], check=True,
                       env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
    if not os.path.exists(CHROMIUM):
        sys.exit(f"chromium not found at {CHROMIUM}: install Debian's chromium package")


def pg_reachable() -> bool:
    import sqlalchemy

    try:
        with sqlalchemy.create_engine(PG_URL).connect() as conn:
            conn.exec_driver_sql("select 1")
        return True
    except sqlalchemy.exc.OperationalError:
        return False


def ensure_postgres() -> None:
    if pg_reachable():
        return
    if shutil.which("pg_ctlcluster") and os.path.isdir("/etc/postgresql"):
        for version in os.listdir("/etc/postgresql"):
            subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "start"])
        for _ in range(30):
            if pg_reachable():
                return
            time.sleep(1)
    sys.exit(f"PostgreSQL is not reachable at {PG_URL}: start it or set AI_ASSETS_TEST_PG_URL")


if __name__ == "__main__":
    ensure_chromium()
    ensure_postgres()
    print(f"test prerequisites: chromium at {CHROMIUM}, PostgreSQL at {PG_URL}")
