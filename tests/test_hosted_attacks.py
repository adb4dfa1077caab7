"""Playing the attacker against a running hosted app (issue 19): real HTTP requests to 127.0.0.1, bounded in time.

One app in hosted mode as on a Space (SPACE_ID set, so the first X-Forwarded-For hop is the visitor's
address); each visitor is a fresh gradio_client session with its own address header. Every test measures
what the attack cost the host — the app process's peak memory (VmHWM, reset through /proc/PID/clear_refs),
the files and bytes written under the app's scratch, upload and jobs folders — and prints it as a FIGURE
line (`pytest -s`), so the same file measured the code before the fix.
"""
from __future__ import annotations

import io
import json
import os
import time
import zipfile
from pathlib import Path

import pytest
from app_server import running_app_process
from PIL import Image
from skimage import data

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

JOB_STEPS = 2


def figure(name: str, value: object) -> None:
    """Print one measured figure (and keep it in $CAST_ATTACK_FIGURES, a JSON-lines file, when set)."""
    print(f"FIGURE {name}: {value}")
    if os.environ.get("CAST_ATTACK_FIGURES"):
        with open(os.environ["CAST_ATTACK_FIGURES"], "a") as out:
            out.write(json.dumps({"name": name, "value": value}) + "\n")


def disk_usage(*roots: Path) -> tuple[int, int]:
    """(files, bytes) under the roots."""
    files = size = 0
    for root in roots:
        for folder, _, names in os.walk(root):
            for name in names:
                try:
                    size += os.lstat(os.path.join(folder, name)).st_size
                    files += 1
                except OSError:
                    continue
    return files, size


def rss_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


