"""Make ``src/sppoflow`` importable when the project is not pip-installed (e.g. in a bare
per-rule conda environment); a no-op when it is."""

import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
if str(SRC) not in sys.path:
    sys.path.insert(1, str(SRC))
