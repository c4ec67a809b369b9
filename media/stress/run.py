"""One stress run: a server, N observed call peers on loopback, churn and
scripted events, sampled until the run ends by itself.

Phases, each bounded in time:

1. *warm-up*: the server starts (a child process, :mod:`media.stress.server`,
   unless an external one is given), ``peers`` participants join one by one
   and the run waits until they form one group, every sender on its epoch
   and media decrypting everywhere;
2. *measured*: ``duration`` seconds.  Every ``1/churn`` seconds one
   membership change (below ``peers`` participants a new one joins,
   otherwise a random member leaves); every ``update_interval`` seconds
   ``racers`` members commit a self-update at the same moment (their
   commits race for one epoch); scenario events at their times.  Churn
   pauses while the server is down and until its participants reconnected;
3. *settle*: no more changes; up to ``settle_timeout`` seconds for every
   participant to reach the same epoch, sending under it;
4. every peer stops (its final statistics kept), then the server.

Every peer's media traffic and the processes' CPU are sampled ``media_after``
seconds into the measured phase and when it ends (:mod:`media.stress.traffic`).
With ``sfu`` the run starts a private Janus (:class:`media.cli.janus.JanusProcess`)
and the server with ``--sfu`` (issue 16): the room's media goes through it
once more than ``sfu_above`` participants are connected.

The peers run in this process (``processes == 1``) or spread over worker
processes (:mod:`media.stress.hosts`, :mod:`media.stress.worker`), each new
one on the worker hosting the fewest; the driver is the same either way.

What happened is in :class:`StressData`; :mod:`media.stress.report` turns it
into figures, JSON and a plot.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import tempfile
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from signaling.client import fetch_token
from signaling.errors import SignalingError

from ..cli.bot import ws_url_for
from ..cli.janus import JanusProcess
from ..call_peer import CallOptions
from ..errors import MediaError
from ..transform import HoldLimits
from .hosts import LocalPeer, PeerHandle, RemotePeer, WorkerError, WorkerProcess
from .peer import Ledger, PeerTotals, PeerView, Phase
from .scenario import Action, Scenario, ScenarioError, ScenarioEvent
from .server import ServerProcess
from .traffic import TrafficSample, cpu_of
from .channel import WorkerSetup

logger = logging.getLogger(__name__)

#: bound of one peer's start or stop (seconds)
PEER_TIMEOUT = 20.0
#: a crash armed for "right after the next commit" happens anyway after this
CRASH_FALLBACK = 5.0
#: the driver's clock resolution (seconds)
TICK = 0.05


class StressError(MediaError):
    """A stress run that cannot start or whose initial call never formed."""


@dataclass(frozen=True)
class StressConfig:
    """What a run does (``mlscall stress`` options)."""

    peers: int = 4
    duration: float = 20.0
    #: membership changes per second (0: none)
    churn: float = 0.5
    #: seconds between racing self-updates (None: none)
    update_interval: float | None = 5.0
    #: members committing a self-update at the same moment
    racers: int = 2
    scenario: Scenario | None = None
    #: an external server's base URL (default: start one)
    server: str | None = None
    room: str = "stress"
    seed: int = 1
    #: processes hosting the peers: 1 runs them in the run's own process,
    #: more start that many workers (media.stress.worker)
    processes: int = field(default_factory=lambda: os.cpu_count() or 1)
    switch_delay: float = CallOptions.switch_delay
    confirm_delay: float = CallOptions.confirm_delay
    #: seconds a receiver holds frames of an epoch not installed yet
    #: (RFC 9605 §4.4.4); 0 switches holding off
    hold: float = HoldLimits.max_age
    sample_interval: float = 0.5
    reconnect_timeout: float = 10.0
    warmup_timeout: float = 60.0
    settle_timeout: float = 15.0
    #: seconds into the measured phase when the media figures' window begins
    #: (the streams of the last joiners are still starting when the call formed)
    media_after: float = 0.0
    #: send the room's media through a private Janus (issue 16)
    sfu: bool = False
    #: with ``sfu``: the room goes through Janus above this many participants (0: always)
    sfu_above: int = 0

    def hold_limits(self) -> HoldLimits | None:
        """How receivers hold frames awaiting their epoch (None: off)."""
        return HoldLimits(max_age=self.hold) if self.hold > 0 else None

    def validate(self) -> None:
        """Refuse settings that cannot run (typed errors, before anything starts)."""
        if not 2 <= self.peers <= 64:
            raise StressError("--peers must be within 2..64")
        if not 0 < self.duration <= 3600:
            raise StressError("--duration must be within (0, 3600] seconds")
        if not 0 <= self.churn <= 20:
            raise StressError("--churn must be within 0..20 changes per second")
        if self.update_interval is not None and not 0.1 <= self.update_interval <= 3600:
            raise StressError("--update-interval must be within 0.1..3600 seconds")
        if not 1 <= self.racers <= self.peers:
            raise StressError("--racers must be within 1..peers")
        if not 1 <= self.processes <= 64:
            raise StressError("--processes must be within 1..64")
        if not 0 <= self.hold <= 10:
            raise StressError("--hold must be within 0..10 seconds")
        if self.sfu and self.server is not None:
            raise StressError("--sfu starts its own Janus and server: it cannot use --server")
        if not 0 <= self.media_after < self.duration:
            raise StressError("the media figures' window must begin within the measured phase")
        if not 0 <= self.sfu_above <= 64:
            raise StressError("--sfu-above must be within 0..64")
        scenario = self.scenario
        if scenario is not None:
            if scenario.last_time > self.duration:
                raise ScenarioError(f"the scenario runs until t={scenario.last_time:g} s, "
                                    f"after the end of the run ({self.duration:g} s)")
            if scenario.restarts_server and self.server is not None:
                raise ScenarioError("restart-server needs the server started by the run, not --server")


@dataclass
class PeerRecord:
    """One participant of the run, from its join to its end."""

    identity: str
    peer: PeerHandle
    joined_at: float
    ended_at: float | None = None
    #: "leave", "crash", "end" or "join-failed"
    how: str | None = None
    final: PeerTotals | None = None

    @property
    def live(self) -> bool:
        return self.ended_at is None

    def status(self) -> PeerTotals:
        return self.final if self.final is not None else self.peer.totals()


@dataclass(frozen=True)
class Sample:
    """The call at one moment of the measured phase."""

    t: float
    present: int
    group_size: int
    epoch: int | None
    #: identity -> frames decrypted so far (live peers)
    decrypted: dict[str, int]


@dataclass(frozen=True)
class RestartRecord:
    """One server restart."""

    at: float
    down: float
    back_at: float


@dataclass
class StressData:
    """Everything one run observed.  Times are the ledger's (seconds since
    the run began); the measured phase began at ``phase_start``."""

    config: StressConfig
    ledger: Ledger
    phase_start: float = 0.0
    warmup: float = 0.0
    peers: list[PeerRecord] = field(default_factory=list)
    samples: list[Sample] = field(default_factory=list)
    #: (t, description) of every driver action
    events: list[tuple[float, str]] = field(default_factory=list)
    restarts: list[RestartRecord] = field(default_factory=list)
    #: seconds the settle phase took, None if it did not converge
    settled_in: float | None = None
    server_url: str = ""
    #: media traffic when the measured phase began and when it ended
    traffic: list[TrafficSample] = field(default_factory=list)
    #: the private Janus's HTTP API (``sfu`` runs)
    janus_url: str | None = None


class StressRun:
    """Drives one run (see the module docstring)."""

    def __init__(self, config: StressConfig, *, workdir: Path | None = None,
                 progress: Callable[[str], None] | None = None) -> None:
        config.validate()
        self.config = config
        self._workdir = workdir
        self._progress = progress
        self._rng = random.Random(config.seed)
        self._ledger = Ledger()
        self._server: ServerProcess | None = None
        self._janus: JanusProcess | None = None
        self._workers: list[WorkerProcess] = []
        self._ws_url = ""
        self._peers: list[PeerRecord] = []
        self._next_index = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._server_down = False
        self._data = StressData(config, self._ledger, peers=self._peers)

    # -- the run ---------------------------------------------------------------------

    async def run(self) -> StressData:
        with contextlib.ExitStack() as stack:
            workdir = self._workdir or Path(stack.enter_context(
                tempfile.TemporaryDirectory(prefix="mlscall-stress-")))
            try:
                url = await self._start_server(workdir)
                data = await self._call(url)
            finally:
                await self._stop_everything()
        return data

    async def _start_server(self, workdir: Path) -> str:
        if self.config.server is not None:
            url = self.config.server.rstrip("/")
        else:
            sfu = None
            if self.config.sfu:
                self._janus = JanusProcess(workdir / "janus")
                await asyncio.to_thread(self._janus.start)
                sfu = self._data.janus_url = self._janus.url
            self._server = ServerProcess(workdir / "server", sfu=sfu, sfu_above=self.config.sfu_above)
            url = await self._server.start()
        self._ws_url = ws_url_for(url)
        if self.config.processes > 1:
            level = logging.getLevelName(logging.getLogger().getEffectiveLevel())
            setup = WorkerSetup(self._ledger.origin, self._ws_url, self.config.room, level,
                                self.config.hold_limits())
            self._workers = [WorkerProcess(i, setup, self._ledger)
                             for i in range(self.config.processes)]
            for worker in self._workers:
                await worker.start()
        return url

    async def _call(self, url: str) -> StressData:
        config, data = self.config, self._data
        data.server_url = url
        for _ in range(config.peers):
            await self._join()
        if await self._until(self._formed, config.warmup_timeout) is None:
            raise StressError(f"the initial call of {config.peers} peers did not form within "
                              f"{config.warmup_timeout:g} s")
        data.phase_start = data.warmup = self._ledger.now()
        self._event("call formed: measured phase begins")
        await self._measure()
        await self._sample_traffic()
        await self._drain()
        self._event("settling")
        data.settled_in = await self._until(self._settled, config.settle_timeout)
        self._event("settled" if data.settled_in is not None else "did not settle")
        self._sample()
        return data

    async def _drain(self) -> None:
        """Let joins, leaves and restarts under way finish (bounded)."""
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=PEER_TIMEOUT + CRASH_FALLBACK)

    async def _until(self, predicate: Callable[[], bool], timeout: float) -> float | None:
        """Seconds until ``predicate()`` held, or None after ``timeout``."""
        loop = asyncio.get_running_loop()
        start = loop.time()
        while loop.time() - start < timeout:
            if predicate():
                return loop.time() - start
            await asyncio.sleep(0.1)
        return None

    async def _measure(self) -> None:
        config = self.config
        schedule: list[tuple[float, Callable[[], None]]] = []
        for event in config.scenario.events if config.scenario else ():
            schedule.extend(self._scenario_actions(event))
        schedule.append((config.media_after, lambda: self._spawn(self._sample_traffic())))
        schedule.sort(key=lambda item: item[0])
        next_churn = 1 / config.churn if config.churn else None
        next_update = config.update_interval
        next_sample = 0.0
        next_status = 0.0
        while (t := self._t()) < config.duration:
            while schedule and schedule[0][0] <= t:
                schedule.pop(0)[1]()
            if next_churn is not None and t >= next_churn:
                next_churn += 1 / config.churn
                if not self._server_down:
                    self._churn()
            if next_update is not None and config.update_interval and t >= next_update:
                next_update += config.update_interval
                if not self._server_down:
                    self._race_updates(config.racers, "random")
            if t >= next_sample:
                next_sample += config.sample_interval
                self._sample()
            if t >= next_status:
                next_status += 1.0
                self._show_progress(t)
            await asyncio.sleep(TICK)
        self._show_progress(self._t())

    # -- time, events, progress ---------------------------------------------------------

    def _t(self) -> float:
        """Seconds into the measured phase (the scenario's clock)."""
        return self._ledger.now() - self._data.phase_start

    def _event(self, text: str) -> None:
        logger.info("t=%.2f %s", self._t(), text)
        self._data.events.append((self._ledger.now(), text))

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _show_progress(self, t: float) -> None:
        if self._progress is None:
            return
        views = [r.peer.view() for r in self._live()]
        members = [v for v in views if v.epoch is not None]
        epoch = max((v.epoch for v in members if v.epoch is not None), default=None)
        commits = self._ledger.commits
        refused = sum(not c.accepted for c in commits)
        counts = [c for per in self._ledger.failure_counts.values() for c in per.values()]
        key = sum(c[Phase.AFTER] for c in counts)
        joiner = sum(c[Phase.STARTUP] for c in counts)
        late = sum(c[Phase.LATE] for c in counts)
        server = "down" if self._server_down else "up"
        self._progress(
            f"t {t:5.1f}/{self.config.duration:g} s | peers {len(views)} (in group {len(members)}) "
            f"epoch {'-' if epoch is None else epoch} | commits {len(commits) - refused} "
            f"(refused {refused}) | failures after first frame {key}, joiner {joiner}, late {late} | "
            f"server {server}, restarts {len(self._data.restarts)}")

    def _sample(self) -> None:
        views = [r.peer.view() for r in self._live()]
        epochs = [(v.epoch, len(v.members)) for v in views if v.epoch is not None]
        newest = max(epochs, default=(None, 0))
        self._data.samples.append(Sample(
            self._ledger.now(), len(views), newest[1], newest[0],
            {v.identity: v.frames_decrypted for v in views}))

    async def _sample_traffic(self) -> None:
        """Every live peer's :class:`PeerTraffic` and the processes' CPU, now
        (the samples in time order)."""
        at = self._ledger.now()
        cpu = {"peers": cpu_of([worker.pid for worker in self._workers] if self._workers
                               else [os.getpid()])}
        if self._server is not None:
            cpu["server"] = cpu_of([self._server.pid])
        if self._janus is not None:
            cpu["janus"] = cpu_of([self._janus.pid])
        if self._workers:
            answers = await asyncio.gather(*(w.traffic(PEER_TIMEOUT) for w in self._workers),
                                           return_exceptions=True)
            for worker, answer in zip(self._workers, answers):
                if isinstance(answer, BaseException):
                    logger.warning("worker %d: no traffic sample: %s", worker.index, answer)
            peers = [t for answer in answers if isinstance(answer, list) for t in answer]
        else:
            peers = [await r.peer.traffic() for r in self._live() if isinstance(r.peer, LocalPeer)]
        self._data.traffic.append(TrafficSample(at, peers, cpu))
        self._data.traffic.sort(key=lambda sample: sample.at)

    # -- participants --------------------------------------------------------------------

    def _live(self) -> list[PeerRecord]:
        return [r for r in self._peers if r.live and not r.peer.view().crashed]

    def _members(self) -> list[PeerRecord]:
        return [r for r in self._live() if r.peer.view().epoch is not None]

    def _views(self) -> list[PeerView]:
        return [r.peer.view() for r in self._live()]

    def _formed(self) -> bool:
        views = self._views()
        names = sorted(v.identity for v in views)
        return bool(views) and all(
            v.epoch is not None and sorted(v.members) == names and v.sending_epoch == v.epoch
            and v.frames_decrypted > 0 for v in views)

    def _settled(self) -> bool:
        views = self._views()
        names = sorted(v.identity for v in views)
        epochs = {v.epoch for v in views}
        return len(epochs) == 1 and None not in epochs and all(
            sorted(v.members) == names and v.sending_epoch == v.epoch for v in views)

    def _options(self) -> CallOptions:
        config = self.config
        return CallOptions(switch_delay=config.switch_delay, confirm_delay=config.confirm_delay,
                           reconnect_timeout=config.reconnect_timeout)

    async def _token(self, identity: str) -> str:
        if self._server is not None:
            return self._server.mint(self.config.room, identity)
        assert self.config.server is not None
        return await fetch_token(self.config.server.rstrip("/"), self.config.room, identity)

    async def _join(self) -> None:
        """A new participant joins (bounded); a failed start is recorded."""
        self._next_index += 1
        identity = f"p{self._next_index:03d}"
        token = await self._token(identity)
        peer: PeerHandle
        if self._workers:  # the least busy worker
            worker = min(self._workers, key=lambda w: len(w.hosted))
            peer = RemotePeer(identity, worker, token, self._options())
        else:
            peer = LocalPeer.create(identity, self._ledger, self._ws_url, self.config.room, token,
                                    self._options(), self.config.hold_limits())
        record = PeerRecord(identity, peer, self._ledger.now())
        self._peers.append(record)
        self._event(f"join {identity}")
        try:
            await peer.start(PEER_TIMEOUT)
        except (SignalingError, aiohttp.ClientError, OSError, TimeoutError, WorkerError) as exc:
            self._event(f"join {identity} failed: {type(exc).__name__}")
            await self._end(record, "join-failed")

    async def _end(self, record: PeerRecord, how: str) -> None:
        """Stop (or crash) one participant and keep its final statistics."""
        if record.ended_at is not None:
            return
        record.ended_at, record.how = record.peer.view().crashed_at or self._ledger.now(), how
        try:
            record.final = await record.peer.end(how, PEER_TIMEOUT)
        except WorkerError as exc:
            logger.warning("%s: %s", record.identity, exc)
            record.final = record.peer.totals()

    def _pick(self, who: str, count: int) -> list[PeerRecord]:
        """Members chosen by ``who`` (at most ``count``; at least one member stays)."""
        members = self._members()
        if who == "all":
            return members
        count = min(count, len(members) - 1) if who != "committer" else min(count, 1)
        if count <= 0 or not members:
            return []
        if who == "committer":
            return [self._committer(members)]
        if who == "newest":
            return members[-count:]
        if who == "oldest":
            return members[:count]
        return self._rng.sample(members, count)

    @staticmethod
    def _committer(members: list[PeerRecord]) -> PeerRecord:
        """The member with the lowest leaf index (CallPeer's committer rule)."""
        names = {r.identity for r in members}
        leaves = max((r.peer.view().members for r in members), key=len)
        present = {name: leaf for name, leaf in leaves.items() if name in names}
        lowest = min(present, key=present.__getitem__) if present else members[0].identity
        return next(r for r in members if r.identity == lowest)

    # -- actions ---------------------------------------------------------------------------

    def _churn(self) -> None:
        if len(self._live()) < self.config.peers:
            self._spawn(self._join())
        else:
            for record in self._pick("random", 1):
                self._event(f"leave {record.identity}")
                self._spawn(self._end(record, "leave"))

    def _race_updates(self, count: int, who: str) -> None:
        racers = self._pick(who, count)
        if racers:
            self._event("self-update by " + ", ".join(r.identity for r in racers))
        for record in racers:
            record.peer.request_self_update()

    def _scenario_actions(self, event: ScenarioEvent) -> list[tuple[float, Callable[[], None]]]:
        if event.action is Action.JOIN:
            step = event.within / event.count
            return [(event.at + i * step, lambda: self._spawn(self._join()))
                    for i in range(event.count)]
        actions: dict[Action, Callable[[], None]] = {
            Action.LEAVE: lambda: self._leave(event),
            Action.UPDATE: lambda: self._race_updates(event.count, event.who),
            Action.CRASH: lambda: self._crash(event),
            Action.RESTART_SERVER: lambda: self._restart_soon(event.down),
        }
        return [(event.at, actions[event.action])]

    def _leave(self, event: ScenarioEvent) -> None:
        for record in self._pick(event.who, event.count):
            self._event(f"leave {record.identity} ({event.who})")
            self._spawn(self._end(record, "leave"))

    def _crash(self, event: ScenarioEvent) -> None:
        victims = self._pick(event.who, 1)
        if not victims:
            return
        record = victims[0]
        if event.when == "now":
            self._event(f"crash {record.identity} ({event.who})")
            self._spawn(self._end(record, "crash"))
            return
        self._event(f"crash {record.identity} ({event.who}) after its next commit")
        record.peer.crash_after_next_commit()
        self._spawn(self._reap_crash(record))

    async def _reap_crash(self, record: PeerRecord) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + CRASH_FALLBACK
        while not record.peer.view().crashed and loop.time() < deadline:
            await asyncio.sleep(TICK)
        if not record.peer.view().crashed:
            self._event(f"{record.identity} did not commit within {CRASH_FALLBACK:g} s: crashed anyway")
        else:
            self._event(f"{record.identity} crashed right after submitting a commit")
        await self._end(record, "crash")

    def _restart_soon(self, down: float) -> None:
        if not self._server_down:
            self._server_down = True  # from now: no churn until it is back
            self._spawn(self._restart(down))

    async def _restart(self, down: float) -> None:
        assert self._server is not None
        at = self._ledger.now()
        self._event(f"server killed (SIGKILL, pid {self._server.pid}), down {down:g} s")
        before = {r.identity for r in self._live()}
        try:
            await self._server.restart(down)
            back = self._ledger.now()
            self._event(f"server restarted on port {self._server.port}")
            # churn resumes once the participants are back (bounded), so that
            # no one is made to leave before it could reconnect
            await self._until(lambda: self._reconnected(before, at), self.config.reconnect_timeout)
        finally:
            self._server_down = False
        self._data.restarts.append(RestartRecord(at, down, back))

    def _reconnected(self, before: set[str], since: float) -> bool:
        back = {identity for identity, at in self._ledger.reconnects if at >= since}
        return all(r.identity in back for r in self._live() if r.identity in before)

    # -- the end -----------------------------------------------------------------------------

    async def _stop_everything(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await asyncio.gather(*(self._end(r, "end") for r in self._peers if r.live),
                             return_exceptions=True)
        await asyncio.gather(*(worker.stop() for worker in self._workers), return_exceptions=True)
        if self._server is not None:
            await self._server.stop()
        if self._janus is not None:
            await asyncio.to_thread(self._janus.stop)
