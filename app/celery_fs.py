"""Kombu's filesystem transport, with messages that appear whole and are taken by one reader only.

The embedded broker (`filesystem://`, under `instance/broker/`) is Kombu's filesystem transport.
In Kombu 5.7 it creates a message's file empty, then writes it. A worker polling the folder in
between takes the empty file and stops on the JSON error ("Unrecoverable error: JSONDecodeError"),
and the message is lost; it happened with beat embedded in the worker (`celery worker -B`). It
also moves each file it takes to the system's temporary folder, which copies the file instead of
renaming it when /tmp is another file system, so two workers could both run one task.

Here a message is written under a name that readers skip, then renamed into place; a reader takes
a message by renaming it into the processed folder, which is on the same file system (both live
under the instance folder), so exactly one reader gets it, whole. File names and their order
(milliseconds first, oldest first) are Kombu's.
"""
from __future__ import annotations

import os
import uuid
from queue import Empty
from time import monotonic

from kombu.exceptions import ChannelError
from kombu.transport import filesystem
from kombu.utils.encoding import bytes_to_str, str_to_bytes
from kombu.utils.json import dumps, loads

#: Suffix of a message being written: "<ms>_<uuid>.<queue>.msg.part" is no queue's "<queue>.msg".
PARTIAL = ".part"


class Channel(filesystem.Channel):
    """Atomic put and get; everything else (fanout, exchanges, purge) is Kombu's."""

    def _put(self, queue, payload, **kwargs):
        """Write the message beside the queue, then rename it into the queue in one step."""
        name = f"{int(round(monotonic() * 1000))}_{uuid.uuid4()}.{queue}.msg"
        path = os.path.join(self.data_folder_out, name)
        try:
            with open(path + PARTIAL, "wb") as f:
                f.write(str_to_bytes(dumps(payload)))
            os.replace(path + PARTIAL, path)
        except OSError as exc:
            raise ChannelError(f"Cannot add file {path!r} to directory") from exc

    def _get(self, queue):
        """Take the oldest message of the queue: whoever renames it first reads it."""
        wanted = f"{queue}.msg"
        for name in sorted(os.listdir(self.data_folder_in)):
            if name.partition(".")[2] != wanted:
                continue
            taken = os.path.join(self.processed_folder, name)
            try:
                os.rename(os.path.join(self.data_folder_in, name), taken)
            except FileNotFoundError:
                continue  # another reader took it first
            except OSError as exc:
                raise ChannelError(f"Cannot take {name!r} from the queue (is the processed folder "
                                   f"on the queue's file system?)") from exc
            try:
                with open(taken, "rb") as f:
                    payload = f.read()
                if not self.store_processed:
                    os.remove(taken)
            except OSError as exc:
                raise ChannelError(f"Cannot read file {taken!r} from queue.") from exc
            return loads(bytes_to_str(payload))
        raise Empty()


class Transport(filesystem.Transport):
    """Kombu's filesystem transport with the channel above."""

    Channel = Channel


def use_for_filesystem_urls() -> None:
    """Make `filesystem://` broker URLs use this transport (Kombu looks transports up by alias)."""
    from kombu.transport import TRANSPORT_ALIASES

    TRANSPORT_ALIASES["filesystem"] = f"{__name__}:Transport"
