"""A reduced chaos campaign (tests.chaos): 30 jobs through four kinds of fault, nothing lost
(with API keys off, and on with a key per client; and on Redis behind Sentinel, where the Redis
fault is a failover)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.chaos import FAULT_KINDS, SENTINEL_FAULT_KINDS, run_campaign

pytestmark = pytest.mark.integration


def test_thirty_jobs_through_four_faults_lose_nothing(tmp_path: Path, keyed: bool) -> None:
    report = run_campaign(
        tmp_path,
        jobs=30,
        workers=2,
        faults=len(FAULT_KINDS),
        fast_recovery=True,
        settle_timeout_s=120,
        keyed=keyed,
    )
    assert report.faults_injected == len(FAULT_KINDS)
    assert report.faults_survived == report.faults_injected, report.line()
    assert len(report.accepted) == 30, report.line()
    assert report.lost == [], report.line()
    assert report.stuck == [], report.line()
    assert report.run_twice == [], report.line()
    assert report.http_5xx == 0, report.line()
    assert report.errors == []


def test_thirty_jobs_through_a_failover_and_three_other_faults_lose_nothing(
    tmp_path: Path,
) -> None:
    """The same campaign on Redis behind Sentinel (keys on): its Redis fault is the master's
    SIGKILL, a replica's promotion and the old master's return as a replica."""
    report = run_campaign(
        tmp_path,
        jobs=30,
        workers=2,
        faults=len(SENTINEL_FAULT_KINDS),
        fast_recovery=True,
        settle_timeout_s=120,
        sentinel=True,
    )
    assert report.faults_injected == len(SENTINEL_FAULT_KINDS)
    assert report.faults_survived == report.faults_injected, report.line()
    assert len(report.accepted) == 30, report.line()
    assert report.lost == [], report.line()
    assert report.stuck == [], report.line()
    assert report.run_twice == [], report.line()
    assert report.http_5xx == 0, report.line()
    assert report.errors == []
