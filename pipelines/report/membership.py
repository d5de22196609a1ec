"""Which MLflow runs a report may use: the members of one sweep, made from the config the report computes.

A report is built from one sweep: by default the space's last sweep (the parent run
with tag ``raysys.sweep`` = space name and the latest ``raysys.sweep_last_started``),
or the one ``--sweep-run ID`` names. A (row, seed) cell uses a run only if it is
FINISHED, a member of that sweep (it carries ``raysys.member.<parent id>``, set when
the sweep trained or adopted it), has the run name the cell's config gets, and its
config fingerprint is that config's (:func:`raysys.track.identity.match`: SAME, or
UNVERIFIED for runs recorded before fingerprints). A FINISHED member with another
fingerprint is *stale*: listed, never averaged.

Stores written before sweep membership existed (a parent without ``raysys.sweep_key``
and no member tag on any run), or with no sweep run at all, are read as before: runs
are matched by name, and the report says their membership is unverified.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Dict, List, Optional, Sequence, Tuple

from raysys.errors import ConfigError
from raysys.track import identity
from raysys.track.runs import RUN_NAME_TAG

SWEEP_TAG = "raysys.sweep"
PAGE = 1000

RECORDED = "recorded"
BEFORE_MEMBERSHIP = "unverified (recorded before sweep membership)"
NO_SWEEP = "unverified (no sweep run of this space: runs matched by name)"


def _iso(ms: Optional[int]) -> str:
    if not ms:
        return ""
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _search_all(client, exp_id: str, query: str, order_by: Sequence[str] = ("attributes.start_time DESC",)) -> list:
    out, token = [], None
    while True:
        page = client.search_runs([exp_id], filter_string=query, max_results=PAGE, order_by=list(order_by),
                                  page_token=token)
        out += list(page)
        token = page.token
        if not token:
            return out


def _quote(value: str) -> str:
    return str(value).replace("'", "\\'")


@dataclass
class Sweep:
    """The sweep a report was built from (or why none), as the summary and table.md state it."""

    space: str
    run_id: str = ""
    key: str = ""
    last_started: str = ""  # raysys.sweep_last_started; "" for parents recorded before it
    start_time: str = ""  # the parent's first start (UTC)
    overrides: List[str] = field(default_factory=list)  # the space overrides the sweep ran with
    membership: str = NO_SWEEP

    @property
    def enforced(self) -> bool:
        """Only the sweep's members may be used (False: old store, runs matched by name)."""
        return self.membership == RECORDED

    def describe(self) -> str:
        """One line: which sweep, and how its runs were chosen."""
        if not self.run_id:
            return f"no sweep run of space {self.space!r}: runs matched by name, membership {self.membership}"
        when = f"last started {self.last_started}" if self.last_started else f"started {self.start_time or '?'}"
        key = self.key or "(none: recorded before sweep keys)"
        text = f"sweep run {self.run_id} (key {key}, {when})"
        if self.overrides:
            text += f", overrides {' '.join(self.overrides)}"
        return text + (": its member runs" if self.enforced else f": runs matched by name, membership {self.membership}")

    def as_dict(self) -> Dict[str, Any]:
        return {"space": self.space, "run_id": self.run_id, "key": self.key, "last_started": self.last_started,
                "start_time": self.start_time, "overrides": list(self.overrides), "membership": self.membership}


def sweep_parents(client, exp_id: str, space_name: str) -> list:
    """The space's sweep parent runs, newest first: by ``raysys.sweep_last_started``, then (old ones) start time."""
    parents = _search_all(client, exp_id, f"tags.`{SWEEP_TAG}` = '{_quote(space_name)}'")
    stamped = [p for p in parents if p.data.tags.get(identity.SWEEP_LAST_STARTED_TAG)]
    old = [p for p in parents if not p.data.tags.get(identity.SWEEP_LAST_STARTED_TAG)]
    stamped.sort(key=lambda p: (p.data.tags[identity.SWEEP_LAST_STARTED_TAG], p.info.start_time or 0), reverse=True)
    old.sort(key=lambda p: p.info.start_time or 0, reverse=True)
    return stamped + old


def _label(parent) -> str:
    tags = parent.data.tags
    key = tags.get(identity.SWEEP_KEY_TAG, "")
    when = tags.get(identity.SWEEP_LAST_STARTED_TAG) or f"started {_iso(parent.info.start_time)}"
    return f"{parent.info.run_id} ({key + ', ' if key else ''}{when})"


def members(client, exp_id: str, parent_run_id: str) -> list:
    """Every run carrying the sweep's member tag (trained or adopted by it), newest first."""
    return _search_all(client, exp_id, f"tags.`{identity.member_tag(parent_run_id)}` LIKE '%'")


def _recorded_overrides(parent) -> List[str]:
    text = parent.data.tags.get(identity.SWEEP_OVERRIDES_TAG, "")
    if not text:
        return []
    try:
        value = json.loads(text)
    except ValueError:
        raise ConfigError(f"sweep run {parent.info.run_id}: tag {identity.SWEEP_OVERRIDES_TAG} is not a JSON list: {text[:80]!r}") from None
    if not isinstance(value, list):
        raise ConfigError(f"sweep run {parent.info.run_id}: tag {identity.SWEEP_OVERRIDES_TAG} is not a JSON list: {text[:80]!r}")
    return [str(v) for v in value]


