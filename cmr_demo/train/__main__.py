import sys

from cmr_demo.cli import run
from cmr_demo.train.stage import main

sys.exit(run(main))