@pytest.fixture(scope="module")
def hosted(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("attacked")
    folders = {name: root / name for name in ("jobs", "scratch", "gradio", "checkpoints")}
    env = {"CAST_HOSTED": "1", "SPACE_ID": "cast-explorer/attack-test", "CAST_JOBS_DIR": str(folders["jobs"]),
           "CAST_SCRATCH_DIR": str(folders["scratch"]), "GRADIO_TEMP_DIR": str(folders["gradio"]),
           "CAST_CHECKPOINTS_DIR": str(folders["checkpoints"]), "CAST_MAX_JOBS_PER_ADDRESS": "1",
           "CAST_RESULTS_DISK_GB": "0.45", "CAST_MAX_RESULTS_PER_ADDRESS": "2", "CAST_MAX_JOB_STEPS": "300",
           "CAST_JOB_NICE": "0",  # jobs compete fairly with whatever else this machine runs
           "CAST_SESSION_MEMORY_GB": "0.02"}  # room for a few photos' results, all visitors together
    with running_app_process(root / "app.log", extra_env=env) as (url, proc):
        yield {"url": url, "pid": proc.pid, "root": root, **folders}


def visitor(hosted: dict, address: str, tmp_path: Path):
    """A fresh session from `address` (as a Space's proxy reports it: the visitor first, the proxy after)."""
    from gradio_client import Client

    return Client(hosted["url"], verbose=False, headers={"X-Forwarded-For": f"{address}, 10.255.0.1"},
                  download_files=str(tmp_path / f"downloads-{address}-{time.monotonic_ns()}"))


def photos_zip(path: Path, padding: int = 0, empty_entries: int = 0) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        for name in ("astronaut", "chelsea", "coffee", "rocket")[: 2 if padding or empty_entries else 4]:
            buffer = io.BytesIO()
            Image.fromarray(getattr(data, name)()).save(buffer, format="JPEG")
            archive.writestr(f"{name}.jpg", buffer.getvalue())
        if padding:
            with archive.open("padding.bin", "w", force_zip64=True) as member:
                block = bytes(1 << 20)
                for _ in range(padding >> 20):
                    member.write(block)
        for i in range(empty_entries):
            archive.writestr(f"notes/{i:06d}.txt", b"")
    return path


def start_job(client, zip_path: Path, *, token: str | None = None, steps: int = JOB_STEPS, name: str = "mine"):
    from gradio_client import handle_file

    args = ["moco", "", handle_file(str(zip_path)), "default", steps, 2, name]
    return client.predict(*args, *([token] if token is not None else []), api_name="/start_job")


def wait_until_finished(client, job_id: str, timeout: float = 600, token: str | None = None) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        jobs = {j["id"]: j for j in client.predict(*([token] if token else []), api_name="/jobs")}
        if job_id in jobs and jobs[job_id]["state"] not in ("queued", "running"):
            return jobs[job_id]
        assert time.monotonic() < deadline, f"job {job_id} still {jobs.get(job_id)} after {timeout:.0f} s"
        time.sleep(0.5)


def refused(message: object) -> bool:
    return isinstance(message, str) and message.startswith("⚠️")


# ------------------------------------------------------------------------------------------------ memory
def test_mask_bomb_is_refused_without_decoding(hosted: dict, tmp_path: Path) -> None:
    """A 9990 x 9990 single-colour RGB PNG (~0.3 MB, under the upload cap) sent as the ground truth of a photo."""
    from gradio_client import handle_file

    photo, bomb = tmp_path / "photo.png", tmp_path / "mask.png"
    Image.fromarray(data.chelsea()).save(photo)
    Image.new("RGB", (9990, 9990), (128, 0, 0)).save(bomb, optimize=True)  # one VOC colour
    client = visitor(hosted, "10.0.0.1", tmp_path)
    client.predict(handle_file(str(photo)), api_name="/segment")
    pid = hosted["pid"]
    before = rss_kb(pid, "VmRSS")
    Path(f"/proc/{pid}/clear_refs").write_text("5")  # the peak (VmHWM) starts again from the current RSS
    started = time.monotonic()
    scores, notice = client.predict(handle_file(str(bomb)), api_name="/score_ground_truth")
    seconds = time.monotonic() - started
    growth_mb = (rss_kb(pid, "VmHWM") - before) / 1024
    figure("mask bomb: file size (kB)", round(bomb.stat().st_size / 1024))
    figure("mask bomb: app peak memory growth (MB)", round(growth_mb))
    figure("mask bomb: request seconds", round(seconds, 1))
    assert refused(notice) and "9990x9990" in notice and "451x300" in notice, notice
    assert growth_mb < 500


def test_results_dropped_for_other_visitors_are_noticed(hosted: dict, tmp_path: Path) -> None:
    """One memory budget for all sessions: new visitors' results push out the least recently used, whose
    visitor is told so at the next click (instead of a blank, or the app growing without bound)."""
    from gradio_client import handle_file

    photo = tmp_path / "photo.png"
    Image.fromarray(data.astronaut()).save(photo)
    first = visitor(hosted, "10.0.7.1", tmp_path)
    first.predict(handle_file(str(photo)), api_name="/segment")
    assert not refused(first.predict(2, "fill", 0.6, api_name="/set_view")[-1])
    others = [visitor(hosted, f"10.0.7.{i}", tmp_path) for i in range(2, 6)]
    for other in others:
        other.predict(handle_file(str(photo)), api_name="/segment")
    notice = first.predict(3, "fill", 0.6, api_name="/set_view")[-1]
    figure("first visitor after 4 others filled the memory budget", notice)
    assert refused(notice) and "removed from memory" in notice, notice
    assert not refused(others[-1].predict(3, "fill", 0.6, api_name="/set_view")[-1])  # the most recent stay


# -------------------------------------------------------------------------------------------------- disk
@pytest.mark.parametrize("kind", ["padded", "many-entries"])
def test_hostile_zips_are_refused_before_extraction(hosted: dict, tmp_path: Path, kind: str) -> None:
    """2 photos + 900 MB of zeros (~1 MB), or 2 photos + 150,000 empty .txt files (~15 MB): to /collection and
    to /start_job, each from its own fresh session and address."""
    from gradio_client import handle_file

    archive = (photos_zip(tmp_path / "padded.zip", padding=900 << 20) if kind == "padded"
               else photos_zip(tmp_path / "entries.zip", empty_entries=150_000))
    folders = (hosted["scratch"], hosted["gradio"], hosted["jobs"])
    files_before, bytes_before = disk_usage(*folders)

    def growth(step: str) -> tuple[float, int]:
        files, size = disk_usage(*folders)
        grown = (round((size - bytes_before) / 1e6, 1), files - files_before)
        figure(f"{kind} ZIP: scratch growth after {step} (MB, files)", grown)
        return grown

    figure(f"{kind} ZIP: upload size (MB)", round(archive.stat().st_size / 1e6, 1))
    collection = visitor(hosted, f"10.0.1.{1 if kind == 'padded' else 2}", tmp_path)
    answer = answer_of(lambda: collection.predict([handle_file(str(archive))], api_name="/collection")[-1])
    figure(f"{kind} ZIP: /collection answer", answer)
    after_collection = growth("/collection")
    job_client = visitor(hosted, f"10.0.2.{1 if kind == 'padded' else 2}", tmp_path)
    answer_job = answer_of(lambda: start_job(job_client, archive))
    job_id, message = (None, answer_job) if isinstance(answer_job, str) else answer_job
    figure(f"{kind} ZIP: /start_job answer", (job_id, message))
    if job_id and not refused(message):  # the code before the fix queued it: let the worker do what it does
        figure(f"{kind} ZIP: job", answer_of(lambda: wait_until_finished(job_client, job_id, timeout=400)))
    after_job = growth("/start_job")
    assert refused(answer), answer
    assert refused(message), message
    for grown_mb, grown_files in (after_collection, after_job):
        assert grown_mb < 50 and grown_files < 100


def answer_of(request) -> object:
    """What a request answered, or the error it raised (the code before the fix failed some with errors)."""
    try:
        return request()
    except Exception as err:  # noqa: BLE001 - reported as the answer
        return f"error: {type(err).__name__}: {str(err)[:200]}"


# ------------------------------------------------------------------------------------------- identities
def test_a_forged_token_is_refused(hosted: dict, tmp_path: Path) -> None:
    photos = photos_zip(tmp_path / "photos.zip")
    for token in ("forged-token", "0123456789abcdef0123456789abcdef", "0123456789abcdef.0123456789abcdef"):
        client = visitor(hosted, "10.0.3.1", tmp_path)
        job_id, message = start_job(client, photos, token=token, steps=300)
        figure(f"forged token {token[:12]}...: /start_job answer", message)
        if not refused(message):  # before the fix: accepted under the claimed identity
            client.predict(job_id, token, api_name="/cancel_job")
            wait_until_finished(client, job_id, token=token)
        assert refused(message) and "token" in message, message
        listing = client.submit(token, api_name="/jobs")
        with pytest.raises(Exception, match="token"):
            listing.result()


def test_a_second_job_from_a_fresh_session_of_the_same_address_is_refused(hosted: dict, tmp_path: Path) -> None:
    photos = photos_zip(tmp_path / "photos.zip")
    first = visitor(hosted, "10.0.4.1", tmp_path)
    first_id, first_message = start_job(first, photos, steps=300)
    assert not refused(first_message), first_message
    second = visitor(hosted, "10.0.4.1", tmp_path)  # a fresh session: a new client, the same address
    second_id, second_message = start_job(second, photos, steps=300)
    figure("second job, fresh session, same address: /start_job answer", second_message)
    other = visitor(hosted, "10.0.4.2", tmp_path)  # another address still gets its turn
    other_id, other_message = start_job(other, photos, steps=300)
    for client, job_id, message in ((first, first_id, first_message), (second, second_id, second_message),
                                    (other, other_id, other_message)):
        if not refused(message):
            client.predict(job_id, api_name="/cancel_job")
            wait_until_finished(client, job_id)
    assert refused(second_message) and "address" in second_message, second_message
    assert not refused(other_message), other_message


# ------------------------------------------------------------------------------------------ others' work
def test_a_finished_model_survives_another_visitors_burst_of_jobs(hosted: dict, tmp_path: Path) -> None:
    photos = photos_zip(tmp_path / "photos.zip")
    owner = visitor(hosted, "10.0.5.1", tmp_path)
    job_id, message = start_job(owner, photos, name="keep-me")
    assert not refused(message), message
    done = wait_until_finished(owner, job_id)
    assert done["state"] == "done", done
    folder = hosted["jobs"] / job_id
    left = sorted(p.name for p in folder.rglob("*") if p.is_file() and p.name.endswith(".pt"))
    figure("finished job: resume files left behind", left)
    burst = 0
    for i in range(3):  # the attacker: one job after another, a fresh session each time, from one address
        attacker = visitor(hosted, "10.0.6.1", tmp_path)
        other_id, answer = start_job(attacker, photos, name=f"burst-{i}")
        if refused(answer):
            figure(f"burst job {i}: refused", answer)
            continue
        wait_until_finished(attacker, other_id)
        burst += 1
    figure("burst jobs run", burst)
    burst_left = sum(1 for p in hosted["jobs"].iterdir() if (p / "job.json").is_file()
                     and json.loads((p / "job.json").read_text()).get("address") == "10.0.6.1")
    figure("burst jobs' folders left (the attacker's own quota: 2)", burst_left)
    mine = {j["id"]: j for j in owner.predict(api_name="/jobs")}
    survived = job_id in mine and mine[job_id]["state"] == "done" and folder.is_dir()
    figure("owner's finished model survives the burst", survived)
    assert burst >= 2
    assert survived and any(p.suffix == ".safetensors" for p in folder.rglob("*")), mine
    assert left == [], left
    assert burst_left <= 2
