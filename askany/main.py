"""`python -m askany.main`: the command line (askany/cli)."""

import sys

from askany.cli.main import main

if __name__ == "__main__":
    sys.exit(main())
