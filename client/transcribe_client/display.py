"""How a batch looks: a progress bar per input and one overall on a terminal, else one line per
change of an input's state (for logs and pipes)."""

from __future__ import annotations

from collections import Counter
from types import TracebackType
from typing import TextIO

from rich.console import Console
from rich.filesize import decimal
from rich.progress import BarColumn, Progress, TaskID, TaskProgressColumn, TextColumn
from rich.text import Text

from transcribe_client.batch import Outcome
from transcribe_client.inputs import Item
from transcribe_client.service import JobState

LABEL_WIDTH = 32
MARKS = {
    Outcome.DONE: ("✓", "green"),
    Outcome.SKIPPED: ("·", "dim"),
    Outcome.SUBMITTED: ("↑", "cyan"),
    Outcome.FAILED: ("✗", "red"),
}


def describe(state: JobState, percent: bool = True) -> str:
    """A job's state in a few words: `queued, position 2`, `transcribing 40%`, `finished`."""
    if state.status == "queued":
        return f"queued, position {state.queue_position}" if state.queue_position else "queued"
    if state.status == "started":
        stage = (state.stage or "started").replace("_", " ")
        return stage if state.percent is None or not percent else f"{stage} {state.percent:.0f}%"
    return state.status


def counts(outcomes: Counter[Outcome]) -> str:
    """`2 done, 1 failed`, naming only the outcomes that occurred."""
    return ", ".join(f"{outcomes[outcome]} {outcome}" for outcome in Outcome if outcomes[outcome])


def summary(outcomes: Counter[Outcome]) -> str:
    """`3 inputs: 2 done, 1 failed`."""
    total = sum(outcomes.values())
    return f"{total} input{'s' if total != 1 else ''}: {counts(outcomes) or 'nothing to do'}"


class LineReporter:
    """One line per change of an input's state: its upload, its job's status, queue position
    and stage (not every percent), and how it ended."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._last: dict[int, tuple[object, ...]] = {}
        self._announced: set[int] = set()

    def _say(self, item: Item, text: str) -> None:
        self._stream.write(f"{item.label}: {text}\n")
        self._stream.flush()

    def _on_change(self, item: Item, key: tuple[object, ...], text: str) -> None:
        if self._last.get(id(item)) != key:
            self._last[id(item)] = key
            self._say(item, text)

    def preparing(self, item: Item) -> None:
        """Hashing is quick and says nothing new: no line."""

    def uploading(self, item: Item, sent: int, total: int) -> None:  # noqa: ARG002 - one line
        self._on_change(item, ("uploading",), f"uploading {decimal(total)}")

    def waiting(self, item: Item, message: str, seconds: float) -> None:
        self._say(item, f"waiting {seconds:g} s: {message}")

    def job(self, item: Item, state: JobState, reused: bool) -> None:
        text = describe(state, percent=False)
        if state.status == "started":
            text = f"running: {text}"
        if id(item) not in self._announced:
            self._announced.add(id(item))
            text = f"job {state.job_id} {'submitted earlier' if reused else 'submitted'}, {text}"
        self._on_change(item, (state.status, state.queue_position, state.stage), text)

    def ended(self, item: Item, outcome: Outcome, detail: str) -> None:
        self._say(item, f"{outcome}: {detail}")


class BarReporter:
    """A bar per input in progress (its upload's bytes, then its queue position, then its
    job's stage and percent), above them one bar for the whole batch; an input that is through
    leaves a line above the bars. Use as a context manager."""

    def __init__(self, console: Console, total: int) -> None:
        self._console = console
        self._progress = Progress(
            TextColumn("{task.description}", markup=False),
            BarColumn(bar_width=None),
            TaskProgressColumn(),
            TextColumn("{task.fields[state]}", markup=False),
            console=console,
            expand=True,
        )
        self._outcomes: Counter[Outcome] = Counter()
        self._overall = self._progress.add_task("all inputs", total=total, state="")
        self._tasks: dict[int, TaskID] = {}

    def __enter__(self) -> BarReporter:
        self._progress.start()
        return self

    def __exit__(
        self,
        _type: type[BaseException] | None,
        _value: BaseException | None,
        _traceback: TracebackType | None,
    ) -> None:
        self._progress.stop()

    def _task(self, item: Item) -> TaskID:
        task = self._tasks.get(id(item))
        if task is None:
            label = item.label
            if len(label) > LABEL_WIDTH:
                label = "…" + label[-(LABEL_WIDTH - 1) :]
            task = self._progress.add_task(label.ljust(LABEL_WIDTH), total=100, state="")
            self._tasks[id(item)] = task
        return task

    def preparing(self, item: Item) -> None:
        self._progress.update(self._task(item), completed=0, state="reading")

    def uploading(self, item: Item, sent: int, total: int) -> None:
        self._progress.update(
            self._task(item),
            total=max(total, 1),
            completed=sent,
            state=f"uploading {decimal(sent)} of {decimal(total)}",
        )

    def waiting(self, item: Item, message: str, seconds: float) -> None:
        self._progress.update(self._task(item), state=f"waiting {seconds:g} s: {message}")

    def job(self, item: Item, state: JobState, reused: bool) -> None:
        percent = state.percent if state.status == "started" else 0
        if state.status == "finished":
            percent = 100
        text = describe(state) + (" (submitted earlier)" if reused else "")
        self._progress.update(self._task(item), total=100, completed=percent or 0, state=text)

    def ended(self, item: Item, outcome: Outcome, detail: str) -> None:
        task = self._tasks.pop(id(item), None)
        if task is not None:
            self._progress.remove_task(task)
            self._progress.refresh()  # else the line below is printed above the old bars
        mark, style = MARKS[outcome]
        line = Text.assemble((f"{mark} ", style), item.label, (f"  {outcome}: ", style), detail)
        self._console.print(line, soft_wrap=True)
        self._outcomes[outcome] += 1
        self._progress.update(self._overall, advance=1, state=counts(self._outcomes))
