"""`python -m cast.train {moco,supervised,probe} ...`: the same as `cast train ...`."""
import sys

from cast.train.cli import main

sys.exit(main())
