"""`python -m streamd`: the command line."""

import sys

from streamd.cli import main

sys.exit(main())
