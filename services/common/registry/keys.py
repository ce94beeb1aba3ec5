"""Redis key layout of the experiment registry. Registry keys share the `{assay}` hash tag so
the assignment service's write transactions stay in one slot on Redis Cluster. (Sticky
assignments are keyed per unit by `assay.sticky.sticky_key`, shared with the SDK.)"""

EXPERIMENTS = "{assay}:experiments"
CONFIG_VERSION = "{assay}:config-version"
CONFIG_CHANNEL = "assay:config-changed"


def overrides_key(experiment: str) -> str:
    return f"{{assay}}:overrides:{experiment}"


def audit_key(experiment: str) -> str:
    return f"{{assay}}:audit:{experiment}"
