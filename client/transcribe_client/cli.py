"""`transcribe`: submit files and URLs in batches, follow, list, cancel and download jobs.

Exit status: 0 when everything asked for is done, 1 when something failed (a job, the server
unreachable, an error answer), 2 for a command line that cannot be carried out, 130 when
interrupted (rerun the same command to resume).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Awaitable, Callable, Mapping, Sequence
from importlib.metadata import version
from pathlib import Path

from rich.console import Console
from rich.table import Table

from transcribe_client.batch import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    Batch,
    Fatal,
    Outcome,
    Reporter,
    Request,
    write_atomically,
)
from transcribe_client.display import BarReporter, LineReporter, describe, summary
from transcribe_client.inputs import FORMATS, UsageError, find_sources, plan
from transcribe_client.service import DEFAULT_SERVER, JobState, Service, ServiceError, Unreachable

EXIT_INTERRUPTED = 130
"""What a shell reports for a command ended by Ctrl-C."""
SERVER_VARIABLE = "TRANSCRIBE_URL"
API_KEY_VARIABLE = "TRANSCRIBE_API_KEY"
FIELDS_WITH_FLAGS = frozenset({"engine", "model", "language", "file", "url"})
"""Fields that have an option of their own, or that the client fills itself: not for --option."""
DEFAULT_FORMAT = "txt"
DEFAULT_LANES = 4

Command = Callable[[argparse.Namespace, Service], Awaitable[int]]


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def _option(text: str) -> tuple[str, str]:
    name, equals, value = text.partition("=")
    name = name.strip()
    if not equals or not name:
        raise argparse.ArgumentTypeError(f"{text!r} is not KEY=VALUE")
    if name in FIELDS_WITH_FLAGS:
        raise argparse.ArgumentTypeError(f"{name} is not an --option: use --{name}")
    return name, value


def _formats(values: Sequence[str] | None) -> tuple[str, ...]:
    """`--format srt --format vtt` and `--format srt,vtt` alike, each once, in order."""
    chosen: list[str] = []
    for value in values or [DEFAULT_FORMAT]:
        for name in value.split(","):
            name = name.strip().lower()
            if name not in FORMATS:
                raise UsageError(f"unknown format {name!r}; choose from {', '.join(FORMATS)}")
            if name not in chosen:
                chosen.append(name)
    return tuple(chosen)


def build_parser() -> argparse.ArgumentParser:
    """The command line: `transcribe [--server URL] [--api-key KEY] COMMAND ...`."""
    connection = argparse.ArgumentParser(add_help=False)
    connection.add_argument(
        "--server",
        default=argparse.SUPPRESS,
        metavar="URL",
        help=f"the service's address (${SERVER_VARIABLE}; {DEFAULT_SERVER} when neither is set)",
    )
    connection.add_argument(
        "--api-key",
        default=argparse.SUPPRESS,
        metavar="KEY",
        help=f"sent as `Authorization: Bearer KEY` (${API_KEY_VARIABLE})",
    )
    parser = argparse.ArgumentParser(
        prog="transcribe",
        description="Command-line client of the transcription service.",
        epilog=(
            "Exit status: 0 all done, 1 something failed, 2 usage error, 130 interrupted "
            "(rerun the same command to resume)."
        ),
        parents=[connection],
    )
    parser.add_argument("--version", action="version", version=version("transcribe-client"))
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    submit = commands.add_parser(
        "submit",
        parents=[connection],
        help="transcribe files, folders, globs and URLs; write the transcripts",
        description=(
            "Upload each file (folders are searched for audio and video), follow its job and "
            "write <name>.<format> next to it or under --out. A rerun skips inputs whose "
            "outputs exist and reuses the jobs an interrupted run had submitted."
        ),
    )
    submit.add_argument("inputs", nargs="+", metavar="FILE_OR_URL")
    submit.add_argument("--engine", default="whisperx", help="whisperx (default) or timestamped")
    submit.add_argument("--model", help="model name, e.g. tiny.en; the server's default if unset")
    submit.add_argument("--language", help="language code, e.g. en; detected if unset")
    submit.add_argument(
        "--option",
        action="append",
        type=_option,
        default=[],
        metavar="KEY=VALUE",
        help="another field of the request: task, vad, word_timestamps, beam_size, hotwords, "
        "initial_prompt, temperature (repeatable)",
    )
    submit.add_argument(
        "--format",
        action="append",
        metavar="FORMAT",
        help=f"{', '.join(FORMATS)}; repeat or separate with commas ({DEFAULT_FORMAT} if unset)",
    )
    submit.add_argument("--out", type=Path, metavar="DIR", help="write the transcripts here")
    submit.add_argument(
        "--wait",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="follow the jobs and write the outputs (default); --no-wait only submits",
    )
    submit.add_argument(
        "--jobs",
        type=_positive,
        default=DEFAULT_LANES,
        metavar="N",
        help=f"inputs in progress at once (default {DEFAULT_LANES})",
    )

    status = commands.add_parser("status", parents=[connection], help="a job's state")
    status.add_argument("job_id", metavar="JOB_ID")
    status.add_argument("--json", action="store_true", help="the server's status JSON")

    jobs = commands.add_parser("jobs", parents=[connection], help="your jobs, newest first")
    jobs.add_argument("--status", help="only jobs in this state (queued, started, finished, …)")
    jobs.add_argument("--limit", type=_positive, default=20, metavar="N", help="at most N (20)")
    jobs.add_argument("--json", action="store_true", help="the server's job records as JSON")

    cancel = commands.add_parser(
        "cancel", parents=[connection], help="cancel a queued or running job"
    )
    cancel.add_argument("job_id", metavar="JOB_ID")

    result = commands.add_parser("result", parents=[connection], help="download a transcript")
    result.add_argument("job_id", metavar="JOB_ID")
    result.add_argument("--format", default=DEFAULT_FORMAT, choices=FORMATS)
    result.add_argument("--out", type=Path, metavar="FILE", help="write here instead of stdout")
    return parser


def _error(message: str) -> None:
    sys.stderr.write(f"transcribe: {message}\n")
    sys.stderr.flush()


async def submit_command(args: argparse.Namespace, service: Service) -> int:
    items = plan(find_sources(args.inputs), _formats(args.format), args.out)
    request = Request(
        engine=args.engine, model=args.model, language=args.language, options=tuple(args.option)
    )
    if any(item.missing_outputs() for item in items):
        await service.check_reachable()
    console = Console()

    def batch(reporter: Reporter) -> Batch:
        return Batch(service, request, reporter, wait=args.wait, lanes=args.jobs)

    if console.is_terminal:
        with BarReporter(console, len(items)) as bars:
            outcomes = await batch(bars).run(items)
    else:
        outcomes = await batch(LineReporter(sys.stdout)).run(items)
    sys.stdout.write(summary(outcomes) + "\n")
    return EXIT_FAILED if outcomes[Outcome.FAILED] else EXIT_OK


async def status_command(args: argparse.Namespace, service: Service) -> int:
    body = await service.status_body(args.job_id)
    if args.json:
        sys.stdout.write(json.dumps(body, indent=2) + "\n")
        return EXIT_OK
    state = JobState.of(body)
    lines = [f"job {state.job_id}: {describe(state)}"]
    for label, key in (("engine", "engine"), ("model", "model"), ("language", "language")):
        if body.get(key):
            lines.append(f"  {label}: {body[key]}")
    for label, key in (("created", "created_at"), ("started", "started_at"), ("ended", "ended_at")):
        if body.get(key):
            lines.append(f"  {label}: {body[key]}")
    if state.error:
        lines.append(f"  error: {state.error}")
    sys.stdout.write("\n".join(lines) + "\n")
    return EXIT_OK


async def jobs_command(args: argparse.Namespace, service: Service) -> int:
    jobs = await service.list_jobs(args.status, args.limit)
    if args.json:
        sys.stdout.write(json.dumps(jobs, indent=2) + "\n")
        return EXIT_OK
    rows = [
        (
            str(job["job_id"]),
            describe(JobState.of(job)),
            str(job.get("engine") or ""),
            str(job.get("model") or ""),
            str(job.get("created_at") or "")[:19].replace("T", " "),
        )
        for job in jobs
    ]
    console = Console()
    if not console.is_terminal:  # for scripts: tab-separated, no header
        sys.stdout.write("".join("\t".join(row) + "\n" for row in rows))
        return EXIT_OK
    table = Table(box=None, pad_edge=False)
    table.add_column("job", no_wrap=True)
    for name in ("status", "engine", "model", "created"):
        table.add_column(name)
    for row in rows:
        table.add_row(*row)
    console.print(table)
    return EXIT_OK


async def cancel_command(args: argparse.Namespace, service: Service) -> int:
    state = await service.status(args.job_id)
    if state.ended:
        _error(f"job {state.job_id} has already ended ({state.status}): nothing to cancel")
        return EXIT_FAILED
    code, body = await service.cancel(args.job_id)
    if code == 204:
        message = "had ended meanwhile, and was erased"
    elif body is not None and code == 202:
        message = f"is stopping ({describe(JobState.of(body))}): it stops at its next progress step"
    else:
        message = "canceled"
    sys.stdout.write(f"job {args.job_id} {message}\n")
    return EXIT_OK


async def result_command(args: argparse.Namespace, service: Service) -> int:
    content = await service.result(args.job_id, args.format)
    if args.out is None:
        sys.stdout.buffer.write(content)
        sys.stdout.flush()
    else:
        write_atomically(args.out, content)
    return EXIT_OK


COMMANDS: Mapping[str, Command] = {
    "submit": submit_command,
    "status": status_command,
    "jobs": jobs_command,
    "cancel": cancel_command,
    "result": result_command,
}


def connection_of(args: argparse.Namespace, environ: Mapping[str, str]) -> tuple[str, str | None]:
    """The server and API key: the options, else the environment, else the defaults."""
    server = getattr(args, "server", None) or environ.get(SERVER_VARIABLE) or DEFAULT_SERVER
    api_key = getattr(args, "api_key", None) or environ.get(API_KEY_VARIABLE) or None
    return server, api_key


async def _run(command: Command, args: argparse.Namespace, server: str, key: str | None) -> int:
    async with Service(server, key) as service:
        if command is not submit_command:  # which asks only when it has something to send
            await service.check_reachable()
        return await command(args, service)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `transcribe` console script; returns the exit status."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_request:  # --help and --version (0), usage errors (2)
        return exit_request.code if isinstance(exit_request.code, int) else EXIT_USAGE
    server, api_key = connection_of(args, os.environ)
    try:
        return asyncio.run(_run(COMMANDS[args.command], args, server, api_key))
    except KeyboardInterrupt:
        resume = (
            "; the jobs already submitted go on on the server: run the same command again to "
            "resume without transcribing anything twice"
        )
        _error("interrupted" + (resume if args.command == "submit" else ""))
        return EXIT_INTERRUPTED
    except UsageError as error:
        _error(str(error))
        return EXIT_USAGE
    except Fatal as error:
        _error(str(error))
        return error.exit_code
    except (ServiceError, Unreachable) as error:
        _error(str(error))
        return EXIT_FAILED
