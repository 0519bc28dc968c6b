"""Report pages for `GET /studies/{id}/report`: built in the API's pool, a bounded number at a time, and kept per
study until one of its trials finishes.

A build reads the study over the API's own connections (one at a time) and spends most of its seconds drawing
with matplotlib, in the request's worker thread, off the event loop. At most `builds` run at once and `waiting`
more queue for a slot; a request beyond those is answered 429 at once, so a burst of report requests can neither
exhaust PostgreSQL nor take every thread from `/healthz` and the other routes.
"""

from __future__ import annotations

import base64
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Hashable
from pathlib import Path

from studies.definition.records import StudyRecord
from studies.store.db import Database

# Pages kept in memory: a few hundred kB each (the PNGs inlined); the least recently served go first.
KEPT_PAGES = 32


class ReportsBusyError(Exception):
    """Every build slot and queue place is taken; the client should retry shortly."""


class ReportPages:
    def __init__(self, *, builds: int, waiting: int) -> None:
        self._slots = threading.BoundedSemaphore(builds)
        self._places = threading.BoundedSemaphore(builds + waiting)
        self._pages: OrderedDict[int, tuple[Hashable, str]] = OrderedDict()
        self._lock = threading.Lock()

    def page(self, db: Database, record: StudyRecord) -> str:
        """The study's report page, built now or kept from a build since which no trial of it has finished."""
        version = _version(record)
        if (page := self._kept(record.id, version)) is not None:
            return page
        if not self._places.acquire(blocking=False):
            raise ReportsBusyError("too many report pages are being built; retry in a few seconds")
        try:
            with self._slots:
                # Built by the request ahead of this one while it waited?
                if (page := self._kept(record.id, version)) is not None:
                    return page
                page = _built_page(db, record)
                with self._lock:
                    self._pages[record.id] = (version, page)
                    while len(self._pages) > KEPT_PAGES:
                        self._pages.popitem(last=False)
                return page
        finally:
            self._places.release()

    def _kept(self, study_id: int, version: Hashable) -> str | None:
        with self._lock:
            kept = self._pages.get(study_id)
            if kept is None or kept[0] != version:
                return None
            self._pages.move_to_end(study_id)
            return kept[1]


def _version(record: StudyRecord) -> Hashable:
    # A page changes only when a trial finishes (COMPLETE, PRUNED or FAIL); the name tells apart a new study that
    # SQLite gave a deleted one's id.
    return record.name, record.counts.complete, record.counts.pruned, record.counts.fail


def _built_page(db: Database, record: StudyRecord) -> str:
    from studies.reports.report import build_report  # matplotlib and torch: the first report pays, not start-up

    # Each build in a folder of its own: two builds of one study never write the same files.
    with tempfile.TemporaryDirectory(prefix="tailtune-report-") as folder:
        files = build_report(db, record.name, Path(folder))
        return _inline_images(files.html)


def _inline_images(html_path: Path) -> str:
    """The report page with its PNGs as data: URIs, so one response carries the whole report."""
    html = html_path.read_text()
    for png in sorted(html_path.parent.glob("*.png")):
        encoded = base64.b64encode(png.read_bytes()).decode()
        html = html.replace(f'src="{png.name}"', f'src="data:image/png;base64,{encoded}"')
    return html
