"""The note-once policy: a row's note is added to the candidate at most once.

Comeet appends a note every time one is sent, and cannot be asked whether one arrived. So a
note is marked `pending` in the journal before it goes out; after an attempt that got no
clear answer it is not sent again (in this run or any later one), and the results sheet
says why (the messages below).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .client import Kind, Response
from .journal import Journal, NoteEntry
from .pool import Sender

NOTE_RETRY_WARNING = (
    "note not sent again: an attempt that carried it got no clear answer (a timeout, a "
    "dropped connection or a server error), so it may have been added; check the candidate "
    "in Comeet and add it by hand if missing"
)
PENDING_NOTE_WARNING = (
    "note not sent again: an earlier run was stopped while sending it and Comeet cannot be "
    "asked whether it arrived; check the candidate in Comeet and add it by hand if missing"
)
NOTE_ADDED_WARNING = (
    "note not sent: the same note was added on {date} (run {run}); change its text to add it again"
)


def note_not_sent(entry: NoteEntry) -> str:
    """Why a row's note is left out: added already (when, by which run), or maybe added."""
    if entry.state == "pending":
        return PENDING_NOTE_WARNING
    return NOTE_ADDED_WARNING.format(date=f"{entry.at:%Y-%m-%d}", run=entry.run)


class NoteSender:
    """Sends each row's note at most once.

    Before a note goes out, it is marked `pending` in the journal (when there is one),
    durably. After an attempt with a note that may have been applied without saying so
    (`Response.unclear`: a timeout, a dropped connection, a server error), the row's
    retries go without the note (the row is then reported with NOTE_RETRY_WARNING), and a
    row that carried nothing else fails at once: its note may be there already.
    """

    def __init__(
        self,
        client: Sender,
        journal: Journal | None,
        run_id: int | None,
        notes: Mapping[str, str],
        held_back: set[str],
    ) -> None:
        self.client, self.journal, self.run_id, self.notes = client, journal, run_id, notes
        #: uids whose note is not sent again in this run (added to as answers come).
        self.held_back = held_back

    async def patch(self, uid: str, body: Mapping[str, Any]) -> Response:
        if "note" in body:
            if uid in self.held_back:
                body = {key: value for key, value in body.items() if key != "note"}
                if body.keys() <= {"updated_by"}:
                    return Response(Kind.GIVE_UP, None, "note_not_resent", NOTE_RETRY_WARNING)
            elif self.journal is not None and self.run_id is not None:
                self.journal.note_pending(uid, self.notes[uid], self.run_id)
        response = await self.client.patch(uid, body)
        if "note" in body and response.unclear:
            self.held_back.add(uid)
        return response

    async def read(self, uid: str, *, real_id: bool = False) -> Response:
        return await self.client.read(uid, real_id=real_id)

    def refresh_token(self) -> None:
        self.client.refresh_token()
