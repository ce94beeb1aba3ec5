import sys

from deploy.offline.build import main

sys.exit(main())
