import sys

from camheald.cli import main

sys.exit(main())
