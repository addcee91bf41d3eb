import sys

from ilrm_ros.cli import main

sys.exit(main())
