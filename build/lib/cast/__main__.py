"""`python -m cast ...`: the same as the `cast` command."""
import sys

from cast.cli import main

sys.exit(main())
