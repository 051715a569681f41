import sys

from training.pipeline import main

sys.exit(main())
