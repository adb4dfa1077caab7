"""`python -m cast.train {moco,supervised,probe} ...` (and `torchrun ... -m cast.train ...`): the same as `cast train ...`."""
import sys

from cast.cli.train import main

sys.exit(main())
