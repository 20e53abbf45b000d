import sys

from rtcstats_server.cli import main

sys.exit(main())
