"""The Kafka side: topic set-up and an idempotent kafka-python producer bridged to asyncio.

kafka-python is thread-based: `send` appends to an accumulator and a sender thread talks to
the broker. Sends run on one dedicated thread (so a metadata wait or a full buffer never
blocks the event loop), and each request's delivery futures report back through one counter
that wakes the event loop once, with `call_soon_threadsafe`, when the last of them settles.

After any failure the producer is retired and a new one is built on the next `connect`:
against a restarted broker an idempotent producer cannot recover (see deploy/broker.py),
and a fresh producer also drops stale metadata.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from kafka import KafkaAdminClient, KafkaProducer
from kafka.admin import NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError
from kafka.serializer import Serializer

from services.exposure.settings import ExposureSettings
from services.exposure.spool_format import SpoolEntry

log = logging.getLogger("assay.exposure.kafka")
CONNECT_PROBE_SECONDS = 1.0


class BrokerUnavailable(Exception):
    pass


class EncodedBytes(Serializer):
    """Keys (UTF-8 unit ids) and values (orjson-encoded JSON) are encoded once, during
    validation, so the spool and the broker carry the same bytes; this serializer only
    refuses anything that is not already bytes."""

    def serialize(self, topic: str, headers: list[tuple[str, bytes]], data: object) -> bytes:
        if not isinstance(data, bytes):
            raise TypeError(f"expected encoded bytes for topic {topic}, got {type(data).__name__}")
        return data


def _probe(bootstrap: str) -> None:
    """Fail within a second when no bootstrap server accepts TCP connections (kafka-python
    would otherwise wait for its bootstrap timeout)."""
    for server in bootstrap.split(","):
        host, _, port = server.strip().rpartition(":")
        try:
            with socket.create_connection((host or "127.0.0.1", int(port)), timeout=CONNECT_PROBE_SECONDS):
                return
        except (OSError, ValueError):
            continue
    raise BrokerUnavailable(f"no Kafka bootstrap server in '{bootstrap}' accepts connections")


def ensure_topics(admin: KafkaAdminClient, topics: Sequence[str], partitions: int, replication: int) -> None:
    """Create the topics that do not exist yet (another producer may race us: that is fine)."""
    existing = set(admin.list_topics())
    missing = [NewTopic(t, partitions, replication) for t in topics if t not in existing]
    if not missing:
        return
    try:
        admin.create_topics(missing)
        log.info("created topics", extra={"topics": [t.name for t in missing], "partitions": partitions})
    except TopicAlreadyExistsError:
        pass


class _Confirmations:
    """Delivery results of one request's (or one replay batch's) messages, settled from the
    producer's sender thread."""

    def __init__(self, count: int, loop: asyncio.AbstractEventLoop) -> None:
        self.acked = [False] * count
        self.first_error: BaseException | None = None
        self._pending = count
        self._lock = threading.Lock()
        self._loop = loop
        self.done: asyncio.Future[None] = loop.create_future()
        if count == 0:
            self.done.set_result(None)

    def settle(self, index: int, error: BaseException | None) -> None:
        with self._lock:
            self.acked[index] = error is None
            if error is not None and self.first_error is None:
                self.first_error = error
            self._pending -= 1
            finished = self._pending == 0
        if finished:
            with contextlib.suppress(RuntimeError):  # a closed loop: nobody is waiting any more
                self._loop.call_soon_threadsafe(self._finish)

    def _finish(self) -> None:
        if not self.done.done():
            self.done.set_result(None)


