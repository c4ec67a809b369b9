"""Figures of a stress run: per-epoch rekey latency and agreement, frames
and failures per peer, recovery after server restarts; as a JSON document,
a summary table and a PNG plot.

Definitions (times in seconds after the measured phase began; epochs of
the warm-up are included, with negative times):

* an epoch is *observed* at the first moment any member installed it (the
  committer's acknowledgement, or another member processing the commit
  from the log, whichever came first: both follow the delivery service's
  acceptance);
* its *rekey latency* runs from then until every member of that epoch has
  installed it (RFC 9420 §14: processed the commit, or joined from the
  Welcome).  Members that left or crashed without installing it are
  exempt; members still in the call that never installed it are *missing*;
* its *switch latency* runs until every member's SFrame sender encrypts
  under it or a later epoch (RFC 9605 §5.2); it includes the transition
  delays (``confirm_delay``, ``switch_delay``) on purpose;
* members *agree* on an epoch when their epoch_authenticators (RFC 9420
  §8.7; compared by digest) and member lists are equal;
* a *key failure* is a frame that failed to decrypt with an unknown KID or
  failed authentication after its receiver had decrypted a frame; unknown
  KIDs before a receiver's first decrypted frame are a joiner's (it, or its
  link, has no key yet) and are counted apart;
* receivers hold frames of an epoch not installed yet (RFC 9605 §4.4.4)
  and open them once it is; held frames that expired are counted apart
  (``held_expired_joiner`` before the receiver's first frame,
  ``held_expired`` after);
* frames *lost joining* are those a joiner could have opened but did not:
  unknown KIDs before its first frame minus those no key of its could ever
  open (``unknown_kid_never_keyed``: an epoch before its first, sent to it
  before it was added), plus held frames that expired before it;
* a join's *time to media* runs from the join until the joiner decrypted a
  frame from every other member present throughout (those in the call
  before it and for ``STABLE_S`` seconds after; joins that lasted less are
  left out);
* the *media* figures (CPU, upstream bytes and delivered frames per
  participant, between the start and the end of the measured phase) are
  :func:`media.stress.traffic.media_figures`'s.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ..errors import PlottingNotInstalled
from ..stats import FailureKind
from .peer import FAILURE_BIN, EpochRecord, Phase
from .run import StressData
from .traffic import media_figures

#: the issue's targets, reported (never asserted as timings)
TARGET_P95_MS = 200.0
#: a member counts for a join's time to media if present this long after it
STABLE_S = 5.0


def percentile(values: Iterable[float], q: float) -> float | None:
    """Nearest-rank percentile (``q`` in 0..100), None for no values."""
    ordered = sorted(values)
    if not ordered:
        return None
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 1)


def _spread(values: list[float]) -> dict[str, float | None]:
    return {"count": len(values), "p50": _ms(percentile(values, 50)),
            "p95": _ms(percentile(values, 95)), "max": _ms(max(values, default=None))}


def _epochs(data: StressData) -> list[dict[str, Any]]:
    t0 = data.phase_start
    by_epoch: dict[int, list[EpochRecord]] = {}
    for record in data.ledger.epochs:
        by_epoch.setdefault(record.epoch, []).append(record)
    ended = {r.identity: r.ended_at for r in data.peers if r.ended_at is not None}
    switches: dict[str, list[tuple[int, float]]] = {}
    for identity, epoch, at in data.ledger.switches:
        switches.setdefault(identity, []).append((epoch, at))
    previous: tuple[str, ...] = ()
    rows = []
    for epoch in sorted(by_epoch):
        records = by_epoch[epoch]
        first = min(r.at for r in records)
        members = records[0].members
        installed: dict[str, float] = {}
        for r in records:
            installed.setdefault(r.identity, r.at)
        missing = sorted(m for m in members if m not in installed and m not in ended)
        switched: dict[str, float] = {}
        for member in members:
            later = [at for e, at in switches.get(member, ()) if e >= epoch and at >= first]
            if later:
                switched[member] = min(later)
        committer = next((r.identity for r in records if r.cause in ("own", "create")), None)
        added, removed = sorted(set(members) - set(previous)), sorted(set(previous) - set(members))
        kind = ("create" if any(r.cause == "create" for r in records) else
                "+".join(k for k, v in (("add", added), ("remove", removed)) if v) or "update")
        rows.append({
            "epoch": epoch,
            "t": round(first - t0, 3),
            "kind": kind,
            "committer": committer,
            "members": len(members),
            "added": added,
            "removed": removed,
            "installed_by": len(installed),
            "missing": missing,
            "latency_ms": _ms(max(installed.values()) - first),
            "last_installed": max(installed, key=installed.__getitem__),
            "switch_latency_ms": _ms(max(switched.values()) - first) if switched else None,
            "switched_by": len(switched),
            "agree": len({r.authenticator for r in records}) == 1
                     and len({r.members for r in records}) == 1,
        })
        previous = members
    return rows


def _first_frames(data: StressData) -> dict[str, dict[str, float]]:
    """identity -> remote -> ledger time of the first frame decrypted from it."""
    first: dict[str, dict[str, float]] = {}
    for identity, remote, at in data.ledger.first_frames:
        first.setdefault(identity, {}).setdefault(remote, at)
    return first


def _time_to_media(data: StressData, record: Any, first: dict[str, float]) -> dict[str, Any]:
    """A join's first frame from each other member, ms after it joined."""
    joined = record.joined_at
    if record.how == "join-failed" or (record.ended_at is not None and record.ended_at < joined + STABLE_S):
        return {"first_frame_ms": {}, "first_frame_all_ms": None, "first_frame_missing": []}
    others = [r.identity for r in data.peers if r is not record and r.joined_at < joined
              and r.how != "join-failed" and (r.ended_at is None or r.ended_at > joined + STABLE_S)]
    missing = [o for o in others if o not in first]
    return {
        "first_frame_ms": {remote: _ms(at - joined) for remote, at in sorted(first.items())},
        "first_frame_all_ms": _ms(max(first[o] for o in others) - joined) if others and not missing
        else None,
        "first_frame_missing": missing,
    }


