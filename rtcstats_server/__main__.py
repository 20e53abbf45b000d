import sys

from rtcstats_server.cli.main import main

sys.exit(main())