def choose_sweep(client, exp_id: Optional[str], space_name: str, experiment: str, sweep_run: str = "") -> Tuple[Sweep, list]:
    """(the sweep, its member runs): the space's last sweep, or ``sweep_run``; refuses an id that is not one."""
    parents = sweep_parents(client, exp_id, space_name) if exp_id is not None else []
    if sweep_run:
        chosen = [p for p in parents if p.info.run_id == sweep_run]
        if not chosen:
            other = ""
            try:
                run = client.get_run(sweep_run)
                if run.data.tags.get(SWEEP_TAG):
                    other = f" (it is a sweep run of {run.data.tags[SWEEP_TAG]!r})"
                else:
                    other = " (it is not a sweep run)"
            except Exception:  # no such run
                other = " (no such run)"
            listed = ", ".join(_label(p) for p in parents[:10]) or "none"
            more = f" and {len(parents) - 10} more" if len(parents) > 10 else ""
            raise ConfigError(f"--sweep-run {sweep_run} is not a sweep run of space {space_name!r} in experiment "
                              f"{experiment!r}{other}; its sweep runs, newest first: {listed}{more}")
        parents = chosen
    if not parents:
        return Sweep(space_name), []
    parent = parents[0]
    tags = parent.data.tags
    found = members(client, exp_id, parent.info.run_id)
    membership = RECORDED if (found or identity.SWEEP_KEY_TAG in tags) else BEFORE_MEMBERSHIP
    sweep = Sweep(space_name, parent.info.run_id, tags.get(identity.SWEEP_KEY_TAG, ""),
                  tags.get(identity.SWEEP_LAST_STARTED_TAG, ""), _iso(parent.info.start_time),
                  _recorded_overrides(parent), membership)
    return sweep, found


def run_name_of(run) -> str:
    return run.data.tags.get(RUN_NAME_TAG) or run.info.run_name or ""


def by_name(runs: Sequence) -> Dict[str, list]:
    """Runs grouped by raysys run name, each group newest first."""
    out: Dict[str, list] = {}
    for run in sorted(runs, key=lambda r: r.info.start_time or 0, reverse=True):
        out.setdefault(run_name_of(run), []).append(run)
    return out


def named_finished(client, exp_id: str, run_name: str) -> list:
    """Old stores: the FINISHED runs of this name, newest first (matching by name, as before membership)."""
    query = f"tags.`{RUN_NAME_TAG}` = '{_quote(run_name)}' and attributes.status = 'FINISHED'"
    return _search_all(client, exp_id, query)


@dataclass
class Pick:
    """What one (row, seed) cell may use: the run (or None), its identity, and the stale runs of that name."""

    run: Any = None
    identity: str = ""  # identity.SAME or identity.UNVERIFIED
    stale: List[Any] = field(default_factory=list)


def pick(candidates: Sequence, expected_fingerprint: str) -> Pick:
    """Among runs of the cell's name (newest first): the FINISHED one whose fingerprint is SAME, else UNVERIFIED.

    A run superseded by a re-run (``raysys.superseded_by``) counts only if no other does;
    FINISHED runs with another fingerprint are returned as stale.
    """
    result, usable = Pick(), []
    for run in (r for r in candidates if r.info.status == "FINISHED"):
        verdict = identity.match(run, expected_fingerprint)
        (result.stale if verdict == identity.STALE else usable).append((run, verdict))
    # SAME before UNVERIFIED, not superseded before superseded; newest first within each (a stable sort).
    usable.sort(key=lambda item: (item[1] != identity.SAME, identity.SUPERSEDED_TAG in item[0].data.tags))
    if usable:
        result.run, result.identity = usable[0]
    result.stale = [run for run, _ in result.stale]
    return result


def expected_fingerprints(space, experiment: str, wanted: Optional[set] = None) -> Dict[str, str]:
    """Run name -> config fingerprint for every trial of ``space`` (or only the run names in ``wanted``).

    A trial's name is the sweep's (:func:`raysys.tune.space.labelled_run_name`); the name its runs had
    before names said the row maps to the same fingerprint.

    Each row's Config is loaded once; per seed only ``seed`` and the run name change
    (:func:`raysys.tune.space.reseeded`), so the fingerprint is the row's resolved tree with
    that seed, and the name is what ``reseeded`` gives (computed on a config of the three
    keys it reads, not a copy of the whole Config).
    """
    from omegaconf import OmegaConf

    from raysys.config.loader import load_config
    from raysys.train.locations import pin_locations
    from raysys.tune.space import labelled_run_name, reseeded

    out: Dict[str, str] = {}
    for row in space.rows:
        base = pin_locations(load_config(row.preset, [*row.overrides, f"seed={space.seeds[0]}", f"tracking.experiment={experiment}"]))
        resolved = OmegaConf.to_container(base, resolve=True)
        exact = resolved != OmegaConf.to_container(base, resolve=False)  # an interpolation may read the seed
        naming = OmegaConf.create({"preset": base.preset, "seed": base.seed, "run_name": base.run_name})
        for seed in space.seeds:
            former = str(reseeded(naming, seed).run_name)  # the name before run names said the row
            names = dict.fromkeys([labelled_run_name(row.label, row.preset, former), former])
            if wanted is not None and not wanted.intersection(names):
                continue
            fingerprint = identity.fingerprint(reseeded(base, seed) if exact else {**resolved, "seed": seed})
            out.update({name: fingerprint for name in names})
    return out
