"""Experiments: deterministic buckets; the simulator finds no difference in an A/A test
and picks the better arm in an A/B test."""

from __future__ import annotations

import json
from collections import Counter
from datetime import timedelta

import pytest
from typer.testing import CliRunner

from core.storage.db import make_session_factory
from recommender.experiments import METRICS, bucket
from recommender.settings import ExperimentConfig
from recommender.simulation import SyntheticWorld
from recommender.simulation.harness import run_population

WATCH = "watch_ms_per_impression"


def _experiment(id_: str, **b_settings: object) -> dict[str, object]:
    return {"id": id_, "salt": "s1", "arms": [
        {"name": "a", "settings": {}}, {"name": "b", "settings": b_settings}]}


def test_bucketing_is_deterministic_salted_and_follows_the_shares():
    exp = ExperimentConfig.model_validate(
        {"id": "e", "salt": "x", "arms": [{"name": "a", "share": 3}, {"name": "b"}]})
    users = [f"user-{n}" for n in range(4000)]
    arms = [bucket(exp, u) for u in users]
    assert arms == [bucket(exp, u) for u in users]
    share = Counter(arms)["a"] / len(users)
    assert 0.72 < share < 0.78
    other = exp.model_copy(update={"salt": "y"})
    moved = sum(a != bucket(other, u) for a, u in zip(arms, users, strict=True))
    assert moved > 0.2 * len(users)  # a new salt reshuffles
    with pytest.raises(ValueError, match="repeat"):
        ExperimentConfig.model_validate({"id": "e", "arms": [{"name": "a"}, {"name": "a"}]})


def _run(sqlite_engine, clock, open_recommender, experiment, users=36, min_events=40):
    world = SyntheticWorld(n_items=400, n_categories=8, dim=16, seed=5,
                           start=clock.dt - timedelta(days=5), hours=120)
    world.write_to_db(make_session_factory(sqlite_engine))
    rec, _ = open_recommender(sqlite_engine, clock, experiments=[experiment],
                              online_ranker={"enabled": False})
    first = rec.feed.feed("sim0", 5)
    assert first.experiments == {experiment["id"]: bucket(
        ExperimentConfig.model_validate(experiment), "sim0")}
    run_population(rec, world, clock.advance, users=users, min_events=min_events)
    return rec.experiment_report(experiment["id"])


def test_a_a_test_finds_no_difference(sqlite_engine, clock, open_recommender):
    report = _run(sqlite_engine, clock, open_recommender, _experiment("aa"))
    a, b = report.arms
    assert a.users + b.users == 36 and min(a.users, b.users) >= 10
    assert set(b.p_value) == set(b.q_value) == set(METRICS)
    # Judged on the q-values: five metrics at 0.05 each flag one by chance about one A/A
    # test in five, and which simulated trajectory a machine's floating point takes decides
    # which (this one gives likes p = 0.028 on one CPU and more on another).
    assert all(b.q_value[m] >= b.p_value[m] for m in METRICS)
    assert all(q > 0.05 for q in b.q_value.values()), (b.p_value, b.q_value)
    assert b.difference[WATCH].low < 0 < b.difference[WATCH].high


def test_a_b_test_picks_the_better_arm(sqlite_engine, clock, open_recommender):
    # arm b gives every slot to a random new item instead of what the user likes
    random_slots = {"exploration_epsilon": 1.0, "fresh_window_hours": 24 * 30}
    report = _run(sqlite_engine, clock, open_recommender, _experiment("ab", **random_slots),
                  users=90, min_events=40)
    a, b = report.arms
    assert b.q_value[WATCH] < 0.05, (a.metrics[WATCH], b.metrics[WATCH], b.q_value)
    assert b.difference[WATCH].high < 0  # b watches less, with 95% confidence
    assert a.metrics[WATCH].mean > b.metrics[WATCH].mean


def test_the_report_command_prints_p_and_q_for_every_metric(sqlite_engine, clock,
                                                             open_recommender):
    from serving.cli import _lazy_subcommands, app

    experiment = _experiment("aa")
    expected = _run(sqlite_engine, clock, open_recommender, experiment)
    _lazy_subcommands()
    result = CliRunner().invoke(app, [
        "experiments", "report", "aa",
        "--db-url", sqlite_engine.url.render_as_string(hide_password=False),
        "--set", f"experiments={json.dumps([experiment])}"])
    assert result.exit_code == 0, result.output
    printed = json.loads(result.output.strip().splitlines()[-1])
    control, arm = printed["arms"]
    assert control["q_value"] == {} and set(arm["q_value"]) == set(METRICS)
    assert arm["q_value"] == pytest.approx(expected.arms[1].q_value)
    header = next(line for line in result.output.splitlines() if "vs control" in line)
    assert [cell.strip() for cell in header.split("┃")[-3:-1]] == ["p", "q"]
