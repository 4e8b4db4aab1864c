"""Download throughput: ssemble_async's downloader against plain aiohttp loops, curl and aria2c.

Generated MP4 files are served from 127.0.0.1 by a sendfile server in its own process
(nginx when installed, else aiohttp's ``FileResponse``). Each client downloads the same set
at concurrency 8 in a fresh subprocess; ``os.wait4`` gives that child's CPU time and peak
RSS. One table per file set and target (tmpfs, and a disk file system so that the client's
own cost shows beside the disk's), with the throughput ratio of ssemble_async at its
default settings to each client.

    python benchmarks/download.py [--sets big,small] [--targets shm,disk] [--repeat N] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import json
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import aiofiles
import aiohttp
from aiohttp import web

from ssemble_async import Client, ClipState, RequestState, Short, ShortsRequest
from ssemble_async.testing import make_mp4

KiB, MiB, GiB = 1 << 10, 1 << 20, 1 << 30
CONCURRENCY = 8
CLIPS_PER_REQUEST = 16  # a realistic request; the manifest is rewritten per clip event
DEFAULT_CHUNK: int = inspect.signature(Client.download_many).parameters["chunk_size"].default
TUNE_CHUNKS = (256 * KiB, 1 * MiB, 4 * MiB)
SETS = {"big": (32, 32 * MiB), "small": (512, 256 * KiB), "huge": (8, 128 * MiB)}
QUICK_SETS = {"big": (8, 32 * MiB), "small": (128, 256 * KiB)}
SHM = Path("/dev/shm")
SOURCE = (SHM if SHM.is_dir() else Path(tempfile.gettempdir())) / "ssemble-bench-src"


@dataclass(frozen=True)
class FileSet:
    name: str
    count: int
    size: int

    @property
    def title(self) -> str:
        unit = f"{self.size // MiB} MiB" if self.size >= MiB else f"{self.size // KiB} KiB"
        return f"{self.count} x {unit}"

    def names(self) -> list[str]:
        return [f"{i:04d}.mp4" for i in range(self.count)]


@dataclass(frozen=True)
class Contender:
    label: str
    command: Callable[[Path, Path], list[str]] | None  # (work dir, dest) -> argv; None: absent


@dataclass(frozen=True)
class Sample:
    seconds: float
    cpu: float  # user + sys, without the interpreter's start-up and imports
    rss_mib: float
    startup_cpu: float
    error: str | None = None


# -- children: each client runs in its own process ------------------------------------------


def name(url: str) -> str:
    return url.rpartition("/")[2]


async def run_ssemble(urls: list[str], dest: Path, chunk: int) -> str | None:
    requests = [
        ShortsRequest(
            request_id=f"{0xBE7C << 64 | start:024x}",
            status=RequestState.COMPLETED,
            status_raw="completed",
            shorts=tuple(
                Short(id=f"{i:024x}", video_url=url, viral_score=float(i % 100))
                for i, url in enumerate(urls[start : start + CLIPS_PER_REQUEST], start)
            ),
        )
        for start in range(0, len(urls), CLIPS_PER_REQUEST)
    ]
    async with Client(api_key="sk_ssemble_bench", base_url="http://127.0.0.1:9/api/v1") as client:
        report = await client.download_many(
            requests, dest, concurrency=CONCURRENCY, chunk_size=chunk, overwrite=True
        )
    done = len(report.by_state(ClipState.DOWNLOADED))
    return None if report.ok and done == len(urls) else f"{done}/{len(urls)} downloaded"


async def run_aiohttp(urls: list[str], dest: Path, chunk: int) -> str | None:
    """The plain loop: a semaphore, ``iter_chunked``, one aiofiles write per chunk."""
    limit = asyncio.Semaphore(CONCURRENCY)
    read_bufsize = max(chunk, 64 * KiB)  # aiohttp's default is 64 KiB

    async def one(session: aiohttp.ClientSession, url: str) -> None:
        async with limit, session.get(url) as response:
            response.raise_for_status()
            async with aiofiles.open(dest / name(url), "wb") as file:
                async for data in response.content.iter_chunked(chunk):
                    await file.write(data)

    async with aiohttp.ClientSession(read_bufsize=read_bufsize) as session:
        await asyncio.gather(*(one(session, url) for url in urls))
    return None


def child(kind: str, plan: Path, dest: Path, chunk: int) -> None:
    """Download, then print one JSON line: elapsed seconds, start-up CPU, error."""
    urls: list[str] = json.loads(plan.read_text())
    usage = resource.getrusage(resource.RUSAGE_SELF)
    started = time.perf_counter()
    runner = run_ssemble if kind == "ssemble" else run_aiohttp
    error = asyncio.run(runner(urls, dest, chunk))
    elapsed = time.perf_counter() - started
    startup = usage.ru_utime + usage.ru_stime
    print(json.dumps({"seconds": elapsed, "startup_cpu": startup, "error": error}))


def serve(root: Path, port: int) -> None:
    """The fallback file server: aiohttp's static route answers with sendfile."""
    app = web.Application()
    app.router.add_static("/", root)
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)


