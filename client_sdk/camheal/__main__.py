import sys

from camheal.cli import main

sys.exit(main())
