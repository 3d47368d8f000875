"""Load no installed reelforge plugins (this one included): each test registers what it
needs, so an installed copy of this plugin is not registered twice."""

import os

os.environ["REELFORGE_LOAD_PLUGINS"] = ""
os.environ["REELFORGE_RETRY_BACKOFF"] = "0"
os.environ.pop("REELFORGE_PLUGINS", None)
