"""`python -m porejax.cli`: the `porejax` command."""

import sys

from porejax.cli import main

sys.exit(main())
