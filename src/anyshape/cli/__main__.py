"""`python -m anyshape.cli`: the `anyshape` command."""

import sys

from anyshape.cli import main

sys.exit(main())