def _peer_rows(data: StressData) -> list[dict[str, Any]]:
    t0 = data.phase_start
    rows = []
    first = _first_frames(data)
    for record in data.peers:
        status = record.status()
        counts = data.ledger.failure_counts.get(record.identity, {k: [0, 0, 0] for k in FailureKind})
        never_keyed = data.ledger.never_keyed.get(record.identity, 0)
        joiner_unknown = counts[FailureKind.UNKNOWN_KID][Phase.STARTUP]
        joiner_expired = counts[FailureKind.HELD_EXPIRED][Phase.STARTUP]
        rows.append({
            "identity": record.identity,
            "joined_at": round(record.joined_at - t0, 3),
            "ended_at": None if record.ended_at is None else round(record.ended_at - t0, 3),
            "how": record.how,
            "frames_sent": status.frames_sent,
            "frames_received": status.frames_received,
            "frames_decrypted": status.frames_decrypted,
            "frames_decoded": status.frames_decoded,
            "failures": {
                "unknown_kid_joiner": counts[FailureKind.UNKNOWN_KID][Phase.STARTUP],
                "unknown_kid": counts[FailureKind.UNKNOWN_KID][Phase.AFTER],
                "unknown_kid_late": counts[FailureKind.UNKNOWN_KID][Phase.LATE],
                "unknown_kid_never_keyed": never_keyed,
                "held_expired_joiner": joiner_expired,
                "held_expired": counts[FailureKind.HELD_EXPIRED][Phase.AFTER]
                                + counts[FailureKind.HELD_EXPIRED][Phase.LATE],
                "authentication": sum(counts[FailureKind.AUTHENTICATION]),
                "replay": sum(counts[FailureKind.REPLAY]),
                "decode": sum(counts[FailureKind.MALFORMED]),
            },
            "lost_joining": joiner_unknown - never_keyed + joiner_expired,
            "held_opened": data.ledger.held_opened.get(record.identity, 0),
            **_time_to_media(data, record, first.get(record.identity, {})),
            "video_frames_missing": status.video_missing,
            "video_frames_unreadable": status.video_unreadable,
            "commit_conflicts": status.conflicts,
            "final_epoch": status.epoch,
        })
    return rows


