"""Reading, synchronising and atomically writing ROS bags (rosbag2 sqlite3 / MCAP, ROS 1).

Reading goes through ``rosbags``' ``AnyReader`` (rosbag2 directories, single ``.db3`` /
``.mcap`` files, ROS 1 ``.bag`` files); types come from the definitions stored in the bag. Any
failure to read is re-raised as a ``DataError`` naming the bag, so a corrupt file gives one clear
line instead of a SQLite or MCAP traceback.

Writing produces rosbag2 (format version 9). :class:`AtomicBagWriter` writes into a temporary
folder beside the output and renames it into place only when the bag is complete: a failure
leaves no output behind, and an existing output is kept unless ``force`` is given.
"""
from __future__ import annotations

import os
import shutil
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from ..engine.errors import DataError
from .typestore import ros_typestore

__all__ = ['AtomicBagWriter', 'BagMessage', 'bag_topics', 'iter_messages', 'match_pairs',
           'open_bag', 'read_topic', 'require_topics']

STORAGES = ('sqlite3', 'mcap')


@contextmanager
def open_bag(path: str | os.PathLike):
    """Open a bag for reading; yields an open ``rosbags.highlevel.AnyReader``.

    Raises:
        DataError: the path does not exist, or is not a readable bag.
    """
    from rosbags.highlevel import AnyReader

    path = Path(path)
    if not path.exists():
        raise DataError(f'{path}: bag not found')
    try:
        reader = AnyReader([path], default_typestore=ros_typestore())
        reader.open()
    except Exception as err:  # noqa: BLE001 - SQLite, MCAP, YAML... errors all mean "corrupt"
        raise DataError(f'{path}: cannot read the bag (corrupt, or not a rosbag2 / ROS 1 '
                        f'bag): {type(err).__name__}: {err}') from err
    try:
        yield reader
    finally:
        try:
            reader.close()
        except Exception:  # noqa: BLE001 - closing a broken file must not hide the first error
            pass


def bag_topics(reader) -> dict[str, str]:
    """Topic -> message type of an open bag."""
    return {c.topic: c.msgtype for c in reader.connections}


def require_topics(have: Mapping[str, str], topics: Iterable[str],
                   path: str | os.PathLike) -> None:
    """Raise a ``DataError`` naming the first missing topic and the topics the bag has.

    Args:
        have: topic -> type of the bag (``bag_topics(reader)``).
    """
    for topic in topics:
        if topic not in have:
            listing = ', '.join(f'{t} ({m})' for t, m in sorted(have.items())) or 'none'
            raise DataError(f'{path}: no topic {topic!r} in the bag; topics in the bag: {listing}')


class BagMessage:
    """One message read from a bag: ``topic``, ``msgtype``, bag time ``timestamp`` (ns),
    the ``connection`` and its serialized ``rawdata``; ``msg`` deserialises it (cached; works
    after the bag is closed)."""

    __slots__ = ('_deserialize', '_msg', 'connection', 'msgtype', 'rawdata', 'timestamp',
                 'topic')

    def __init__(self, reader, connection, timestamp: int, rawdata: bytes) -> None:
        # Keep the typestore of the open reader: closing the reader replaces its own.
        store = reader.typestore
        self._deserialize = store.deserialize_cdr if reader.is2 else store.deserialize_ros1
        self.connection = connection
        self.topic, self.msgtype = connection.topic, connection.msgtype
        self.timestamp, self.rawdata = int(timestamp), rawdata
        self._msg = None

    @property
    def msg(self):
        if self._msg is None:
            try:
                self._msg = self._deserialize(self.rawdata, self.msgtype)
            except Exception as err:  # noqa: BLE001
                raise DataError(f'{self.topic}: cannot deserialise a {self.msgtype} message at '
                                f't={self.timestamp} ns: {type(err).__name__}: {err}') from err
        return self._msg


def iter_messages(reader, path: str | os.PathLike,
                  topics: Sequence[str] | None = None) -> Iterator[BagMessage]:
    """Messages of ``topics`` (all when ``None``) in bag-time order; read errors -> DataError."""
    connections = [c for c in reader.connections if topics is None or c.topic in topics]
    if topics is not None and not connections:
        return
    iterator = reader.messages(connections=connections)
    while True:
        try:
            connection, timestamp, rawdata = next(iterator)
        except StopIteration:
            return
        except Exception as err:  # noqa: BLE001 - a corrupt page or chunk midway through
            raise DataError(f'{path}: cannot read the bag (corrupt?): {type(err).__name__}: '
                            f'{err}') from err
        yield BagMessage(reader, connection, timestamp, rawdata)


def read_topic(path: str | os.PathLike, topic: str) -> list[tuple[int, object]]:
    """All ``(bag time ns, message)`` of one topic, in time order.

    Raises:
        DataError: unreadable bag, or no such topic (the message lists the bag's topics).
    """
    with open_bag(path) as reader:
        require_topics(bag_topics(reader), [topic], path)
        return [(m.timestamp, m.msg) for m in iter_messages(reader, path, [topic])]


