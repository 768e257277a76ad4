import sys

from modelmill.cli import main

sys.exit(main())
