"""Segment many images into a collection folder: batched, streamed to disk, resumable, shardable.

Every finished image is written in full (its own export, staged rows) and only then committed: one line
appended to this run's commit log. A run that stops midway loses only the images in flight; the next run
into the same folder skips every committed image (matched by file content; the folder's settings must be
this run's) and adds the rest. Under torchrun each process takes every world_size-th image of the run and
rank 0 merges the committed images into the level files, items.jsonl and index.csv (`finish_collection`).
"""
from __future__ import annotations

import csv
import io
import os
import re
import socket
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from ..errors import CastError
from ..export.collection import COLLECTION_DIR, export_stems, write_coco, write_image_files
from ..hierarchy import Hierarchy
from ..segmenter import Segmenter
from . import ann
from .build import present_embeddings, segment_embeddings
from .format import (
    DATA_DIR,
    INDEX_CSV,
    MANIFEST,
    ROW_DTYPE,
    CollectionError,
    CollectionSettings,
    ItemRecord,
    Manifest,
    file_sha256,
    read_commit_log,
    read_manifest,
    save_npy_atomic,
    write_atomic,
)
from .search import LevelMatrix
from .stability import stability_scores
from .tables import segment_table

INDEX_COLUMNS = ("image", "status", "output", "message")


@dataclass
class RunReport:
    """What one run did (on rank 0 under torchrun: every process's share, after the merge)."""

    folder: Path
    inputs: int
    ok: list[ItemRecord] = field(default_factory=list)
    failed: list[ItemRecord] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (name, why): already in the collection

    def summary(self) -> str:
        already = f", {len(self.skipped)} already in the collection" if self.skipped else ""
        return f"exported {len(self.ok)} of {self.inputs - len(self.skipped)} images to {self.folder}{already}"


@dataclass(frozen=True)
class _Task:
    position: int  # in the run's input list
    source: Any
    name: str
    sha256: str
    stem: str = ""
    image_id: int = 0
    recorded_source: str = ""  # the path kept in index.csv and items.jsonl ("" when not recorded)


def check_folder(folder: Path, settings: CollectionSettings) -> Manifest | None:
    """Refuse a folder this run may not write into (another collection's settings, not a collection, damaged);
    returns its manifest, or None for a new or empty folder. Writes nothing."""
    folder = Path(folder)
    if (folder / MANIFEST).is_file():
        manifest = read_manifest(folder)
        differences = settings.differences(manifest.settings)
        if differences:
            raise CollectionError(
                f"{folder} holds a collection made with {manifest.settings.describe()}; this run uses "
                f"{settings.describe()} ({'; '.join(differences)}). A collection never mixes models or settings: "
                "segment into another folder. Nothing was written.")
        return manifest
    if folder.exists() and (not folder.is_dir() or any(not p.name.startswith(".") for p in folder.iterdir())):
        read_manifest(folder)  # says what it is instead (an older export, ...)
    return None


def prepare_folder(folder: Path, settings: CollectionSettings) -> Manifest:
    """Create a collection folder, or check that an existing one was made with `settings` (else refuse)."""
    folder = Path(folder)
    manifest = check_folder(folder, settings)
    if manifest is not None:
        return manifest
    folder.mkdir(parents=True, exist_ok=True)
    manifest = Manifest(settings)
    manifest.write(folder)
    return manifest


def segment_collection(
    segmenter: Segmenter, sources: Sequence[Any], out_dir: str | Path, *, names: Sequence[str] | None = None,
    batch_size: int = 8, stability: bool = False, exports: str = "full", rank: int = 0, world_size: int = 1,
    barrier: Callable[[], None] | None = None, progress: Callable[[int, int, str], None] | None = None,
    record_sources: bool = True,
) -> RunReport:  # fmt: skip
    """Segment `sources` (paths, bytes or arrays) into the collection folder `out_dir`, resuming or appending.

    Under torchrun pass this process's `rank`, `world_size` and a `barrier` (torch.distributed.barrier): each
    process segments its share and rank 0 merges. Returns the run's report; `progress(done, total, name)`
    is called per image of this process's share. `record_sources=False` keeps only the names (e.g. uploads,
    whose server paths mean nothing to anyone)."""
    out = Path(out_dir)
    sync = barrier or (lambda: None)
    settings = CollectionSettings.of(segmenter, stability=stability, exports=exports)
    check_folder(out, settings)  # every process refuses the same folders, before any waits for another
    lock = None
    try:
        if rank == 0:
            manifest = prepare_folder(out, settings)
            lock = _take_lock(out)
            manifest.complete = False  # until this run's images are merged
            manifest.write(out)
        sync()
        committed = list(read_commit_log(out))
        run_id = _next_run(out)
        sync()  # every process has read the log before any writes to it
        names = list(names) if names is not None else [_name_of(s, i) for i, s in enumerate(sources)]
        report = RunReport(out, len(sources))
        tasks, failed_now = _plan(committed, sources, names, report, record_sources)
        log_path = out / DATA_DIR / "runs" / f"run{run_id:04d}.rank{rank}.jsonl"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        mine = tasks[rank::world_size]
        with log_path.open("a", encoding="utf-8") as log:
            if rank == 0:
                for record in failed_now:  # unreadable before segmentation (e.g. permissions)
                    log.write(record.to_json() + "\n")
            results = segmenter.run_many([t.source for t in mine], names=[t.name for t in mine], batch_size=batch_size)
            for done, (local, result) in enumerate(results, 1):
                task = mine[local]
                record = _commit_one(segmenter, task, result, out, settings)
                log.write(record.to_json() + "\n")
                log.flush()  # committed: a later run skips it even if this one is killed now
                if progress is not None:
                    progress(done, len(mine), task.name)
        sync()
        this_run = list(read_commit_log(out, run=run_id))
        if rank == 0:
            finish_collection(out)
    finally:
        if lock is not None:
            lock.unlink(missing_ok=True)
    report.ok = [r for r in this_run if r.status == "ok"]
    report.failed = [r for r in this_run if r.status != "ok"]
    return report


