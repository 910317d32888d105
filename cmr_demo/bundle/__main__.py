import sys

from cmr_demo.bundle.command import main
from cmr_demo.cli import run

sys.exit(run(main))
