import sys

from raysys.cli.main import main

sys.exit(main())
