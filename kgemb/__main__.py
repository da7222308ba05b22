"""``python -m kgemb`` (and ``torchrun -m kgemb train ...``): the ``kgemb`` command line."""

import sys

from kgemb.cli import main

if __name__ == "__main__":
    sys.exit(main())