def _restarts(data: StressData, epochs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    t0 = data.phase_start
    rows = []
    for restart in data.restarts:
        before = [s for s in data.samples if s.t <= restart.at]
        then = before[-1] if before else None
        alive = [r for r in data.peers
                 if r.joined_at <= restart.at and (r.ended_at is None or r.ended_at > restart.back_at)]
        back = {identity for identity, at in data.ledger.reconnects if at >= restart.at}
        reconnected = [r.identity for r in alive if r.identity in back]
        # each peer's frames decrypted at its last sample after the server came back
        later: dict[str, int] = {}
        for sample in data.samples:
            if sample.t > restart.back_at:
                later.update(sample.decrypted)
        decrypting = [identity for identity, count in (then.decrypted if then else {}).items()
                      if later.get(identity, 0) > count]
        after = [e for e in epochs if e["t"] > restart.back_at - t0]
        rows.append({
            "at": round(restart.at - t0, 3),
            "down_s": restart.down,
            "back_at": round(restart.back_at - t0, 3),
            "peers": len(alive),
            "reconnected": len(reconnected),
            "reconnect_ms": _spread([at - restart.back_at for identity, at in data.ledger.reconnects
                                    if at >= restart.back_at]),
            "decrypting_after": len(decrypting),
            "decrypting_before": 0 if then is None else len(then.decrypted),
            "alive_after": sum(identity in later for identity in (then.decrypted if then else {})),
            "epochs_after": len(after),
            "epoch_before": None if then is None else then.epoch,
            "recovered": bool(after) and len(reconnected) == len(alive)
                         and then is not None and len(decrypting) == len([
                             i for i in then.decrypted if i in later]),
        })
    return rows


def _timeline(data: StressData) -> dict[str, Any]:
    t0 = data.phase_start
    bins = sorted(set(data.ledger.failure_bins) | set(data.ledger.startup_bins)
                  | set(data.ledger.late_bins))
    return {
        "samples": [{"t": round(s.t - t0, 3), "present": s.present, "group_size": s.group_size,
                     "epoch": s.epoch, "frames_decrypted": sum(s.decrypted.values())}
                    for s in data.samples],
        "failure_bin_s": FAILURE_BIN,
        "failures": [{"t": round(i * FAILURE_BIN - t0, 3),
                      "unknown_kid_joiner": data.ledger.startup_bins.get(i, 0),
                      "unknown_kid_late": data.ledger.late_bins.get(i, 0),
                      **{k.value: data.ledger.failure_bins.get(i, {}).get(k, 0) for k in FailureKind}}
                     for i in bins],
        "events": [{"t": round(at - t0, 3), "what": what} for at, what in data.events],
    }


def analyze(data: StressData) -> dict[str, Any]:
    """The whole result as one JSON-ready document."""
    config = data.config
    epochs = _epochs(data)
    peers = _peer_rows(data)
    restarts = _restarts(data, epochs)
    measured = [e for e in epochs if e["t"] >= 0 and e["members"] > 1]
    latency = [e["latency_ms"] / 1000 for e in measured]
    switch = [e["switch_latency_ms"] / 1000 for e in measured if e["switch_latency_ms"] is not None]
    failures = {name: sum(p["failures"][name] for p in peers)
                for name in ("unknown_kid_joiner", "unknown_kid", "unknown_kid_late",
                             "unknown_kid_never_keyed", "held_expired_joiner", "held_expired",
                             "authentication", "replay", "decode")}
    joins_measured = [p for p in peers if p["joined_at"] >= 0]
    key_failures = failures["unknown_kid"] + failures["authentication"]
    commits = data.ledger.commits
    agree = all(e["agree"] for e in epochs)
    p95 = _ms(percentile(latency, 95))
    summary = {
        "warmup_s": round(data.warmup, 2),
        "settled_in_s": None if data.settled_in is None else round(data.settled_in, 2),
        "epochs": len(epochs),
        "epochs_measured": len(measured),
        "epochs_incomplete": sum(bool(e["missing"]) for e in epochs),
        "all_agree": agree,
        "rekey_latency_ms": _spread(latency),
        "switch_latency_ms": _spread(switch),
        # the switch by design waits switch_delay after a member processed the
        # commit: what it took beyond that
        "switch_beyond_delay_ms": _spread([x - config.switch_delay for x in switch]),
        "commits_submitted": len(commits),
        "commits_accepted": sum(c.accepted for c in commits),
        "commits_refused": sum(not c.accepted for c in commits),
        "joins": len(data.peers),
        "joins_failed": sum(p["how"] == "join-failed" for p in peers),
        "leaves": sum(p["how"] == "leave" for p in peers),
        "crashes": sum(p["how"] == "crash" for p in peers),
        "frames_sent": sum(p["frames_sent"] for p in peers),
        "frames_decrypted": sum(p["frames_decrypted"] for p in peers),
        "failures": failures,
        "key_failures": key_failures,
        "lost_joining": sum(p["lost_joining"] for p in peers),
        "held_opened": sum(p["held_opened"] for p in peers),
        "time_to_media_ms": _spread([p["first_frame_all_ms"] / 1000 for p in joins_measured
                                     if p["first_frame_all_ms"] is not None]),
        "joins_without_media": sum(bool(p["first_frame_missing"]) for p in joins_measured),
        "video_frames_missing": sum(p["video_frames_missing"] for p in peers),
        "restarts": len(restarts),
        "restarts_recovered": sum(r["recovered"] for r in restarts),
        "targets": {
            "p95_rekey_ms": p95,
            "p95_rekey_ok": p95 is not None and p95 <= TARGET_P95_MS,
            "no_key_failures": key_failures == 0,
            "all_agree": agree,
        },
    }
    return {
        "config": {
            "peers": config.peers, "duration_s": config.duration, "churn_per_s": config.churn,
            "update_interval_s": config.update_interval, "racers": config.racers,
            "switch_delay_s": config.switch_delay, "confirm_delay_s": config.confirm_delay,
            "hold_s": config.hold,
            "seed": config.seed, "processes": config.processes, "server": data.server_url,
            "sfu": config.sfu, "sfu_above": config.sfu_above, "janus": data.janus_url,
            "scenario": [{"at": e.at, "event": e.describe()}
                         for e in (config.scenario.events if config.scenario else ())],
        },
        "summary": summary,
        "media": media_figures(data.traffic[0], data.traffic[-1]) if len(data.traffic) >= 2 else None,
        "epochs": epochs,
        "peers": peers,
        "restarts": restarts,
        "key_failures": [{"t": round(f.at - data.phase_start, 3), "peer": f.identity, "from": f.remote,
                          "kind": f.kind.value, "newest_epoch": f.newest_epoch,
                          "kid_epoch_bits": f.kid_epoch, "kid_sender": f.kid_sender, "reason": f.reason}
                         for f in data.ledger.key_failures],
        "unknown_kid_reasons": dict(data.ledger.unknown_reasons),
        "timeline": _timeline(data),
    }


def write_json(document: dict[str, Any], path: Path) -> None:
    path.write_text(json.dumps(document, indent=1) + "\n", encoding="utf-8")


def _fmt(value: float | None, unit: str = "") -> str:
    return "-" if value is None else f"{value:g}{unit}"


def _join_line(peer: dict[str, Any]) -> str:
    """One join of the summary table: time to media, held and lost frames."""
    media = _fmt(peer["first_frame_all_ms"])
    if peer["first_frame_missing"]:
        media += " (missing " + ",".join(peer["first_frame_missing"]) + ")"
    return (f"{'':2}{peer['identity']:8}{peer['joined_at']:>10.2f}{media:>19}"
            f"{peer['held_opened']:>13}{peer['failures']['held_expired_joiner']:>9}"
            f"{peer['lost_joining']:>6}")


def _media_lines(media: dict[str, Any] | None) -> list[str]:
    """The summary table's media figures (none before the measured phase ended)."""
    if media is None:
        return []
    cpu = media["cpu_per_s"]
    infra = ", ".join(f"{role} {_fmt(share)}" for role, share in cpu.items() if role != "peers")
    pairs = len(media["pairs"])
    return [
        f"media over the measured phase ({media['seconds']:g} s, {media['participants']} participants):",
        f"{'':2}{'CPU per participant (cores)':38}{_fmt(media['cpu_per_participant']):>28}",
        *([f"{'':4}(infrastructure, cores: {infra})"] if infra else []),
        f"{'':2}{'upstream per participant':38}"
        f"{_fmt(_kbps(media['upstream_bytes_per_s_per_participant']), ' kbit/s'):>28}",
        f"{'':2}{'video keyframes per participant':38}"
        f"{_fmt(media['keyframes_per_s_per_participant'], '/s'):>28}",
        f"{'':2}{'video delivered / sent, min / mean':38}"
        f"{_fmt(media['delivery_min']) + ' / ' + _fmt(media['delivery_mean']):>28}",
        f"{'':2}{'pairs receiving video':38}{str(media['pairs_receiving']) + ' / ' + str(pairs):>28}",
    ]


def _kbps(bytes_per_s: float | None) -> float | None:
    return None if bytes_per_s is None else round(bytes_per_s * 8 / 1000, 1)


def summary_table(document: dict[str, Any]) -> str:
    """The end-of-run table (plain text)."""
    s, c = document["summary"], document["config"]
    t = s["targets"]
    lat, sw, bd = s["rekey_latency_ms"], s["switch_latency_ms"], s["switch_beyond_delay_ms"]
    tm = s["time_to_media_ms"]
    f = s["failures"]
    mark = {True: "ok", False: "MISSED"}
    lines = [
        f"stress: {c['peers']} peers, {c['duration_s']:g} s, churn {c['churn_per_s']:g}/s, "
        f"self-updates every {_fmt(c['update_interval_s'], ' s')} by {c['racers']}"
        + (f", through Janus above {c['sfu_above']} participants" if c["sfu"] else ", mesh"),
        f"{'':2}{'measure':38}{'value':>28}",
        f"{'':2}{'epochs (measured, incomplete)':38}"
        f"{'{} ({}, {})'.format(s['epochs'], s['epochs_measured'], s['epochs_incomplete']):>28}",
        f"{'':2}{'commits accepted / refused (races)':38}"
        f"{str(s['commits_accepted']) + ' / ' + str(s['commits_refused']):>28}",
        f"{'':2}{'joins / leaves / crashes / failed':38}"
        f"{'{} / {} / {} / {}'.format(s['joins'], s['leaves'], s['crashes'], s['joins_failed']):>28}",
        f"{'':2}{'rekey latency p50 / p95 / max':38}"
        f"{_fmt(lat['p50']) + ' / ' + _fmt(lat['p95']) + ' / ' + _fmt(lat['max']) + ' ms':>28}",
        f"{'':4}(commit -> every member installed the epoch: can decrypt it)",
        f"{'':2}{'sender switch p50 / p95 / max':38}"
        f"{_fmt(sw['p50']) + ' / ' + _fmt(sw['p95']) + ' / ' + _fmt(sw['max']) + ' ms':>28}",
        f"{'':4}(commit -> every member sends under it; waits by design "
        f"{c['switch_delay_s'] * 1000:g} ms after install,",
        f"{'':4} {c['confirm_delay_s'] * 1000:g} ms for the committer: beyond that "
        f"p50 / p95 {_fmt(bd['p50'])} / {_fmt(bd['p95'])} ms)",
        f"{'':2}{'frames sent / decrypted':38}"
        f"{str(s['frames_sent']) + ' / ' + str(s['frames_decrypted']):>28}",
        f"{'':2}{'unknown KID joiner / after first / late':38}"
        f"{'{} / {} / {}'.format(f['unknown_kid_joiner'], f['unknown_kid'], f['unknown_kid_late']):>28}",
        f"{'':2}{'  of which never keyed (before added)':38}{f['unknown_kid_never_keyed']:>28}",
        f"{'':2}{'held: opened / expired joining / after':38}"
        f"{'{} / {} / {}'.format(s['held_opened'], f['held_expired_joiner'], f['held_expired']):>28}",
        f"{'':2}{'frames lost to keys while joining':38}{s['lost_joining']:>28}",
        f"{'':2}{'join -> media from all p50 / p95 / max':38}"
        f"{_fmt(tm['p50']) + ' / ' + _fmt(tm['p95']) + ' / ' + _fmt(tm['max']) + ' ms':>28}",
        f"{'':2}{'authentication / replay / decode':38}"
        f"{'{} / {} / {}'.format(f['authentication'], f['replay'], f['decode']):>28}",
        f"{'':2}{'video frames missing (decoded gaps)':38}{s['video_frames_missing']:>28}",
        f"{'':2}{'server restarts (recovered)':38}"
        f"{str(s['restarts']) + ' (' + str(s['restarts_recovered']) + ')':>28}",
        f"{'':2}{'settled after the run':38}{_fmt(s['settled_in_s'], ' s'):>28}",
        "targets:",
        f"  p95 rekey latency <= {TARGET_P95_MS:g} ms: {_fmt(t['p95_rekey_ms'], ' ms')} "
        f"{mark[t['p95_rekey_ok']]}",
        f"  no frame lost to a key problem:  {s['key_failures']} {mark[t['no_key_failures']]}"
        + (f" ({f['unknown_kid_late']} arrived after their epoch was evicted: transport delay)"
           if f["unknown_kid_late"] else ""),
        f"  all epoch authenticators equal:  {mark[t['all_agree']]}",
        *_media_lines(document["media"]),
        f"joins (holding {_fmt(c['hold_s'], ' s') if c['hold_s'] else 'off'}):",
        f"{'':2}{'peer':8}{'joined s':>10}{'media from all ms':>19}{'held opened':>13}"
        f"{'expired':>9}{'lost':>6}",
        *(_join_line(p) for p in document["peers"]),
    ]
    return "\n".join(lines)


def plot(document: dict[str, Any], path: Path) -> None:
    """Rekey latency, failures and group size over time, one PNG.

    Raises :class:`media.errors.PlottingNotInstalled` without matplotlib (the ``plots`` extra).
    """
    try:
        import matplotlib
    except ImportError:
        raise PlottingNotInstalled(f"cannot write the plot {path}: matplotlib is not installed",
                                   "pip install 'mlscall[plots]'") from None

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    timeline = document["timeline"]
    epochs = [e for e in document["epochs"] if e["members"] > 1]
    fig, (ax_latency, ax_failures, ax_size) = plt.subplots(3, 1, figsize=(10, 8.5), sharex=True)
    c = document["config"]
    fig.suptitle(f"mlscall stress: {c['peers']} peers, churn {c['churn_per_s']:g}/s, "
                 f"self-updates every {_fmt(c['update_interval_s'], ' s')}")

    colors = {"add": "tab:green", "remove": "tab:red", "update": "tab:blue", "add+remove": "tab:purple"}
    for kind, color in colors.items():
        rows = [e for e in epochs if e["kind"] == kind]
        if rows:
            ax_latency.scatter([e["t"] for e in rows], [e["latency_ms"] for e in rows], s=18,
                               color=color, label=f"{kind}: all members installed")
    switched = [e for e in epochs if e["switch_latency_ms"] is not None]
    if switched:
        ax_latency.scatter([e["t"] for e in switched], [e["switch_latency_ms"] for e in switched],
                           s=14, marker="x", color="0.45", label="all senders switched")
    ax_latency.axhline(TARGET_P95_MS, color="tab:orange", linestyle=":", label="target p95")
    ax_latency.set_ylabel("rekey latency (ms)")
    ax_latency.legend(loc="upper left", fontsize=7, ncol=3)

    bins = timeline["failures"]
    width = timeline["failure_bin_s"]
    xs = [b["t"] for b in bins]
    bottom = [0] * len(bins)
    for name, color in (("unknown_kid_joiner", "0.75"), ("unknown_kid_late", "tab:orange"),
                        ("unknown_kid", "tab:red"),
                        ("authentication", "black"), ("malformed", "tab:brown"), ("replay", "tab:pink")):
        heights = [b[name] for b in bins]
        if any(heights):
            ax_failures.bar(xs, heights, width=width, bottom=bottom, align="edge", color=color,
                            label=name.replace("_", " "))
            bottom = [a + b for a, b in zip(bottom, heights)]
    ax_failures.set_ylabel(f"failed frames / {width:g} s")
    if any(bottom):
        ax_failures.legend(loc="upper left", fontsize=7, ncol=5)
    else:
        ax_failures.text(0.5, 0.5, "no decrypt failures", transform=ax_failures.transAxes,
                         ha="center", va="center", color="0.4")

    samples = timeline["samples"]
    ax_size.step([s["t"] for s in samples], [s["group_size"] for s in samples], where="post",
                 label="MLS group size")
    ax_size.step([s["t"] for s in samples], [s["present"] for s in samples], where="post",
                 linestyle="--", label="participants present")
    ax_size.set_ylabel("members")
    ax_size.set_xlabel("time since the call formed (s)")
    ax_size.legend(loc="lower left", fontsize=7)
    ax_size.yaxis.get_major_locator().set_params(integer=True)

    for restart in document["restarts"]:
        for axis in (ax_latency, ax_failures, ax_size):
            axis.axvspan(restart["at"], restart["back_at"], color="tab:red", alpha=0.15)
    if document["restarts"]:
        ax_size.text(0.995, 0.02, "shaded: server down", transform=ax_size.transAxes, ha="right",
                     fontsize=7, color="tab:red")
    for axis in (ax_latency, ax_failures, ax_size):
        axis.grid(alpha=0.3)
    ax_size.set_xlim(left=min([0.0] + [s["t"] for s in samples if s["t"] >= 0]),
                     right=max([c["duration_s"]] + [s["t"] for s in samples]))
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