def _commit_one(segmenter: Segmenter, task: _Task, result: Any, out: Path, settings: CollectionSettings) -> ItemRecord:
    """Write one finished image's files and return its commit record (a failure's record says why)."""
    failed = ItemRecord(task.image_id, task.name, "", task.recorded_source, task.sha256, "failed")
    try:
        if isinstance(result, CastError):
            raise result
        hierarchy: Hierarchy = result.hierarchy
        if settings.stability:
            hierarchy = hierarchy.with_stability(stability_scores(segmenter, task.source, hierarchy))
        rows = staged_rows(hierarchy, segment_embeddings(result.output))
        extra = {"source_image": task.recorded_source or task.name, "collection_image_id": task.image_id}
        write_image_files(out, task.stem, task.image_id, hierarchy, rows, full=settings.exports == "full",
                          extra_provenance=extra)
    except (CastError, OSError) as err:  # unreadable image, too few superpixels, disk errors
        return ItemRecord(**{**failed.__dict__, "message": str(err).replace("\n", " ")})
    height, width = hierarchy.shape
    return ItemRecord(task.image_id, task.name, task.stem, task.recorded_source, task.sha256, "ok", "", width,
                      height, tuple(hierarchy.level_name(lv) for lv in range(hierarchy.num_levels)),
                      tuple(len(hierarchy.segment_ids(lv)) for lv in range(hierarchy.num_levels)))


def staged_rows(hierarchy: Hierarchy, embeddings: Sequence[np.ndarray]) -> dict[str, np.ndarray]:
    """One image's segment table and embeddings per level, the rows in the same order (present segments)."""
    rows: dict[str, np.ndarray] = {}
    vectors = present_embeddings(hierarchy, embeddings)
    for level in range(hierarchy.num_levels):
        table = segment_table(hierarchy, level)
        rows[f"table{level}"] = table
        if level < len(vectors):
            ids, emb = vectors[level]
            if not np.array_equal(ids, table["segment"]):
                raise CastError(f"level {level}: embeddings do not cover every present segment")
            rows[f"embeddings{level}"] = emb
    return rows


def _plan(committed: list[ItemRecord], sources: Sequence[Any], names: Sequence[str], report: RunReport,
          record_sources: bool = True) -> tuple[list[_Task], list[ItemRecord]]:
    """This run's tasks (not yet in the collection, each file once) with stems and image ids, the same on every
    process; inputs that could not even be read are failures at once."""
    done = {r.sha256: r for r in committed if r.status == "ok"}
    base = max((r.image_id for r in committed), default=0) + 1
    pending: list[_Task] = []
    failed: list[ItemRecord] = []
    seen: dict[str, str] = {}
    for position, (source, name) in enumerate(zip(sources, names)):
        try:
            sha = file_sha256(source)
        except OSError as err:
            text = _source_text(source) if record_sources else ""
            failed.append(ItemRecord(base + len(sources) + position, name, "", text, "", "failed",
                                     f"cannot be read: {err.strerror or err}"))
            continue
        if sha in done:
            report.skipped.append((name, f"already in the collection as {done[sha].name}"))
        elif sha in seen:
            report.skipped.append((name, f"the same file as {seen[sha]}"))
        else:
            seen[sha] = name
            pending.append(_Task(position, source, name, sha))
    stems = export_stems([t.name for t in pending], taken=[r.stem for r in done.values()])
    tasks = [_Task(t.position, t.source, t.name, t.sha256, stem, base + t.position,
                   _source_text(t.source) if record_sources else "") for t, stem in zip(pending, stems)]
    return tasks, failed


