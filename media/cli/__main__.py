"""``python -m media.cli``: the ``mlscall`` command without the console script."""

import sys

from . import main

sys.exit(main())