def match_pairs(left_ns: Sequence[int], right_ns: Sequence[int],
                tolerance_ns: int) -> list[tuple[int, int]]:
    """Pair left and right stamps one-to-one, closest first, within ``tolerance_ns``.

    Each left stamp proposes its nearest right stamp; proposals are accepted in order of
    increasing time difference, and a right stamp already taken is not reused (its other
    suitors stay unpaired: with cameras triggered together that only drops true orphans).

    Returns:
        ``(i, j)`` index pairs sorted by ``i``.
    """
    left = np.asarray(left_ns, dtype=np.int64)
    right = np.asarray(right_ns, dtype=np.int64)
    if left.size == 0 or right.size == 0:
        return []
    order = np.argsort(right, kind='stable')
    sorted_right = right[order]
    pos = np.searchsorted(sorted_right, left)
    below = np.clip(pos - 1, 0, right.size - 1)
    above = np.clip(pos, 0, right.size - 1)
    d_below, d_above = np.abs(left - sorted_right[below]), np.abs(sorted_right[above] - left)
    nearest = np.where(d_above < d_below, above, below)
    distance = np.minimum(d_below, d_above)
    taken: set[int] = set()
    pairs = []
    for i in np.argsort(distance, kind='stable'):  # a loop over frames
        j = int(order[nearest[i]])
        if distance[i] <= tolerance_ns and j not in taken:
            taken.add(j)
            pairs.append((int(i), j))
    return sorted(pairs)


class AtomicBagWriter:
    """Write a rosbag2 to a temporary folder beside ``path``; rename into place on success.

    Use as a context manager. If the block raises, the partial bag is deleted and ``path`` is
    untouched. ``path`` existing already is an error unless ``force``; with ``force`` the old
    output is replaced only once the new one is complete.

    Args:
        path: the output bag (a rosbag2 folder).
        storage: ``'sqlite3'`` (``.db3``) or ``'mcap'``.
        force: replace an existing ``path``.
    """

    def __init__(self, path: str | os.PathLike, storage: str = 'sqlite3',
                 force: bool = False) -> None:
        if storage not in STORAGES:
            raise ValueError(f'storage must be one of {STORAGES}, got {storage!r}')
        self.path = Path(path)
        self.storage = storage
        self.force = force
        self._writer = None
        self._tmpdir: Path | None = None
        self._connections: dict[str, object] = {}

    def __enter__(self) -> AtomicBagWriter:
        from rosbags.rosbag2 import StoragePlugin, Writer

        if (self.path.exists() or self.path.is_symlink()) and not self.force:
            raise DataError(f'{self.path}: output exists; pass --force (force=True) to replace it')
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._tmpdir = self.path.parent / f'.{self.path.name}.{os.getpid()}.tmp'
        if self._tmpdir.exists():  # a leftover of a killed run with this pid
            shutil.rmtree(self._tmpdir)
        self._tmpdir.mkdir()
        plugin = StoragePlugin.MCAP if self.storage == 'mcap' else StoragePlugin.SQLITE3
        # The bag folder inside the temporary one has the final name, so the storage file and
        # metadata.yaml already carry it and the rename is all that is left.
        self._writer = Writer(self._tmpdir / self.path.name, version=9, storage_plugin=plugin)
        self._writer.open()
        return self

    def add_connection(self, topic: str, msgtype: str, typestore=None) -> None:
        """Declare ``topic`` of ``msgtype`` (defined by ``typestore``, default ours)."""
        if topic in self._connections:
            raise ValueError(f'topic {topic} already added to {self.path}')
        self._connections[topic] = self._writer.add_connection(
            topic, msgtype, typestore=typestore or ros_typestore())

    def has_topic(self, topic: str) -> bool:
        return topic in self._connections

    def write_raw(self, topic: str, timestamp: int, data: bytes | memoryview) -> None:
        """Write CDR-serialised bytes at bag time ``timestamp`` (ns)."""
        self._writer.write(self._connections[topic], int(timestamp), data)

    def write(self, topic: str, timestamp: int, msg) -> None:
        """Serialise ``msg`` with our typestore (adding the topic if new) and write it."""
        if topic not in self._connections:
            self.add_connection(topic, msg.__msgtype__)
        self.write_raw(topic, timestamp, ros_typestore().serialize_cdr(msg, msg.__msgtype__))

    def __exit__(self, exc_type, exc, tb) -> bool:
        writer, self._writer = self._writer, None
        tmpdir, self._tmpdir = self._tmpdir, None
        try:
            if exc_type is None:
                writer.close()
                self._replace(tmpdir / self.path.name)
            else:
                writer.abort()
        finally:
            if tmpdir is not None and tmpdir.exists():
                shutil.rmtree(tmpdir, ignore_errors=True)
        return False

    def _replace(self, done: Path) -> None:
        old = None
        if self.path.exists() or self.path.is_symlink():
            # Move the old output aside first, so a failed rename can put it back.
            old = self.path.parent / f'.{self.path.name}.{os.getpid()}.old'
            os.replace(self.path, old)
        try:
            os.replace(done, self.path)
        except BaseException:
            if old is not None:
                os.replace(old, self.path)
            raise
        if old is not None:
            if old.is_dir() and not old.is_symlink():
                shutil.rmtree(old, ignore_errors=True)
            else:
                old.unlink()