# -- the parent: files, server, measurements ------------------------------------------------


def prepare(file_set: FileSet) -> None:
    folder = SOURCE / file_set.name
    folder.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(file_set.names()):
        path = folder / name
        if not path.exists() or path.stat().st_size != file_set.size:
            path.write_bytes(make_mp4(file_set.size, f"{file_set.name}-{i}"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def start_server(work: Path) -> tuple[subprocess.Popen[bytes], int, str]:
    port = free_port()
    if shutil.which("nginx"):
        kind = "nginx (sendfile)"
        temps = " ".join(
            f"{name}_temp_path {work}/{name};"
            for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
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
    print(json.dumps([wall, code, use.ru_utime + use.ru_stime, use.ru_maxrss]), flush=True)
"""


class Launcher:
    """A bare Python process that spawns each client and reads its rusage with ``wait4``.

    Linux counts the spawner's own peak RSS into a child's ``ru_maxrss`` (it is carried over
    at exec), so the spawner must be small: not this script, which holds aiohttp and the files.
    """

    def __init__(self) -> None:
        argv = [sys.executable, "-I", "-S", "-c", LAUNCHER]
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdin is not None
        assert self.proc.stdout is not None
        self.stdin, self.stdout = self.proc.stdin, self.proc.stdout
        self.floor_mib = int(self.stdout.readline()) / KiB

    def run(self, argv: list[str], out: Path) -> tuple[float, int, float, float, str]:
        """Wall seconds, exit code, CPU seconds, peak RSS MiB and output of one run."""
        self.stdin.write(json.dumps([argv, str(out)]) + "\n")
        self.stdin.flush()
        wall, code, cpu, rss = json.loads(self.stdout.readline())
        return wall, code, cpu, rss / KiB, out.read_text(errors="replace")

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
        wall, code, cpu, rss, output = launcher.run(argv, work / "output.txt")
        error = f"exit {code}: {output.strip()[-200:]}" if code else None
        startup = 0.0
        if sys.executable in argv and not error:  # the Python clients report on stdout
            report = json.loads(output.strip().splitlines()[-1])
            wall, startup, error = report["seconds"], report["startup_cpu"], report["error"]
        return Sample(wall, cpu - startup, rss, startup, error or verify(dest, file_set))
    finally:
        shutil.rmtree(dest, ignore_errors=True)
        os.sync()  # the next run must not pay for this one's writeback


def contenders(port: int, file_set: FileSet, work: Path) -> list[Contender]:
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

    return [
        Contender(
            f"ssemble_async (default, {DEFAULT_CHUNK // KiB} KiB)", python("ssemble", DEFAULT_CHUNK)
        ),
        *(
            Contender(f"ssemble_async chunk {c // KiB} KiB", python("ssemble", c))
            for c in TUNE_CHUNKS
            if c != DEFAULT_CHUNK
        ),
        Contender("aiohttp+aiofiles, 64 KiB chunks", python("aiohttp", 64 * KiB)),
        Contender("aiohttp+aiofiles, 1 MiB chunks", python("aiohttp", MiB)),
        Contender("curl --parallel-max 8", curl if shutil.which("curl") else None),
        Contender("aria2c -j8 -x1", aria2 if shutil.which("aria2c") else None),
    ]


def best(samples: list[Sample]) -> Sample:
    """Best-of-N wall time; the least CPU; the highest peak RSS."""
    good = [s for s in samples if s.error is None]
    if not good:
        return samples[-1]
    fastest = min(good, key=lambda s: s.seconds)
    cpu = min(s.cpu for s in good)
    return Sample(fastest.seconds, cpu, max(s.rss_mib for s in good), fastest.startup_cpu)


@dataclass
class Bench:
    launcher: Launcher
    work: Path
    port: int
    repeat: int
    startups: list[float]

    def measure(self, file_set: FileSet, base: Path, field: list[Contender]) -> list[Sample | None]:
        """Each client ``repeat`` times, interleaved; the best of each (None: not installed).

        One untimed run goes first: the first timed run must not pay for a cold start.
        """
        run_one(self.launcher, field[0], file_set, base, self.work)
        runs: list[list[Sample]] = [[] for _ in field]
        for _ in range(self.repeat):
            for contender, samples in zip(field, runs, strict=True):
                if contender.command is not None:
                    samples.append(run_one(self.launcher, contender, file_set, base, self.work))
        self.startups += [s.startup_cpu for samples in runs for s in samples if s.startup_cpu]
        return [best(samples) if samples else None for samples in runs]

    def table(
        self, target: str, base: Path, file_set: FileSet, field: list[Contender]
    ) -> list[Sample | None]:
        """Measure, then print one table; the rows in the order of ``field``."""
        rows = self.measure(file_set, base, field)
        gib = file_set.count * file_set.size / GiB
        print(f"\n{file_set.title} -> {target}: {base} ({fs_type(base.parent)})")
        print(f"  {'client':<34} {'s':>7} {'GiB/s':>7} {'CPU s/GiB':>10} {'RSS MiB':>8} ours/it")
        ours = rows[0]
        ours_rate = gib / ours.seconds if ours is not None and ours.error is None else None
        for contender, sample in zip(field, rows, strict=True):
            label = contender.label
            if sample is None:
                print(f"  {label:<34} not installed")
            elif sample.error is not None:
                print(f"  {label:<34} FAILED: {sample.error}")
            else:
                rate = gib / sample.seconds
                ratio = f"{ours_rate / rate:>7.2f}x" if ours_rate else "       -"
                low = sample.rss_mib < self.launcher.floor_mib + 1
                rss = f"<={self.launcher.floor_mib:.0f}" if low else f"{sample.rss_mib:.1f}"
                print(
                    f"  {label:<34} {sample.seconds:>7.2f} {rate:>7.2f}"
                    f" {sample.cpu / gib:>10.2f} {rss:>8} {ratio}"
                )
        return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sets", default="big,small", help="big, small (comma-separated)")
    parser.add_argument("--targets", default="shm,disk", help="shm, disk (comma-separated)")
    parser.add_argument("--repeat", type=int, default=1, help="runs per client; best wall time")
    parser.add_argument("--quick", action="store_true", help="8 x 32 MiB and 128 x 256 KiB")
    for hidden in ("--child", "--plan", "--dest", "--serve"):
        parser.add_argument(hidden, help=argparse.SUPPRESS)
    parser.add_argument("--chunk", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args, unknown = parser.parse_known_args()
    if args.child:
        child(args.child, Path(args.plan), Path(args.dest), args.chunk)
        return
    if args.serve:
        serve(Path(args.serve), args.port)
        return
    if unknown:  # `nox -s bench -- ...` hands the same arguments to every benchmark
        print(f"(ignoring arguments meant for another benchmark: {' '.join(unknown)})")
    sizes = QUICK_SETS if args.quick else SETS
    chosen = [FileSet(name, *sizes[name]) for name in args.sets.split(",") if name in sizes]
    places = targets(args.targets.split(","))
    huge = FileSet("huge", *SETS["huge"])
    with_huge = not args.quick and "shm" in places and any(s.name == "big" for s in chosen)
    print(f"preparing files in {SOURCE} ...", flush=True)
    for file_set in [*chosen, *([huge] if with_huge else [])]:
        prepare(file_set)
    work = Path(tempfile.mkdtemp(prefix="ssemble-bench-"))
    server, port, server_kind = start_server(work)
    bench = Bench(Launcher(), work, port, max(1, args.repeat), [])
    loads = " ".join(f"{x:.2f}" for x in os.getloadavg())
    try:
        print(f"server: {server_kind} on 127.0.0.1:{port}; {os.cpu_count()} CPUs")
        print(f"load average before: {loads}; concurrency {CONCURRENCY}; best of {bench.repeat}")
        rss_by_size: dict[str, float] = {}
        for file_set in chosen:
            field = contenders(port, file_set, work)
            for target, base in places.items():
                ours = bench.table(target, base, file_set, field)[0]
                if target == "shm" and file_set.name == "big" and ours and not ours.error:
                    rss_by_size[file_set.title] = ours.rss_mib
        if with_huge:
            ours = bench.table("shm", places["shm"], huge, contenders(port, huge, work)[:1])[0]
            rss_by_size[huge.title] = ours.rss_mib if ours and not ours.error else float("nan")
            flat = ", ".join(f"{title} files: {rss:.1f} MiB" for title, rss in rss_by_size.items())
            print(f"\npeak RSS of ssemble_async (default) into tmpfs, as files grow: {flat}")
        if bench.startups:
            mean = sum(bench.startups) / len(bench.startups)
            print(f"\nCPU s/GiB leaves out Python start-up and imports ({mean:.2f} s a child).")
        loads = " ".join(f"{x:.2f}" for x in os.getloadavg())
        print(
            "s: transfer wall time (Python clients time themselves; curl/aria2c spawn to exit),"
            " after one untimed warm-up run per table."
            "\nRSS: peak of the client process (wait4); <=N: at most the spawner's own N MiB."
            "\nours/it: throughput of ssemble_async (default) over that client's (>1: ours faster)."
            "\nssemble_async also fsyncs each file and writes a sidecar and a manifest per request;"
            " the others do not.\nCaveat: server, client and kernel copies share the CPUs;"
            f" load average after: {loads}. On a shared or busy machine use --repeat 3 and"
            " read the ratios, not the absolute figures."
        )
    finally:
        bench.launcher.close()
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=10)
        shutil.rmtree(work, ignore_errors=True)
        for base in places.values():
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
