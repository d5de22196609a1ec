"""A benchmark's result: figures (median and spread), ratios against goals, as text or JSON."""
from __future__ import annotations

import operator
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence

from raysys.bench.timing import Stats, paired_ratios

GOAL_OPS = {">=": operator.ge, "<=": operator.le}


@dataclass(frozen=True)
class Goal:
    """``ratio <op> value``, e.g. ``>= 2``."""

    op: str
    value: float

    def met(self, ratio: float) -> bool:
        return GOAL_OPS[self.op](ratio, self.value)

    def __str__(self) -> str:
        return f"{self.op} {self.value:g}"


@dataclass
class Figure:
    unit: str
    stats: Stats
    note: str = ""

    def to_json(self) -> dict:
        return {"unit": self.unit, **self.stats.to_json(), "note": self.note}


@dataclass
class Ratio:
    """median(numerator) / median(denominator); the spread is over the rounds' paired ratios."""

    numerator: str
    denominator: str
    value: float
    paired: Stats
    goal: Optional[Goal] = None

    @property
    def met(self) -> Optional[bool]:
        return None if self.goal is None else self.goal.met(self.value)

    def to_json(self) -> dict:
        return {
            "numerator": self.numerator, "denominator": self.denominator, "value": self.value,
            "median": self.paired.median, "spread": self.paired.spread(), "n": len(self.paired.values),
            "goal": str(self.goal) if self.goal else None, "met": self.met,
        }


@dataclass
class BenchResult:
    name: str
    params: Dict[str, Any]
    machine: Dict[str, Any] = field(default_factory=dict)
    figures: Dict[str, Figure] = field(default_factory=dict)
    ratios: Dict[str, Ratio] = field(default_factory=dict)
    notes: List[str] = field(default_factory=list)

    def add_figure(self, name: str, unit: str, values: Sequence[float], note: str = "") -> Figure:
        self.figures[name] = Figure(unit, Stats(list(values)), note)
        return self.figures[name]

    def add_ratio(self, name: str, numerator: str, denominator: str, goal: Optional[Goal] = None) -> Ratio:
        top, bottom = self.figures[numerator].stats, self.figures[denominator].stats
        paired = Stats(paired_ratios(top.values, bottom.values))
        self.ratios[name] = Ratio(numerator, denominator, top.median / bottom.median, paired, goal)
        return self.ratios[name]

    def to_json(self) -> dict:
        return {
            "bench": self.name, "params": self.params, "machine": self.machine,
            "figures": {name: figure.to_json() for name, figure in self.figures.items()},
            "ratios": {name: ratio.to_json() for name, ratio in self.ratios.items()},
            "notes": self.notes,
        }

    def format_text(self) -> str:
        return "\n".join(_text_lines(self))


def _num(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"


def _text_lines(result: BenchResult) -> List[str]:
    lines = [f"bench {result.name}"]
    lines += [f"  {key}: {value}" for key, value in result.machine.items()]
    lines.append("  params: " + ", ".join(f"{k}={v}" for k, v in result.params.items()))
    width = max([len(name) for name in result.figures] + [6])
    lines.append(f"{'figure'.ljust(width)}  {'median':>10}  {'IQR':>21}  {'min..max':>21}  n  unit")
    for name, figure in result.figures.items():
        s = figure.stats.spread()
        lines.append(
            f"{name.ljust(width)}  {_num(figure.stats.median):>10}  {_num(s['q1']) + '..' + _num(s['q3']):>21}  "
            f"{_num(s['min']) + '..' + _num(s['max']):>21}  {len(figure.stats.values)}  {figure.unit}"
            + (f"  ({figure.note})" if figure.note else "")
        )
    if result.ratios:
        width = max(len(name) for name in result.ratios)
        lines.append(f"{'ratio'.ljust(width)}  {'value':>7}  {'paired IQR':>13}  {'goal':>7}  met")
        for name, ratio in result.ratios.items():
            s = ratio.paired.spread()
            met = {None: "-", True: "yes", False: "NO"}[ratio.met]
            goal = str(ratio.goal) if ratio.goal else "-"
            lines.append(f"{name.ljust(width)}  {ratio.value:>7.3f}  {s['q1']:>6.3f}..{s['q3']:<6.3f}  {goal:>7}  {met}")
    lines += [f"note: {note}" for note in result.notes]
    return lines
