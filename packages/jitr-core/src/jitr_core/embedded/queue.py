"""A durable at-least-once queue in SQLite, with visibility timeouts and a dead-letter table.

A receive claims messages in one write transaction (so two workers, in any processes, never get
the same delivery) and hides them until their visibility timeout passes. A receipt names one
delivery (message id and receive count), so after a redelivery the old receipt acknowledges
nothing: a slow worker cannot delete a message another worker now holds.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping

from ..errors import JitrError
from ..model import QueueMessage, ReceivedMessage
from .db import Database

POLL_S = 0.2  # how often a waiting worker looks for messages sent by other processes
DEAD_LETTER_REASON = "dead_letter_reason"

_ENQUEUE = """INSERT INTO messages (queue, body, attributes, visible_at, receive_count, enqueued_at)
VALUES (?, ?, ?, ?, 0, ?)"""
_VISIBLE = """SELECT id, body, attributes, receive_count FROM messages
WHERE queue = ? AND visible_at <= ? ORDER BY visible_at, id LIMIT ?"""
_CLAIM = "UPDATE messages SET receive_count = receive_count + 1, visible_at = ? WHERE id = ?"
_BURY = """INSERT INTO dead_letters (message_id, queue, body, attributes, receive_count, enqueued_at, dead_at, reason)
SELECT id, queue, body, attributes, receive_count, enqueued_at, ?, ? FROM messages WHERE id = ?"""
_DEAD_LETTER = """INSERT INTO dead_letters (queue, body, attributes, receive_count, enqueued_at, dead_at, reason)
VALUES (?, ?, ?, 0, ?, ?, ?)"""
_FORGET = "DELETE FROM messages WHERE id = ?"
_ACK = "DELETE FROM messages WHERE id = ? AND receive_count = ? AND queue = ?"
_NEXT = "SELECT min(visible_at) FROM messages WHERE queue = ?"
_DEAD = "SELECT body, id, receive_count, attributes, reason FROM dead_letters WHERE queue = ? ORDER BY id"
_PRUNE = "DELETE FROM dead_letters WHERE dead_at < ?"
_NO_ATTRIBUTES = "{}"


class Queue:
    """Logical queues by name in one table; messages received ``max_receive_count`` times go to dead letters."""

    def __init__(self, db: Database, max_receive_count: int) -> None:
        self._db = db
        self._max_receive_count = max_receive_count

    def enqueue(self, queue: str, message: QueueMessage, delay_s: int) -> str:
        if delay_s < 0:
            raise JitrError(f"a message delay must be 0 or more seconds, found {delay_s}")
        now = time.time()
        cursor = self._db.write(_ENQUEUE, (queue, message.body, _encode(message.attributes), now + delay_s, now))
        self._db.notify_enqueued(queue)
        return str(cursor.lastrowid)

    def receive(self, queue: str, max_messages: int, visibility_timeout_s: int) -> list[ReceivedMessage]:
        """Claim up to ``max_messages`` visible messages; those past the receive limit are buried instead."""
        if max_messages < 1 or visibility_timeout_s < 0:
            raise JitrError(
                f"receive needs max_messages >= 1 and visibility_timeout_s >= 0, "
                f"found {max_messages} and {visibility_timeout_s}"
            )
        received: list[ReceivedMessage] = []
        with self._db.transaction() as conn:
            while len(received) < max_messages:
                now, wanted = time.time(), max_messages - len(received)
                rows = conn.execute(_VISIBLE, (queue, now, wanted)).fetchall()
                for message_id, body, attributes, count in rows:
                    if count >= self._max_receive_count:
                        reason = f"received {count} times; max_receive_count is {self._max_receive_count}"
                        conn.execute(_BURY, (now, reason, message_id))
                        conn.execute(_FORGET, (message_id,))
                        continue
                    conn.execute(_CLAIM, (now + visibility_timeout_s, message_id))
                    last_try = count + 1 >= self._max_receive_count
                    receipt = f"{message_id}.{count + 1}"
                    received.append(ReceivedMessage(body, receipt, count + 1, _attributes(attributes), last_try))
                if len(rows) < wanted:
                    break
        return received

    def ack(self, queue: str, receipt: str) -> bool:
        """Delete the message of this delivery; False when the receipt is stale or unknown."""
        message_id, _, count = receipt.partition(".")
        if not (message_id.isdigit() and count.isdigit()):
            return False
        return self._db.write(_ACK, (int(message_id), int(count), queue)).rowcount == 1

    def dead_letter(self, queue: str, message: QueueMessage, reason: str) -> bool:
        """Keep a poison message for an operator without delivering it."""
        now = time.time()
        self._db.write(_DEAD_LETTER, (queue, message.body, _encode(message.attributes), now, now, reason))
        return True

    def dead_letters(self, queue: str) -> list[ReceivedMessage]:
        """Buried messages, oldest first; the reason is in the ``dead_letter_reason`` attribute."""
        return [
            ReceivedMessage(body, f"dead.{dead_id}", count, {**_attributes(attributes), DEAD_LETTER_REASON: reason})
            for body, dead_id, count, attributes, reason in self._db.read(_DEAD, (queue,))
        ]

    def prune_dead_letters(self, before: float) -> int:
        """Forget dead letters buried before ``before`` (epoch seconds); returns how many."""
        return self._db.write(_PRUNE, (before,)).rowcount

    def wait(self, queue: str, timeout_s: float) -> bool:
        """Block until ``queue`` may have a visible message (True) or ``timeout_s`` passes (False).

        Enqueues in this process wake the waiter at once; messages from other processes, delayed
        messages and expired visibility timeouts are found by polling every :data:`POLL_S`.
        """
        deadline = time.monotonic() + timeout_s
        while True:
            seen = self._db.enqueue_count(queue)
            rows = self._db.read(_NEXT, (queue,))
            next_visible: float | None = rows[0][0]
            now = time.time()
            if next_visible is not None and next_visible <= now:
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            pause = min(remaining, POLL_S) if next_visible is None else min(remaining, POLL_S, next_visible - now)
            self._db.wait_enqueued(queue, seen, pause)


def _encode(attributes: Mapping[str, str]) -> str:
    return json.dumps(dict(attributes)) if attributes else _NO_ATTRIBUTES


def _attributes(text: str) -> Mapping[str, str]:
    return {} if text == _NO_ATTRIBUTES else dict(json.loads(text))
