"""Download cost: ssemble_async's downloader against aria2c, curl and a plain aiohttp loop.

Generated MP4 files are served from 127.0.0.1 by a sendfile server in its own process
(nginx when installed, else aiohttp's ``FileResponse``). Each client downloads the same set
at concurrency 8 in a fresh process, spawned by a bare launcher whose ``os.wait4`` gives
the child's user and system CPU and its peak RSS. One table per workload and target (tmpfs,
so that the client's own cost shows, and a disk file system, where ``fsync`` costs what
it costs). ssemble_async runs through ``download_many`` at its defaults (16 clips a
request) with everything it promises: fsync, verification, a sidecar per clip, a manifest
per request. The others write plain files.

Then the per-clip cost of one request of 100, 1,000 and 10,000 clips (planning, manifest
and report work, with and without tiny transfers), and a summary of issue 11's targets.
A client that is not installed (aria2c, curl) is left out; so is nginx (the fallback
server is slower, so read the ratios). ``--profile`` also runs the SDK on the small-clip
workload under cProfile and writes the summary to ``benchmarks/profiles/``, and, when
py-spy is installed, a flame graph of all its threads there too.

    python benchmarks/download.py [--sets big,small] [--targets shm,disk] [--repeat N]
                                  [--quick] [--tune] [--no-curve] [--profile]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

KiB, MiB, GiB = 1 << 10, 1 << 20, 1 << 30
CONCURRENCY = 8
CLIPS_PER_REQUEST = 16  # a realistic request
OURS = "ssemble_async (defaults)"
LOOP = "aiohttp loop, 1 MiB chunks"
BARE = "aiohttp bare (write on loop)"
TUNE_CHUNKS = (256 * KiB, 4 * MiB)
SETS = {"big": (32, 32 * MiB), "small": (512, 256 * KiB)}
QUICK_SETS = {"big": (8, 32 * MiB), "small": (128, 256 * KiB)}
#: the SDK alone on growing files, for its peak RSS (the issue: flat from 32 MiB to 1 GiB)
RSS_SETS = {"huge": (8, 128 * MiB), "giant": (2, GiB)}
CURVE = (100, 1_000, 10_000)
QUICK_CURVE = (100, 1_000)
SHM = Path("/dev/shm")
SOURCE = (SHM if SHM.is_dir() else Path(tempfile.gettempdir())) / "ssemble-bench-src"
PROFILES = Path(__file__).parent / "profiles"


@dataclass(frozen=True)
class FileSet:
    name: str
    count: int
    size: int

    @property
    def title(self) -> str:
        unit = f"{self.size // GiB} GiB" if self.size >= GiB else None
        unit = unit or (
            f"{self.size // MiB} MiB" if self.size >= MiB else f"{self.size // KiB} KiB"
        )
        return f"{self.count} x {unit}"

    @property
    def gib(self) -> float:
        return self.count * self.size / GiB

    def names(self) -> list[str]:
        return [f"{i:04d}.mp4" for i in range(self.count)]


@dataclass(frozen=True)
class Contender:
    label: str
    command: Callable[[Path, Path], list[str]] | None  # (work dir, dest) -> argv; None: absent


@dataclass(frozen=True)
class Sample:
    seconds: float  # the transfer: Python clients time themselves after their imports
    process: float  # spawn to exit
    user: float  # CPU without the interpreter's start-up and imports
    system: float
    rss_mib: float
    error: str | None = None
    floor_mib: float | None = None  # Python clients: peak RSS before the run (imports done)
    loop_cpu: float | None = None  # Python clients: CPU of the event loop's thread


# -- children: each client runs in its own process ------------------------------------------


def name(url: str) -> str:
    return url.rpartition("/")[2]


async def run_ssemble(urls: list[str], dest: Path, chunk: int) -> str | None:
    """The SDK at its defaults (``chunk``: 0, else the chunk size being tuned),
    ``CLIPS_PER_REQUEST`` clips a request."""
    from ssemble_async import Client, ClipState  # noqa: PLC0415 - the plain loop never loads it

    requests = synthetic_requests(urls, CLIPS_PER_REQUEST)
    async with Client(api_key="sk_ssemble_bench", base_url="http://127.0.0.1:9/api/v1") as client:
        if chunk:
            report = await client.download_many(requests, dest, chunk_size=chunk)
        else:
            report = await client.download_many(requests, dest)
    done = len(report.by_state(ClipState.DOWNLOADED))
    return None if report.ok and done == len(urls) else f"{done}/{len(urls)} downloaded"


def synthetic_requests(urls: list[str], per_request: int, *, error: bool = False) -> list[Any]:
    """Completed requests of ``per_request`` clips each, one clip per URL (``error``: every
    clip flagged as failed on the server, so nothing is fetched)."""
    from ssemble_async import RequestState, Short, ShortsRequest  # noqa: PLC0415

    return [
        ShortsRequest(
            request_id=f"{0xBE7C << 64 | start:024x}",
            status=RequestState.COMPLETED,
            status_raw="completed",
            shorts=tuple(
                Short(
                    id=f"{i:024x}",
                    video_url=None if error else url,
                    error=error,
                    title=f"clip {i}",
                    viral_score=float(i % 100),
                )
                for i, url in enumerate(urls[start : start + per_request], start)
            ),
        )
        for start in range(0, len(urls), per_request)
    ]


async def run_aiohttp(urls: list[str], dest: Path, chunk: int) -> str | None:
    """The plain loop: a semaphore, ``iter_chunked``, one aiofiles write per chunk."""
    import aiofiles  # noqa: PLC0415
    import aiohttp  # noqa: PLC0415

    limit = asyncio.Semaphore(CONCURRENCY)

    async def one(session: aiohttp.ClientSession, url: str) -> None:
        async with limit, session.get(url) as response:
            response.raise_for_status()
            async with aiofiles.open(dest / name(url), "wb") as file:
                async for data in response.content.iter_chunked(chunk):
                    await file.write(data)

    async with aiohttp.ClientSession(read_bufsize=max(chunk, 64 * KiB)) as session:
        await asyncio.gather(*(one(session, url) for url in urls))
    return None


async def run_bare(urls: list[str], dest: Path, chunk: int) -> str | None:
    """The least any aiohttp client can do: each received chunk written on the event loop
    (no thread, no batching, no verification); ``chunk`` is aiohttp's read buffer."""
    import aiohttp  # noqa: PLC0415

    limit = asyncio.Semaphore(CONCURRENCY)

    async def one(session: aiohttp.ClientSession, url: str) -> None:
        async with limit, session.get(url) as response:
            response.raise_for_status()
            descriptor = os.open(dest / name(url), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            try:
                async for data, _ in response.content.iter_chunks():
                    os.write(descriptor, data)  # the floor: on the loop, no thread trip
            finally:
                os.close(descriptor)

    async with aiohttp.ClientSession(read_bufsize=chunk) as session:
        await asyncio.gather(*(one(session, url) for url in urls))
    return None


def preload(kind: str) -> None:
    """Import what the client's run imports, so that the clock and the CPU count start
    after them (start-up is what ``benchmarks/startup.py`` measures): the SDK's names load
    on first use, and anyio loads its asyncio backend and thread pool on first use."""
    if kind == "ssemble":  # no more than a run imports: the peak RSS counts what is loaded
        import anyio._backends._asyncio  # noqa: PLC0415
        import anyio.to_thread  # noqa: PLC0415, F401

        from ssemble_async import Client, ClipState, RequestState, Short  # noqa: PLC0415, F401
    else:
        import aiofiles  # noqa: PLC0415, F401
        import aiohttp  # noqa: PLC0415, F401


def child(kind: str, plan: Path, dest: Path, chunk: int) -> None:
    """Download, then print one JSON line: elapsed seconds, start-up CPU, error."""
    urls: list[str] = json.loads(plan.read_text())
    preload(kind)
    floor_kib = peak_rss_kib()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    loop_cpu = thread_cpu()
    started = time.perf_counter()
    runner = {"ssemble": run_ssemble, "aiohttp": run_aiohttp, "bare": run_bare}[kind]
    error = asyncio.run(runner(urls, dest, chunk))
    elapsed = time.perf_counter() - started
    after = thread_cpu()
    startup = [usage.ru_utime, usage.ru_stime]
    report = {"seconds": elapsed, "startup": startup, "floor_kib": floor_kib, "error": error}
    report["loop_cpu"] = None if after is None or loop_cpu is None else after - loop_cpu
    print(json.dumps(report))


def thread_cpu() -> float | None:
    """CPU seconds of the calling thread (the event loop's, here) so far, or None."""
    try:
        return time.thread_time()
    except OSError:  # pragma: no cover - platforms without a per-thread clock
        return None


def peak_rss_kib() -> int | None:
    """This process's peak RSS so far (Linux: VmHWM), in KiB."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            return next((int(x.split()[1]) for x in status if x.startswith("VmHWM")), None)
    except OSError:
        return None


def curve_child(url: str, count: int, dest: Path) -> None:
    """One request of ``count`` clips, four ways; print one JSON line of seconds per clip.

    ``error``: every clip flagged failed on the server (planning, one manifest record per
    clip, the report: no transfer); ``error again``: the same call on the finished folder
    (read from its manifest); ``tiny``: every clip a 4 KiB file from the local server (a
    transfer, a sidecar and the file's commit per clip); ``tiny again``: that call again.
    """
    preload("ssemble")
    from ssemble_async import Client  # noqa: PLC0415

    async def run() -> dict[str, list[float]]:
        costs: dict[str, list[float]] = {}
        async with Client(api_key="sk_ssemble_bench", base_url="http://127.0.0.1:9/api/v1") as c:
            for kind in ("error", "tiny"):
                requests = synthetic_requests([url] * count, count, error=kind == "error")
                folder = dest / kind
                for label in (kind, f"{kind} again"):
                    wall, cpu = time.perf_counter(), time.process_time()
                    report = await c.download_many(requests, folder)
                    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
                    if not report.ok or len(report.outcomes) != count:
                        raise SystemExit(f"{label}: {report.counts()}")
                    costs[label] = [wall / count, cpu / count]
        return costs

    print(json.dumps(asyncio.run(run())))


def serve(root: Path, port: int) -> None:
    """The fallback file server: aiohttp's static route answers with sendfile."""
    from aiohttp import web  # noqa: PLC0415

    app = web.Application()
    app.router.add_static("/", root)
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)


# -- the parent: files, server, measurements ------------------------------------------------


def prepare(file_set: FileSet) -> None:
    from ssemble_async.testing import make_mp4  # noqa: PLC0415

    folder = SOURCE / file_set.name
    folder.mkdir(parents=True, exist_ok=True)
    for i, file_name in enumerate(file_set.names()):
        path = folder / file_name
        if not path.exists() or path.stat().st_size != file_set.size:
            path.write_bytes(make_mp4(file_set.size, f"{file_set.name}-{i}"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def start_server(work: Path) -> tuple[subprocess.Popen[bytes], int, str]:
    import urllib.request  # noqa: PLC0415 - the parent's alone: the clients' RSS must not count it

    from ssemble_async.testing import make_mp4  # noqa: PLC0415

    port = free_port()
    if shutil.which("nginx"):
        kind = "nginx (sendfile)"
        temps = " ".join(
            f"{temp}_temp_path {work}/{temp};"
            for temp in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
        )
        (work / "nginx.conf").write_text(
            ("user root;\n" if os.geteuid() == 0 else "")
            + f"daemon off; worker_processes 1; pid {work}/nginx.pid;\n"
            f"error_log {work}/error.log;\nevents {{ worker_connections 256; }}\n"
            f"http {{ {temps}\n  types {{ video/mp4 mp4; }}\n"
            f"  sendfile on; access_log off; keepalive_requests 100000;\n"
            f"  server {{ listen 127.0.0.1:{port}; root {SOURCE}; }}\n}}\n"
        )
        argv = ["nginx", "-p", str(work), "-e", str(work / "error.log"), "-c"]
        argv.append(str(work / "nginx.conf"))
    else:
        kind = "aiohttp FileResponse (nginx not installed)"
        argv = [sys.executable, __file__, "--serve", str(SOURCE), "--port", str(port)]
    server = subprocess.Popen(argv, stdin=subprocess.DEVNULL)
    probe = f"http://127.0.0.1:{port}/ready.mp4"
    (SOURCE / "ready.mp4").write_bytes(make_mp4(64, "ready"))
    (SOURCE / "tiny.mp4").write_bytes(make_mp4(4 * KiB, "tiny"))
    for _ in range(100):
        try:
            with urllib.request.urlopen(probe, timeout=1):
                return server, port, kind
        except OSError:
            if server.poll() is not None:
                break
            time.sleep(0.1)
    server.kill()
    raise SystemExit(f"the file server ({argv[0]}) did not start; see {work}")


def fs_type(path: Path) -> str:
    """The file system type of ``path`` (from /proc/mounts; "?" elsewhere)."""
    best, kind, real = "", "?", str(path.resolve())
    try:
        mounts = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return kind
    for line in mounts:
        fields = line.split()
        point = fields[1]
        if (real == point or real.startswith(point.rstrip("/") + "/")) and len(point) > len(best):
            best, kind = point, fields[2]
    return kind


def targets(wanted: list[str]) -> dict[str, Path]:
    found: dict[str, Path] = {}
    if "shm" in wanted and SHM.is_dir():
        found["shm"] = SHM / "ssemble-bench-dst"
    if "disk" in wanted:
        tmp = Path(tempfile.gettempdir())
        disk = tmp if fs_type(tmp) not in ("tmpfs", "ramfs") else Path(__file__).parent.parent
        found["disk"] = disk / "ssemble-bench-dst"
    return found


LAUNCHER = """
import json, os, sys, time
with open("/proc/self/status") as status:
    print(next(int(x.split()[1]) for x in status if x.startswith("VmHWM")), flush=True)
for line in sys.stdin:
    argv, out = json.loads(line)
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    io = [(os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0)]
    io += [(os.POSIX_SPAWN_DUP2, fd, 1), (os.POSIX_SPAWN_DUP2, fd, 2)]
    started = time.perf_counter()
    pid = os.posix_spawnp(argv[0], argv, os.environ, file_actions=io)
    _, code, use = os.wait4(pid, 0)
    wall = time.perf_counter() - started
    os.close(fd)
    code = os.waitstatus_to_exitcode(code)
    print(json.dumps([wall, code, use.ru_utime, use.ru_stime, use.ru_maxrss]), flush=True)
"""


class Launcher:
    """A bare Python process that spawns each client and reads its rusage with ``wait4``.

    Linux counts the spawner's own peak RSS into a child's ``ru_maxrss`` (it is carried over
    at exec), so the spawner must be small: not this script, which holds the files.
    """

    def __init__(self) -> None:
        argv = [sys.executable, "-I", "-S", "-c", LAUNCHER]
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdin is not None
        assert self.proc.stdout is not None
        self.stdin, self.stdout = self.proc.stdin, self.proc.stdout
        self.floor_mib = int(self.stdout.readline()) / KiB

    def run(self, argv: list[str], out: Path) -> tuple[float, int, float, float, float, str]:
        """Wall seconds, exit code, user and system CPU, peak RSS MiB, output of one run."""
        self.stdin.write(json.dumps([argv, str(out)]) + "\n")
        self.stdin.flush()
        wall, code, user, system, rss = json.loads(self.stdout.readline())
        return wall, code, user, system, rss / KiB, out.read_text(errors="replace")

    def close(self) -> None:
        self.stdin.close()
        self.proc.wait()


def verify(dest: Path, file_set: FileSet) -> str | None:
    sizes = {p.name: p.stat().st_size for p in dest.rglob("*.mp4")}
    if len(sizes) != file_set.count or set(sizes.values()) != {file_set.size}:
        got = sum(sizes.values())
        return f"{len(sizes)} files, {got} bytes (want {file_set.count * file_set.size})"
    return None


def run_one(
    launcher: Launcher, contender: Contender, file_set: FileSet, base: Path, work: Path
) -> Sample:
    assert contender.command is not None
    base.mkdir(parents=True, exist_ok=True)
    dest = Path(tempfile.mkdtemp(prefix="run-", dir=base))
    try:
        argv = contender.command(work, dest)
        wall, code, user, system, rss, output = launcher.run(argv, work / "output.txt")
        error = f"exit {code}: {output.strip()[-200:]}" if code else None
        seconds, floor, loop = wall, None, None
        if sys.executable in argv and not error:  # the Python clients report on stdout
            report = json.loads(output.strip().splitlines()[-1])
            seconds, error = report["seconds"], report["error"]
            user -= report["startup"][0]
            system -= report["startup"][1]
            floor = report["floor_kib"] / KiB if report["floor_kib"] else None
            loop = report["loop_cpu"]
        error = error or verify(dest, file_set)
        return Sample(seconds, wall, user, system, rss, error, floor, loop)
    finally:
        shutil.rmtree(dest, ignore_errors=True)
        os.sync()  # the next run must not pay for this one's writeback


def contenders(port: int, file_set: FileSet, work: Path, *, tune: bool = False) -> list[Contender]:
    urls = [f"http://127.0.0.1:{port}/{file_set.name}/{n}" for n in file_set.names()]
    plan = work / f"{file_set.name}.json"
    plan.write_text(json.dumps(urls))

    def python(kind: str, chunk: int) -> Callable[[Path, Path], list[str]]:
        script = [sys.executable, __file__, "--child", kind, "--plan", str(plan)]
        return lambda _work, dest: [*script, "--dest", str(dest), "--chunk", str(chunk)]

    def curl(work: Path, dest: Path) -> list[str]:
        config = work / "curl.cfg"
        config.write_text("".join(f'url = "{u}"\noutput = "{dest / name(u)}"\n' for u in urls))
        parallel = ["--parallel", "--parallel-max", str(CONCURRENCY)]
        return ["curl", "-q", *parallel, "--fail", "--silent", "--show-error", "-K", str(config)]

    def aria2(work: Path, dest: Path) -> list[str]:
        listing = work / "aria2.txt"
        listing.write_text("".join(f"{u}\n  out={name(u)}\n" for u in urls))
        flags = ["--allow-overwrite=true", "--file-allocation=none", "--auto-file-renaming=false"]
        flags += [f"-j{CONCURRENCY}", "-x1", "-q", "-d", str(dest), "-i", str(listing)]
        return ["aria2c", *flags]

    tuned = [
        Contender(f"ssemble_async chunk {c // KiB} KiB", python("ssemble", c))
        for c in (TUNE_CHUNKS if tune else ())
    ]
    return [
        Contender(OURS, python("ssemble", 0)),
        *tuned,
        Contender("aria2c -j8 -x1", aria2 if shutil.which("aria2c") else None),
        Contender("curl --parallel-max 8", curl if shutil.which("curl") else None),
        Contender(LOOP, python("aiohttp", MiB)),
        Contender(BARE, python("bare", 256 * KiB)),
    ]


def median(samples: list[Sample]) -> Sample:
    """The median of each figure over the runs that succeeded (the highest peak RSS)."""
    good = [s for s in samples if s.error is None]
    if not good:
        return samples[-1]

    def mid(figure: Callable[[Sample], float]) -> float:
        return statistics.median(figure(s) for s in good)

    loops = [s.loop_cpu for s in good if s.loop_cpu is not None]

    return Sample(
        mid(lambda s: s.seconds),
        mid(lambda s: s.process),
        mid(lambda s: s.user),
        mid(lambda s: s.system),
        max(s.rss_mib for s in good),
        floor_mib=max((s.floor_mib for s in good if s.floor_mib), default=None),
        loop_cpu=statistics.median(loops) if loops else None,
    )


@dataclass
class Bench:
    launcher: Launcher
    work: Path
    port: int
    repeat: int
    results: dict[tuple[str, str, str], Sample]  # (set, target, label) -> median

    def measure(self, file_set: FileSet, base: Path, field: list[Contender]) -> list[Sample | None]:
        """Each client ``repeat`` times, interleaved; the median of each (None: absent).

        One untimed run goes first: the first timed run must not pay for a cold start.
        """
        run_one(self.launcher, field[0], file_set, base, self.work)
        runs: list[list[Sample]] = [[] for _ in field]
        for _ in range(self.repeat):
            for contender, samples in zip(field, runs, strict=True):
                if contender.command is not None:
                    samples.append(run_one(self.launcher, contender, file_set, base, self.work))
        return [median(samples) if samples else None for samples in runs]

    def table(self, target: str, base: Path, file_set: FileSet, field: list[Contender]) -> None:
        """Measure, then print one table; the rows in the order of ``field``."""
        rows = self.measure(file_set, base, field)
        gib = file_set.gib
        print(f"\n{file_set.title} -> {target}: {base} ({fs_type(base.parent)})")
        print(
            f"  {'client':<30} {'s':>6} {'proc s':>6} {'GiB/s':>6} {'user s':>6} {'sys s':>6}"
            f" {'CPU s/GiB':>9} {'RSS MiB':>7} {'ours: time':>10} {'CPU':>6}"
        )
        ours = rows[0] if rows[0] is not None and rows[0].error is None else None
        for contender, sample in zip(field, rows, strict=True):
            label = contender.label
            if sample is None:
                print(f"  {label:<30} not installed")
                continue
            if sample.error is not None:
                print(f"  {label:<30} FAILED: {sample.error}")
                continue
            self.results[(file_set.name, target, label)] = sample
            cpu = sample.user + sample.system
            time_ratio = f"{ours.seconds / sample.seconds:9.2f}x" if ours else "         -"
            cpu_ratio = f"{(ours.user + ours.system) / cpu:5.2f}x" if ours and cpu else "     -"
            low = sample.rss_mib < self.launcher.floor_mib + 1
            rss = f"<={self.launcher.floor_mib:.0f}" if low else f"{sample.rss_mib:.1f}"
            print(
                f"  {label:<30} {sample.seconds:6.2f} {sample.process:6.2f}"
                f" {gib / sample.seconds:6.2f} {sample.user:6.2f} {sample.system:6.2f}"
                f" {cpu / gib:9.2f} {rss:>7} {time_ratio} {cpu_ratio}"
            )


def per_clip_curve(port: int, counts: tuple[int, ...], work: Path) -> dict[int, dict[str, Any]]:
    """Run the curve child once per count; print and return its costs per clip."""
    print(
        "\nper-clip cost of one request of N clips (microseconds per clip: wall / CPU, in-process)"
        "\n  error: every clip failed on the server (plan, one manifest record each, report);"
        " tiny: a 4 KiB file each\n  (transfer, verify, fsync, sidecar, manifest);"
        " again: the same call on the finished folder"
    )
    kinds = ("error", "error again", "tiny", "tiny again")
    print(f"  {'clips':>7}" + "".join(f" {kind:>17}" for kind in kinds))
    costs: dict[int, dict[str, Any]] = {}
    url = f"http://127.0.0.1:{port}/tiny.mp4"
    for count in counts:
        dest = Path(tempfile.mkdtemp(prefix="curve-", dir=work))
        argv = [sys.executable, __file__, "--child", "curve", "--url", url, "--dest", str(dest)]
        done = subprocess.run(
            [*argv, "--count", str(count)], capture_output=True, text=True, check=False
        )
        shutil.rmtree(dest, ignore_errors=True)
        if done.returncode:
            print(f"  {count:>7} FAILED: {(done.stdout + done.stderr).strip()[-300:]}")
            continue
        costs[count] = json.loads(done.stdout.strip().splitlines()[-1])
        cells = "".join(
            f" {costs[count][k][0] * 1e6:8.0f} /{costs[count][k][1] * 1e6:7.0f}" for k in kinds
        )
        print(f"  {count:>7}{cells}")
    return costs


def profile_small(port: int, base: Path, file_set: FileSet, work: Path) -> Path:
    """The SDK on the small-clip workload under cProfile; its summary as a text file."""
    import pstats  # noqa: PLC0415 - the parent's alone

    urls = [f"http://127.0.0.1:{port}/{file_set.name}/{n}" for n in file_set.names()]
    plan = work / "profile.json"
    plan.write_text(json.dumps(urls))
    base.mkdir(parents=True, exist_ok=True)
    dest = Path(tempfile.mkdtemp(prefix="profile-", dir=base))
    raw = work / "small.prof"
    argv = [sys.executable, "-m", "cProfile", "-o", str(raw), __file__, "--child", "ssemble"]
    argv += ["--plan", str(plan), "--dest", str(dest), "--chunk", "0"]
    try:
        subprocess.run(argv, check=True, capture_output=True)
    finally:
        shutil.rmtree(dest, ignore_errors=True)
    text = io.StringIO()
    text.write(
        f"cProfile of the SDK on {file_set.title} into {fs_type(base)} ({base}), concurrency"
        f" {CONCURRENCY}, {CLIPS_PER_REQUEST} clips a request; the event loop's thread only"
        " (the file-system work in worker threads shows as the awaits of its thread trips).\n"
        f"    {' '.join(argv)}\n"
    )
    stats = pstats.Stats(str(raw), stream=text).strip_dirs()
    for order in ("cumulative", "tottime"):
        text.write(f"\n== by {order} (the first 40) ==\n")
        stats.sort_stats(order).print_stats(40)
    PROFILES.mkdir(exist_ok=True)
    summary = PROFILES / f"{file_set.name}-{fs_type(base)}.txt"
    summary.write_text(text.getvalue())
    return summary


def flame_graph_small(port: int, base: Path, file_set: FileSet, work: Path) -> Path | None:
    """The SDK on the small-clip workload under py-spy (when installed): a flame graph of
    every thread, the event loop's and the file threads', as an SVG. None without py-spy."""
    spy = shutil.which("py-spy") or shutil.which("py-spy", path=str(Path(sys.executable).parent))
    if spy is None:
        return None
    urls = [f"http://127.0.0.1:{port}/{file_set.name}/{n}" for n in file_set.names()]
    plan = work / "flame.json"
    plan.write_text(json.dumps(urls * 4))  # four times over: enough samples at 1 kHz
    base.mkdir(parents=True, exist_ok=True)
    dest = Path(tempfile.mkdtemp(prefix="flame-", dir=base))
    PROFILES.mkdir(exist_ok=True)
    svg = PROFILES / f"{file_set.name}-{fs_type(base)}.svg"
    argv = [spy, "record", "--threads", "--rate", "1000", "--format", "flamegraph"]
    argv += ["--output", str(svg), "--", sys.executable, __file__, "--child", "ssemble"]
    argv += ["--plan", str(plan), "--dest", str(dest), "--chunk", "0"]
    try:
        subprocess.run(argv, check=True, capture_output=True)
    finally:
        shutil.rmtree(dest, ignore_errors=True)
    return svg


def summary(
    bench: Bench,
    sets: list[FileSet],
    rss: dict[str, tuple[float, float | None, int]],
    curve: dict[int, dict[str, Any]],
) -> None:
    """Issue 11's targets, each with the figure this run measured; under each one missed,
    what this run measured of the reason (docs/performance.md has the rest)."""
    results = bench.results
    counts = {file_set.name: file_set.count for file_set in sets}
    gibs = {file_set.name: file_set.gib for file_set in sets}
    rows: list[tuple[str, float | None, float, str, str]] = []  # what, measured, target, unit, why

    def sample(set_name: str, label: str) -> Sample | None:
        return results.get((set_name, "shm", label))

    def ratio(set_name: str, label: str, figure: Callable[[Sample], float]) -> float | None:
        ours, it = sample(set_name, OURS), sample(set_name, label)
        return None if ours is None or it is None else figure(ours) / figure(it)

    def wall(s: Sample) -> float:
        return s.seconds

    def cpu(s: Sample) -> float:
        return s.user + s.system

    aria2 = "aria2c -j8 -x1"
    ours, loop = sample("small", OURS), sample("small", LOOP)
    why = ""
    if ours and loop:
        n = counts["small"]
        why = (
            f"a clip costs {(ours.seconds - loop.seconds) / n * 1e6:.0f} us more than in the"
            f" loop ({(cpu(ours) - cpu(loop)) / n * 1e6:.0f} us of CPU): its thread trip (fsync,"
            " journal line, rename, sidecar: eleven file-system calls, each taking the GIL back"
            " from the event loop) and the pipeline's own work per clip"
        )
        bare = sample("small", BARE)
        if ours.loop_cpu is not None and bare is not None and bare.loop_cpu is not None:
            why += (
                f"; the event loop's thread ran {ours.loop_cpu:.2f} s of the {ours.seconds:.2f} s"
                f" (the bare aiohttp client's: {bare.loop_cpu:.2f} s of {bare.seconds:.2f} s)"
            )
    rows.append(("small to tmpfs: time / aiohttp loop", ratio("small", LOOP, wall), 1.0, "x", why))
    aria, bare = sample("small", aria2), sample("small", BARE)
    why = ""
    if aria and loop and bare:
        why = (
            f"the bare aiohttp client, which writes on the event loop, takes"
            f" {bare.seconds / aria.seconds:.2f}x aria2c's time; the aiohttp loop, whose"
            f" writes go through threads (aiofiles), {loop.seconds / aria.seconds:.2f}x: the"
            " cost is the file work handed to threads"
        )
    rows.append(("small to tmpfs: time / aria2c", ratio("small", aria2, wall), 1.25, "x", why))
    rows.append(("big to tmpfs: time / aria2c", ratio("big", aria2, wall), 1.0, "x", ""))
    ours, aria, bare = sample("big", OURS), sample("big", aria2), sample("big", BARE)
    why = ""
    if ours and aria and bare:
        gib = gibs["big"]
        left = 0.9 * cpu(aria) / gib - ours.system / gib
        why = (
            f"system CPU {ours.system / gib:.2f} s a GiB (aria2c {aria.system / gib:.2f});"
            f" 0.9x aria2c's CPU would leave {left:.2f} s a GiB of user CPU, where the bare"
            f" aiohttp client alone spends {bare.user / gib:.2f} s (aria2c {aria.user / gib:.2f})"
        )
    rows.append(("big to tmpfs: CPU / aria2c", ratio("big", aria2, cpu), 0.9, "x", why))
    user = ours.user / gibs["big"] if ours else None
    rows.append(("big to tmpfs: user CPU per GiB", user, 0.5, " s", ""))
    for title, (mib, floor, transfers) in rss.items():
        why = ""
        if floor is not None:
            why = (
                f"{floor:.1f} MiB before the first transfer (the interpreter and its imports);"
                f" {transfers} transfers at once add {mib - floor:.1f} MiB (a write batch and"
                " aiohttp's read buffer each)"
            )
        rows.append((f"peak RSS, {title} files", mib, 48.0, " MiB", why))
    if len(curve) >= 2:  # the two largest: a run of 100 clips is too short to compare with
        low, high = sorted(curve)[-2:]
        for kind in ("error", "tiny"):
            growth = curve[high][kind][1] / curve[low][kind][1]
            rows.append((f"per-clip CPU, {kind}: {high:,} / {low:,} clips", growth, 1.5, "x", ""))
    print("\nissue 11's targets (this run; the reasons for those missed: docs/performance.md)")
    for what, measured, target, unit, why in rows:
        if measured is None:
            print(f"  {what:<42} {'-':>8}  (not measured)")
            continue
        met = "met" if measured <= target else "MISSED"
        print(f"  {what:<42} {measured:8.2f}{unit:<4} target <= {target:g}{unit.strip()}  {met}")
        if why and measured > target:
            print(textwrap.fill(why, 96, initial_indent="      ", subsequent_indent="      "))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sets", default="big,small", help="big, small (comma-separated)")
    parser.add_argument("--targets", default="shm,disk", help="shm, disk (comma-separated)")
    parser.add_argument("--repeat", type=int, help="runs per client, median (default 3; 1 quick)")
    parser.add_argument("--quick", action="store_true", help="8 x 32 MiB, 128 x 256 KiB")
    parser.add_argument("--tune", action="store_true", help="also the SDK at other chunk sizes")
    parser.add_argument("--no-curve", action="store_true", help="skip the per-clip cost curve")
    parser.add_argument("--profile", action="store_true", help="profile the small-clip run")
    for hidden in ("--child", "--plan", "--url", "--dest", "--serve"):
        parser.add_argument(hidden, help=argparse.SUPPRESS)
    for hidden in ("--chunk", "--port", "--count"):
        parser.add_argument(hidden, type=int, help=argparse.SUPPRESS)
    args, unknown = parser.parse_known_args()
    if args.child == "curve":
        curve_child(args.url, args.count, Path(args.dest))
        return
    if args.child:
        child(args.child, Path(args.plan), Path(args.dest), args.chunk)
        return
    if args.serve:
        serve(Path(args.serve), args.port)
        return
    if unknown:  # `nox -s bench -- ...` hands the same arguments to every benchmark
        print(f"(ignoring arguments meant for another benchmark: {' '.join(unknown)})")
    sizes = QUICK_SETS if args.quick else SETS
    chosen = [FileSet(n, *sizes[n]) for n in args.sets.split(",") if n in sizes]
    places = targets(args.targets.split(","))
    rss_sets = [FileSet(n, *RSS_SETS[n]) for n in RSS_SETS if "shm" in places and not args.quick]
    print(f"preparing files in {SOURCE} ...", flush=True)
    for file_set in [*chosen, *rss_sets]:
        prepare(file_set)
    work = Path(tempfile.mkdtemp(prefix="ssemble-bench-"))
    server, port, server_kind = start_server(work)
    repeat = args.repeat or (1 if args.quick else 3)
    bench = Bench(Launcher(), work, port, max(1, repeat), {})
    loads = " ".join(f"{x:.2f}" for x in os.getloadavg())
    try:
        print(f"server: {server_kind} on 127.0.0.1:{port}; {os.cpu_count()} CPUs")
        print(f"load average before: {loads}; concurrency {CONCURRENCY}; median of {bench.repeat}")
        for file_set in chosen:
            field = contenders(port, file_set, work, tune=args.tune)
            for target, base in places.items():
                bench.table(target, base, file_set, field)
        for file_set in rss_sets:  # the SDK alone, for its peak RSS as files grow
            bench.table("shm", places["shm"], file_set, contenders(port, file_set, work)[:1])
        # peak, before the transfers, transfers at once
        rss: dict[str, tuple[float, float | None, int]] = {}
        for file_set in [*chosen, *rss_sets]:
            sample = bench.results.get((file_set.name, "shm", OURS))
            if sample is not None and file_set.name != "small":
                transfers = min(CONCURRENCY, file_set.count)
                rss[f"{file_set.size // MiB} MiB"] = (sample.rss_mib, sample.floor_mib, transfers)
        if len(rss) > 1:
            flat = ", ".join(f"{size} files: {mib:.1f} MiB" for size, (mib, *_) in rss.items())
            print(f"\npeak RSS of {OURS} into tmpfs, as files grow: {flat}")
        counts = QUICK_CURVE if args.quick else CURVE
        curve = {} if args.no_curve else per_clip_curve(port, counts, work)
        if args.profile and "shm" in places and any(f.name == "small" for f in chosen):
            small = next(f for f in chosen if f.name == "small")
            print(f"\nprofile: {profile_small(port, places['shm'], small, work)}")
            flame = flame_graph_small(port, places["shm"], small, work)
            print(f"flame graph: {flame or 'not made (pip install py-spy)'}")
        loads = " ".join(f"{x:.2f}" for x in os.getloadavg())
        print(
            "\ns: transfer wall time (Python clients time themselves after their imports;"
            " curl and aria2c: spawn to exit); proc s: spawn to exit, for all.\nuser s, sys s:"
            " CPU of the client process (wait4), less the Python clients' start-up and imports."
            "\nRSS: peak of the client process; <=N: at most the spawner's own N MiB."
            "\nours: time, CPU: ssemble_async (defaults) as a multiple of that client's (<1:"
            " ours is less).\nssemble_async also fsyncs each file, verifies it, writes a sidecar"
            " per clip and a manifest per request; the others do not.\nCaveat: server, client"
            f" and kernel copies share the CPUs; load average after: {loads}. On a busy"
            " machine read the ratios, not the absolute figures."
        )
        summary(bench, chosen, rss, curve)
    finally:
        bench.launcher.close()
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=10)
        shutil.rmtree(work, ignore_errors=True)
        for base in places.values():
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
