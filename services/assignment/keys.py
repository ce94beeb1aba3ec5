"""Redis key layout. Registry keys share the `{assay}` hash tag so their transactions stay in
one slot on Redis Cluster; sticky assignments are tagged by unit so they spread out."""

EXPERIMENTS = "{assay}:experiments"
CONFIG_VERSION = "{assay}:config-version"
CONFIG_CHANNEL = "assay:config-changed"


def overrides_key(experiment: str) -> str:
    return f"{{assay}}:overrides:{experiment}"


def audit_key(experiment: str) -> str:
    return f"{{assay}}:audit:{experiment}"


def sticky_key(unit_id: str) -> str:
    return f"assay:sticky:{{{unit_id}}}"
