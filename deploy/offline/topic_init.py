"""The offline stack's `topic-init`: create the Kafka topics once the broker answers.

`python -m deploy.offline.topic_init TOPIC...` with `ASSAY_KAFKA_BOOTSTRAP` and
`ASSAY_KAFKA_PARTITIONS`; stands in for the `kafka-topics.sh` call of the stock compose file.
"""

from __future__ import annotations

import os
import sys

from kafka import KafkaAdminClient
from kafka.admin import NewTopic
from kafka.errors import TopicAlreadyExistsError

from deploy.broker import wait_for_metadata


def create_topics(bootstrap: str, topics: list[str], partitions: int) -> list[str]:
    """Create the topics that do not exist yet; returns the ones created."""
    wait_for_metadata(bootstrap, timeout=120)
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="assay-topic-init")
    try:
        missing = [name for name in topics if name not in set(admin.list_topics())]
        for name in missing:
            try:
                admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1)])
            except TopicAlreadyExistsError:
                continue
        return missing
    finally:
        admin.close()


def main(argv: list[str]) -> int:
    bootstrap = os.environ.get("ASSAY_KAFKA_BOOTSTRAP", "kafka:9092")
    partitions = int(os.environ.get("ASSAY_KAFKA_PARTITIONS", "6"))
    created = create_topics(bootstrap, argv, partitions)
    print(f"topics {argv} on {bootstrap}: created {created or 'none'} ({partitions} partitions)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
