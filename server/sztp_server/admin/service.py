"""The desired-state service behind every admin write: the write (writes.py) is planned,
checked and committed, with its audit entries, in the writer process (writer.py); this
process then serves the new revision.
"""

from __future__ import annotations

from typing import Any

from ..context import ServerContext, Snapshot
from .jobs import Progress
from .writer import WriterHandle, WriterProcess
from .writes import ApplyState, Commit, JsonAnswer, Write


class StateService:
    def __init__(self, context: ServerContext, writer: WriterHandle | None = None) -> None:
        self.context = context
        self.store = context.admin_store
        self.writer = writer or WriterProcess(
            context.store, context.secret_key, context.config.issuer_names()
        )

    def close(self) -> None:
        self.writer.close()

    async def fresh_snapshot(self) -> Snapshot:
        """The snapshot at the store's current revision (admin reads must not lag)."""
        return await self.context.poll()

    async def commit(self, write: Write, *, actor: str, if_match: str | None) -> Commit:
        """Store what `write` changes (a 4xx, and nothing stored, when it is refused)."""
        commit: Commit = await self._run(write, actor=actor, if_match=if_match)
        return commit

    async def apply_state(
        self, write: ApplyState, *, actor: str, if_match: str | None, progress: Progress
    ) -> JsonAnswer:
        """The bulk endpoint's answer (the plan, encoded), its changes stored unless a dry run."""
        answer: JsonAnswer = await self._run(
            write, actor=actor, if_match=if_match, progress=progress
        )
        return answer

    async def _run(
        self, write: Write, *, actor: str, if_match: str | None, progress: Progress | None = None
    ) -> Any:
        answer = await self.writer.run(write, actor=actor, if_match=if_match, progress=progress)
        handed_over = write.is_large() and answer.changed
        if handed_over:
            # Its process goes while the others read the new state, not after: at a million
            # devices the two would otherwise add up to the server's peak memory.
            self.writer.retire()
        try:
            # Read-your-writes: the caller's next request, and any device's, sees the state it
            # wrote.
            await self.context.published(answer.revision)
            return answer
        finally:
            if handed_over:
                self.writer.renew()