def finish_collection(folder: str | Path) -> Manifest:
    """Merge every committed image into the level files, items.jsonl, index.csv (and COCO for full exports).

    The latest record of each file wins, a success over any failure; images keep their image ids."""
    out = Path(folder)
    manifest = read_manifest(out)
    ok: dict[str, ItemRecord] = {}
    failed: dict[str, ItemRecord] = {}
    for record in read_commit_log(out):
        if record.status == "ok":
            ok.setdefault(record.sha256, record)
        else:
            failed[record.sha256 or record.name] = record
    items = sorted(ok.values(), key=lambda r: r.image_id)
    failures = sorted((r for key, r in failed.items() if key not in ok), key=lambda r: r.image_id)
    data = out / DATA_DIR
    num_levels = max((len(item.segments) for item in items), default=0)
    tables: list[list[np.ndarray]] = [[] for _ in range(num_levels)]
    vectors: list[list[np.ndarray]] = [[] for _ in range(num_levels)]
    for index, item in enumerate(items):  # each image's staged rows, read once
        with np.load(data / "images" / f"{item.stem}.npz") as arrays:
            for level in range(len(item.segments)):
                table = arrays[f"table{level}"]
                table["image"] = index
                tables[level].append(table)
                if f"embeddings{level}" in arrays.files:
                    vectors[level].append(arrays[f"embeddings{level}"])
    dim = 0
    for level in range(num_levels):
        table = np.concatenate(tables[level])
        rows = np.zeros(len(table), ROW_DTYPE)
        for name in table.dtype.names:
            rows[name] = table[name]
        if vectors[level] and sum(len(v) for v in vectors[level]) == len(rows):
            matrix = LevelMatrix.from_rows(np.concatenate(vectors[level]), rows["image"], rows["segment"], len(items))
            rows["norm"], rows["centred_norm"] = matrix.norms, matrix.centred_norms
            save_npy_atomic(data / f"level{level}.embeddings.npy", matrix.vectors)
            save_npy_atomic(data / f"level{level}.means.npy", matrix.means)
            dim = matrix.vectors.shape[1]
            if ann.wanted(matrix.vectors):  # very large levels: approximate search too
                ann.save_index(ann.build_index(matrix.vectors, matrix.norms), data / f"level{level}.faiss")
        save_npy_atomic(data / f"level{level}.segments.npy", rows)
        tables[level] = vectors[level] = []
    if manifest.settings.exports == "full" and items:
        write_coco(out, items, items[0].level_names)
    write_atomic(data / "items.jsonl", "".join(item.to_json() + "\n" for item in items))
    write_atomic(out / INDEX_CSV, _index_csv(sorted(items + failures, key=lambda r: r.image_id)))
    manifest.complete, manifest.images, manifest.failed = True, len(items), len(failures)
    manifest.level_names = list(items[0].level_names) if items else []
    manifest.embedding_dim = dim
    manifest.updated = datetime.now(timezone.utc).isoformat(timespec="seconds")
    manifest.write(out)
    return manifest


def _take_lock(out: Path) -> Path:
    """One writing run per folder at a time: collection/.writing holds the pid of the run (rank 0) that writes;
    a lock whose process is gone (a killed run) is taken over."""
    lock = out / DATA_DIR / ".writing"
    lock.parent.mkdir(parents=True, exist_ok=True)
    for _ in range(2):
        try:
            with open(lock, "x") as handle:
                handle.write(f"{os.getpid()} {socket.gethostname()}\n")
            return lock
        except FileExistsError:
            pid, _, host = lock.read_text().partition(" ")
            if host.strip() == socket.gethostname() and pid.isdigit() and not _alive(int(pid)):
                lock.unlink(missing_ok=True)
                continue
            raise CollectionError(f"another `cast segment` (process {pid} on {host.strip() or 'unknown'}) is writing "
                                  f"into {out}: wait for it to finish, or stop it (a killed run's lock is taken over)")
    raise CollectionError(f"cannot lock {out} for writing")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _index_csv(records: Sequence[ItemRecord]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(INDEX_COLUMNS)
    for r in records:
        writer.writerow([r.source or r.name, r.status, r.stem, r.message])
    return buffer.getvalue()


def _next_run(out: Path) -> int:
    runs = [int(m.group(1)) for p in (out / DATA_DIR / "runs").glob("run*.rank*.jsonl")
            if (m := re.match(r"run(\d+)\.rank", p.name))]
    return max(runs, default=0) + 1


def _source_text(source: Any) -> str:
    return str(source) if isinstance(source, (str, Path)) else ""


def _name_of(source: Any, index: int) -> str:
    return Path(source).name if isinstance(source, (str, Path)) else f"image_{index:04d}"


__all__ = ["COLLECTION_DIR", "RunReport", "finish_collection", "prepare_folder", "segment_collection"]
