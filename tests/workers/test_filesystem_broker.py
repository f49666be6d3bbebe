"""The embedded broker's transport (app.celery_fs): every message read whole, by exactly one reader."""
from __future__ import annotations

import multiprocessing
import os
import time
from pathlib import Path
from queue import Empty

import pytest
from kombu import Connection

from app.celery_fs import PARTIAL, Transport
from config import filesystem_broker_options

PAD = "x" * 20000  # a long message takes a while to write: a reader must never see it half-written


def _channel(instance: str, transport=Transport):
    options = filesystem_broker_options(Path(instance))
    return Connection("filesystem://", transport=transport, transport_options=options).default_channel


def _produce(instance: str, first: int, count: int) -> None:
    channel = _channel(instance)
    for n in range(first, first + count):
        channel._put("celery", {"n": n, "pad": PAD})


def _consume(instance: str, done, results) -> None:
    channel = _channel(instance)
    got = []
    try:
        while True:
            try:
                message = channel._get("celery")
            except Empty:
                if done.is_set() and not any(name.endswith(".msg") for name in os.listdir(channel.data_folder_in)):
                    break
                time.sleep(0.0005)
                continue
            assert message["pad"] == PAD, "a message was read before it was whole"
            got.append(message["n"])
    except Exception as error:  # reported to the test, which fails on it
        results.put(("error", repr(error)))
        return
    results.put(("ok", got))


@pytest.fixture()
def instance(tmp_path):
    """The broker's folders, as the app creates them."""
    for folder in ("data_folder_in", "processed_folder", "control_folder"):
        Path(filesystem_broker_options(tmp_path)[folder]).mkdir(parents=True, exist_ok=True)
    return str(tmp_path)


def test_writers_and_readers_at_once_lose_nothing_and_read_nothing_twice(instance):
    context = multiprocessing.get_context("fork")
    done, results = context.Event(), context.Queue()
    readers = [context.Process(target=_consume, args=(instance, done, results)) for _ in range(2)]
    writers = [context.Process(target=_produce, args=(instance, k * 400, 400)) for k in range(3)]
    for process in readers + writers:
        process.start()
    for process in writers:
        process.join(60)
    done.set()
    outcomes = [results.get(timeout=60) for _ in readers]
    for process in readers:
        process.join(10)
    assert [kind for kind, _ in outcomes] == ["ok", "ok"], outcomes
    received = sorted(n for _, got in outcomes for n in got)
    assert received == list(range(1200))  # each message once
    assert os.listdir(_channel(instance).processed_folder) == []


def test_a_message_being_written_is_not_taken(instance):
    channel = _channel(instance)
    folder = Path(channel.data_folder_in)
    (folder / f"1_{'0' * 8}.celery.msg{PARTIAL}").write_bytes(b'{"n": ')  # another process is writing it
    with pytest.raises(Empty):
        channel._get("celery")
    channel._put("celery", {"n": 7})
    assert channel._get("celery") == {"n": 7}
    assert [p.name for p in folder.iterdir()] == [f"1_{'0' * 8}.celery.msg{PARTIAL}"]