class KafkaSink:
    def __init__(self, settings: ExposureSettings, topics: Sequence[str]) -> None:
        self.settings = settings
        self.topics = tuple(topics)
        self._producer: KafkaProducer | None = None
        self.last_error: str | None = None
        # One thread for all sends: several would only take turns on the GIL (and contend
        # with the producer's sender thread), which costs more than it overlaps.
        self._send_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="assay-kafka-send")

    @property
    def connected(self) -> bool:
        return self._producer is not None

    def _new_producer(self) -> KafkaProducer:
        s = self.settings
        return KafkaProducer(
            bootstrap_servers=s.kafka_bootstrap.split(","), client_id="assay-exposure",
            acks="all", enable_idempotence=True,
            key_serializer=EncodedBytes(), value_serializer=EncodedBytes(),
            linger_ms=s.kafka_linger_ms, batch_size=s.kafka_batch_bytes,
            request_timeout_ms=s.kafka_produce_timeout_ms,
            delivery_timeout_ms=s.kafka_produce_timeout_ms + s.kafka_linger_ms,  # the minimum allowed
            max_block_ms=s.kafka_produce_timeout_ms, allow_auto_create_topics=False,
            reconnect_backoff_max_ms=1000,
        )  # fmt: skip

    def _connect_blocking(self) -> KafkaProducer:
        s = self.settings
        _probe(s.kafka_bootstrap)
        admin = KafkaAdminClient(
            bootstrap_servers=s.kafka_bootstrap.split(","), client_id="assay-exposure-admin",
            bootstrap_timeout_ms=s.kafka_produce_timeout_ms, request_timeout_ms=s.kafka_produce_timeout_ms,
        )  # fmt: skip
        try:
            ensure_topics(admin, self.topics, s.kafka_partitions, s.kafka_replication_factor)
        finally:
            admin.close()
        producer = self._new_producer()
        try:
            for topic in self.topics:
                producer.partitions_for(topic)  # metadata now, so `send` never waits for it
        except KafkaError:
            producer.close(timeout=0)
            raise
        return producer

    async def connect(self) -> bool:
        """Set up topics and a fresh producer; False (with `last_error`) when the broker is away."""
        if self._producer is not None:
            return True
        try:
            self._producer = await asyncio.to_thread(self._connect_blocking)
        except (KafkaError, BrokerUnavailable, OSError) as exc:
            self.last_error = f"{type(exc).__name__}: {exc}"[:300]
            return False
        self.last_error = None
        log.info("connected to Kafka", extra={"bootstrap": self.settings.kafka_bootstrap})
        return True

    @staticmethod
    def _send_all(producer: KafkaProducer, entries: Sequence[SpoolEntry], confirmations: _Confirmations) -> None:
        for index, entry in enumerate(entries):
            try:
                future = producer.send(entry.topic, key=entry.key, value=entry.value)
            except Exception as exc:  # closed producer, metadata timeout, full buffer: fail the rest
                for rest in range(index, len(entries)):
                    confirmations.settle(rest, exc)
                return
            future.add_callback(lambda _metadata, i=index: confirmations.settle(i, None))
            future.add_errback(lambda error, i=index: confirmations.settle(i, error))

    async def produce(self, entries: Sequence[SpoolEntry]) -> list[bool]:
        """Send `entries`; for each, whether the broker acked it within the produce timeout.
        An entry reported False may still reach the broker later (a duplicate if re-sent)."""
        producer = self._producer
        if producer is None:
            return [False] * len(entries)
        loop = asyncio.get_running_loop()
        confirmations = _Confirmations(len(entries), loop)
        await loop.run_in_executor(self._send_thread, self._send_all, producer, entries, confirmations)
        try:
            await asyncio.wait_for(asyncio.shield(confirmations.done), self._wait_seconds)
        except TimeoutError:
            confirmations.first_error = confirmations.first_error or TimeoutError("no ack within the timeout")
        if confirmations.first_error is not None:
            self.retire(producer, f"{type(confirmations.first_error).__name__}: {confirmations.first_error}")
        return list(confirmations.acked)

    @property
    def _delivery_timeout_seconds(self) -> float:
        return (self.settings.kafka_produce_timeout_ms + self.settings.kafka_linger_ms) / 1000

    @property
    def _wait_seconds(self) -> float:
        # A little longer than kafka-python's own delivery timeout, so that normally it is the
        # producer that gives up on a batch (and will not deliver it later).
        return self._delivery_timeout_seconds + 0.5

    def retire(self, producer: KafkaProducer, reason: str) -> None:
        """Stop using `producer` if it is still the current one; it is closed in the background
        once its pending batches expire (close() raises while batches are pending)."""
        if producer is not self._producer:
            return
        self._producer = None
        self.last_error = reason[:300]
        log.warning("Kafka produce failed; spooling until the broker is back", extra={"error": self.last_error})
        grace = self._delivery_timeout_seconds + 2
        threading.Thread(target=self._close_quietly, args=(producer, grace), daemon=True).start()

    @staticmethod
    def _close_quietly(producer: KafkaProducer, grace: float) -> None:
        try:
            producer.close(timeout=grace)
        except KafkaError as exc:
            log.warning("a retired Kafka producer did not close cleanly", extra={"error": str(exc)})

    async def close(self) -> None:
        """Flush and close on shutdown."""
        producer, self._producer = self._producer, None
        if producer is not None:
            await asyncio.to_thread(self._close_quietly, producer, self.settings.produce_timeout_seconds + 1)
        self._send_thread.shutdown(wait=False)
